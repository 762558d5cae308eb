"""The SQLite backend's reads: a `checkpoints` row with its blobs and
writes, as a `StoredCheckpoint`; blobs by key, in one query; the rows a
prune is planned from."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import aiosqlite

from langgraph_hybrid_saver.backends._prune import ChainRow, root_of
from langgraph_hybrid_saver.backends.sqlite.sql import (
    CHAIN_DOCS_SQL,
    SELECT_BLOB_KEYS_SQL,
    SELECT_WRITES_SQL,
    VALUE_BLOBS_SQL,
)
from langgraph_hybrid_saver.core import (
    StoredCheckpoint,
    WriteRow,
    pre_v4,
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


async def chain_rows(
    conn: aiosqlite.Connection, threads: Iterable[str], official: OfficialRows
) -> list[ChainRow]:
    """A `ChainRow` of every checkpoint of the threads. A channel is stored
    by an inline value other than null or by a blob at its version (`str`
    of it, as blobs are keyed); a row the official saver wrote stores the
    values of its whole checkpoint."""
    arg = (json.dumps(sorted(set(threads))),)
    values = {tuple(k) for k in await conn.execute_fetchall(VALUE_BLOBS_SQL, arg)}
    out = []
    for t, ns, cid, parent, metadata, doc_text, type_, data, sends in await conn.execute_fetchall(
        CHAIN_DOCS_SQL, arg
    ):
        if doc_text is None:  # written by the official saver
            doc, blobs = official.split(t, ns, cid, type_, data)
            in_blobs = {ch for ch, (bt, _) in blobs.items() if bt != "empty"}
        else:
            doc = json.loads(doc_text)
            in_blobs = {
                ch
                for ch, v in (doc.get("channel_versions") or {}).items()
                if (t, ns, ch, str(v)) in values
            }
        inline = doc.get("channel_values") or {}
        meta = parse_metadata(metadata)
        counters = meta.get("counters_since_delta_snapshot")
        out.append(
            ChainRow(
                t,
                ns,
                cid,
                parent,
                frozenset(counters if isinstance(counters, dict) else ()),
                frozenset(doc.get("channel_versions") or ()),
                frozenset(in_blobs | {ch for ch, v in inline.items() if v is not None}),
                root_of(meta),
                pre_v4(doc),
                bool(sends),
            )
        )
    return out
