"""`apply` on PostgreSQL (docs/ARCHITECTURE.md, "PostgreSQL apply").

A small batch goes in one statement, `hybrid_saver_apply` (sql.py), planned
with the watermarks this process last saw its threads at; the function
checks them under the lock and refuses when one moved (another applier took
the thread), and the batch is then planned again from the stored ones. A
large batch, or one refused so, goes the staged way: its rows through one
binary COPY into the session's staging table, then one statement per run.
"""

from __future__ import annotations

import base64
import builtins
import json
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, cast

from psycopg import AsyncConnection, AsyncCursor, DatabaseError, OperationalError
from psycopg.errors import UndefinedFunction
from psycopg.rows import DictRow

from langgraph_hybrid_saver.backends._apply import ApplyPlan, batch_threads, plan_apply
from langgraph_hybrid_saver.backends.postgres.sql import (
    APPLY_SQL,
    COPY_STAGE_SQL,
    DELETE_THREAD_SQL,
    LOCK_THREADS_SQL,
    SET_WATERMARKS_SQL,
    STAGE_SQL,
    STAGE_TYPES,
    STAGED_SQL,
)
from langgraph_hybrid_saver.outbox.ops import (
    DeleteThreadOp,
    Op,
    PutOp,
)

# Past these a batch is staged: a binary COPY spends less CPU on many rows
# and on large values than JSON with base64 blobs.
ONE_STATEMENT_MAX_ROWS = 256
ONE_STATEMENT_MAX_BYTES = 64 * 1024


class Watermarks:
    """The watermark this process last read or set for each thread (the
    most recent `limit`); a thread it does not know is planned as new."""

    def __init__(self, limit: int = 65536) -> None:
        self.limit = limit
        self.seqs: OrderedDict[str, str] = OrderedDict()
        self.one_statement = True  # False once the schema lacks hybrid_saver_apply

    def of(self, threads: Sequence[str]) -> dict[str, str]:
        return {t: self.seqs.get(t, "") for t in threads}

    def update(self, seqs: dict[str, str]) -> None:
        for thread, seq in seqs.items():
            self.seqs[thread] = seq
            self.seqs.move_to_end(thread)
        while len(self.seqs) > self.limit:
            self.seqs.popitem(last=False)

    def forget(self, threads: Sequence[str]) -> None:
        for thread in threads:
            self.seqs.pop(thread, None)


async def apply_batch(conn: AsyncConnection[Any], ops: Sequence[Op], marks: Watermarks) -> int:
    """Apply `ops` in one statement when the batch is small and planned with
    the stored watermarks, else staged."""
    threads = batch_threads(ops)
    expected = marks.of(threads)
    plan = plan_apply(ops, expected)
    doc = _one_statement(plan, threads, expected) if marks.one_statement else None
    try:
        if doc is not None and await _applied_in_one(conn, doc, marks):
            applied, seqs = plan.applied, {**expected, **plan.watermarks}
        else:
            applied, seqs = await apply_staged(conn, ops)
    except BaseException:
        marks.forget(threads)  # whether the store has the batch is not known
        raise
    marks.update(seqs)
    return applied


async def _applied_in_one(conn: AsyncConnection[Any], doc: str, marks: Watermarks) -> bool:
    """Whether `hybrid_saver_apply` applied the batch: False when a
    watermark moved, and when the server refused the statement (the staged
    way then tells what it refuses, as it would have without this path; a
    schema whose migrations predate the function keeps to the staged way)."""
    try:
        row = await (await conn.execute(APPLY_SQL, (doc,))).fetchone()
    except DatabaseError as e:
        if isinstance(e, OperationalError):  # the connection or the server
            raise
        marks.one_statement = not isinstance(e, UndefinedFunction)
        await conn.rollback()
        return False
    return row is not None and bool(row["applied"])


