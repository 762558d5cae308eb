"""The SQLite backend's reads: a `checkpoints` row with its blobs and
writes, as a `StoredCheckpoint`; blobs by key, in one query."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import aiosqlite

from langgraph_hybrid_saver.backends.sqlite.sql import SELECT_BLOB_KEYS_SQL, SELECT_WRITES_SQL
from langgraph_hybrid_saver.core import (
    StoredCheckpoint,
    WriteRow,
)

if TYPE_CHECKING:
    from langgraph_hybrid_saver.backends.sqlite.official_rows import OfficialRows

BlobKey = tuple[str, str, str, str]  # thread_id, checkpoint_ns, channel, version


async def load(conn: aiosqlite.Connection, row: Any, official: OfficialRows) -> StoredCheckpoint:
    """A `SELECT_SQL` row with its blobs and writes; a row the official
    saver wrote is split into our shape."""
    thread_id, ns, cid, parent, metadata, doc_text, type_, data = row
    if doc_text is None:  # written by the official saver
        doc, blobs = official.split(thread_id, ns, cid, type_, data)
    else:
        doc = json.loads(doc_text)
        blobs = await read_blobs(conn, thread_id, ns, doc.get("channel_versions") or {})
    writes = [
        WriteRow(task_id, int(idx), task_path, channel, t, value)
        for task_id, idx, task_path, channel, t, value in await conn.execute_fetchall(
            SELECT_WRITES_SQL, (thread_id, ns, cid)
        )
    ]
    return StoredCheckpoint(
        thread_id, ns, cid, parent, doc, parse_metadata(metadata), blobs, writes
    )


def parse_metadata(raw: bytes | str | None) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(raw)) if raw is not None else {}


def blob_keys(thread_id: str, ns: str, versions: dict[str, Any]) -> list[BlobKey]:
    """The blob keys of a checkpoint's channels at its versions."""
    return [(thread_id, ns, ch, str(v)) for ch, v in versions.items()]


async def read_blobs(
    conn: aiosqlite.Connection, thread_id: str, ns: str, versions: dict[str, Any]
) -> dict[str, tuple[str, bytes | None]]:
    """The stored values of a checkpoint's channels at its versions."""
    found = await blob_rows(conn, blob_keys(thread_id, ns, versions))
    return {key[2]: value for key, value in found.items()}


async def blob_rows(
    conn: aiosqlite.Connection, keys: Iterable[BlobKey]
) -> dict[BlobKey, tuple[str, bytes | None]]:
    """The stored blobs of these keys, in one query."""
    wanted = list(keys)
    if not wanted:
        return {}
    rows = await conn.execute_fetchall(SELECT_BLOB_KEYS_SQL, (json.dumps(wanted),))
    return {(t, ns, ch, v): (type_, blob) for t, ns, ch, v, type_, blob in rows}
