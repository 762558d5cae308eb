"""`apply` on PostgreSQL: a batch's rows through one binary COPY into the
session's staging table, then one statement per run (docs/ARCHITECTURE.md,
"PostgreSQL apply").
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any, cast

from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import DictRow

from langgraph_hybrid_saver.backends._apply import batch_threads, plan_apply
from langgraph_hybrid_saver.backends.postgres.sql import (
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


async def apply_staged(conn: AsyncConnection[Any], ops: Sequence[Op]) -> int:
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
    return plan.applied


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