def _one_statement(plan: ApplyPlan, threads: list[str], expected: dict[str, str]) -> str | None:
    """The batch as `hybrid_saver_apply`'s argument, or None when it is too
    large for one statement."""
    rows = [row for seg, (run, _) in enumerate(plan.runs) for row in staged_rows(seg, run)]
    if len(rows) > ONE_STATEMENT_MAX_ROWS:
        return None
    size = 0
    out = []
    for row in rows:
        # values: the blob, and a checkpoint's document (inline values) and metadata
        size += len(row[6] or "") + len(row[7] or "")
        blob = row[-1]
        if blob is not None:
            size += len(blob)
            row = (*row[:-1], base64.b64encode(blob).decode("ascii"))
        out.append(row)
    if size > ONE_STATEMENT_MAX_BYTES:
        return None
    deletes = [None if delete is None else delete.thread_id for _, delete in plan.runs]
    batch = {"t": threads, "e": expected, "m": plan.watermarks, "d": deletes, "r": out}
    return json.dumps(batch, separators=(",", ":"))


async def apply_staged(conn: AsyncConnection[Any], ops: Sequence[Op]) -> tuple[int, dict[str, str]]:
    """Apply `ops` through the staging table; returns the number applied and
    the threads' watermarks after the batch."""
    cur: AsyncCursor[Any] = conn.cursor()
    async with conn.pipeline():
        await cur.execute("BEGIN")
        await cur.execute(LOCK_THREADS_SQL, (batch_threads(ops),))
        rows = cast(builtins.list[DictRow], await cur.fetchall())
    if not rows[0]["staged"]:
        await cur.execute(STAGE_SQL)
    plan = plan_apply(ops, {r["thread_id"]: r["applied_seq"] for r in rows})
    staged = [row for seg, (run, _) in enumerate(plan.runs) for row in staged_rows(seg, run)]
    if staged:
        async with cur.copy(COPY_STAGE_SQL) as copy:
            copy.set_types(STAGE_TYPES)
            for row in staged:
                await copy.write_row(row)
    async with conn.pipeline():
        for seg, (run, delete) in enumerate(plan.runs):
            if run:
                await cur.execute(STAGED_SQL, {"seg": seg})
            if delete is not None:
                for sql in DELETE_THREAD_SQL:
                    await cur.execute(sql, (delete.thread_id,))
        if plan.watermarks:
            moved = plan.watermarks
            await cur.execute(SET_WATERMARKS_SQL, (list(moved), list(moved.values())))
        await cur.execute("COMMIT")
    marks = {r["thread_id"]: r["applied_seq"] for r in rows}
    return plan.applied, {**marks, **plan.watermarks}


def staged_rows(seg: int, ops: Sequence[Op]) -> list[tuple[Any, ...]]:
    """One run's rows in the staging table's column order, one row per key:
    one statement cannot update a row twice, so where applying the
    entries in order would have written a key twice, the row that would
    have stayed: the first of an insert-once key (blobs, writes), the last
    of an upserted one (checkpoints, special writes), an upsert over an
    insert-once write of the same key."""
    blobs: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    checkpoints: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    writes: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    upserts: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for op in ops:
        if isinstance(op, PutOp):
            r = op.row
            for b in op.blobs:
                key = (r.thread_id, r.checkpoint_ns, b.channel, b.version)
                blobs.setdefault(key, (seg, "b", r.thread_id, r.checkpoint_ns, None, None, None,
                                       None, b.channel, b.version, None, None, None, b.type,
                                       b.blob))  # fmt: skip
            checkpoints[(r.thread_id, r.checkpoint_ns, r.checkpoint_id)] = (
                seg, "c", r.thread_id, r.checkpoint_ns, r.checkpoint_id, r.parent_checkpoint_id,
                r.checkpoint, r.metadata, None, None, None, None, None, None, None,
            )  # fmt: skip
        elif not isinstance(op, DeleteThreadOp):
            kind = "u" if op.upsert else "w"
            for t, ns, cid, task, path, idx, channel, type_, blob in op.params():
                row = (seg, kind, t, ns, cid, None, None, None, channel, None, task, path, idx,
                       type_, blob)  # fmt: skip
                if op.upsert:
                    upserts[(t, ns, cid, task, idx)] = row
                else:
                    writes.setdefault((t, ns, cid, task, idx), row)
    writes = {key: row for key, row in writes.items() if key not in upserts}
    return [*blobs.values(), *checkpoints.values(), *writes.values(), *upserts.values()]
