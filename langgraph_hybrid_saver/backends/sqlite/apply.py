"""`apply` on SQLite: a run of puts and writes as one statement per table."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import aiosqlite

from langgraph_hybrid_saver.backends.sqlite.official_rows import (
    OfficialRows,
    missing_channels,
    row_key,
)
from langgraph_hybrid_saver.backends.sqlite.read import BlobKey, blob_keys, blob_rows
from langgraph_hybrid_saver.backends.sqlite.sql import (
    INSERT_BLOBS_SQL,
    INSERT_WRITES_SQL,
    SELECT_OFFICIAL_KEYS_SQL,
    UPSERT_CHECKPOINT_SQL,
    UPSERT_WRITES_SQL,
)
from langgraph_hybrid_saver.outbox.ops import (
    Op,
    PutOp,
    WritesOp,
)


async def write_run(
    conn: aiosqlite.Connection, ops: Sequence[Op], official_rows: OfficialRows
) -> None:
    """Rows of consecutive puts and writes, one statement per table (each
    keeps entry order). Every put's row is the whole checkpoint, so it needs
    the values of its unchanged channels too: those no put of the segment
    carries are read in one query for the whole segment."""
    puts = []
    for op in ops:
        if isinstance(op, PutOp):
            doc = json.loads(op.row.checkpoint)
            versions = doc.get("channel_versions") or {}
            puts.append((op, doc, blob_keys(op.row.thread_id, op.row.checkpoint_ns, versions)))
    known: dict[BlobKey, tuple[str, bytes | None]] = {}
    blobs: list[tuple[Any, ...]] = []
    for op, _, _ in puts:
        r = op.row
        for b in op.blobs:
            key = (r.thread_id, r.checkpoint_ns, b.channel, b.version)
            known[key] = (b.type, b.blob)
            blobs.append((*key, b.type, b.blob))
    known |= await blob_rows(conn, {k: None for _, _, ks in puts for k in ks if k not in known})
    # Values no blob holds are either empty channels or, on a thread the
    # official saver started, values only its parent row holds: ask once
    # which parents outside the segment are official rows.
    ours = {row_key(op.row.checkpoint_id, op) for op, _, _ in puts}
    parents = {
        parent: None
        for op, doc, keys in puts
        if op.row.parent_checkpoint_id
        and missing_channels(doc, keys, known)
        and (parent := row_key(op.row.parent_checkpoint_id, op)) not in ours
    }
    official: set[tuple[str, ...]] = set()
    if parents:
        rows = await conn.execute_fetchall(SELECT_OFFICIAL_KEYS_SQL, (json.dumps(list(parents)),))
        official = {tuple(row) for row in rows}
    checkpoints = [
        await official_rows.row(conn, op, doc, keys, known, official) for op, doc, keys in puts
    ]
    inserts: list[tuple[Any, ...]] = []
    upserts: list[tuple[Any, ...]] = []
    for w in ops:
        if isinstance(w, WritesOp):
            (upserts if w.upsert else inserts).extend(w.params())
    for sql, params in (
        (INSERT_BLOBS_SQL, blobs),
        (UPSERT_CHECKPOINT_SQL, checkpoints),
        (INSERT_WRITES_SQL, inserts),
        (UPSERT_WRITES_SQL, upserts),
    ):
        if params:
            await conn.executemany(sql, params)
