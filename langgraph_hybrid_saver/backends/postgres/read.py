"""Rows of the PostgreSQL backend's reads, decoded into `StoredCheckpoint`."""

from __future__ import annotations

from psycopg.rows import DictRow

from langgraph_hybrid_saver.core import (
    StoredCheckpoint,
    WriteRow,
)


def stored(row: DictRow) -> StoredCheckpoint:
    blobs = {ch.decode(): (t.decode(), b) for ch, t, b in row["channel_values"] or []}
    writes = [
        WriteRow(tid.decode(), int(idx), path.decode(), ch.decode(), t.decode(), b)
        for tid, ch, t, b, path, idx in row["pending_writes"] or []
    ]
    return StoredCheckpoint(
        row["thread_id"],
        row["checkpoint_ns"],
        row["checkpoint_id"],
        row["parent_checkpoint_id"],
        row["checkpoint"],
        row["metadata"],
        blobs,
        writes,
    )
