"""The official saver's rows: whole serialized checkpoints.

`checkpoints.type` and `checkpoints.checkpoint` hold the WHOLE checkpoint
serialized with the serde, as `AsyncSqliteSaver` writes and reads it.
`OfficialRows` builds that row from ours at apply (with the default
`JsonPlusSerializer` by splicing the blobs' msgpack bytes into the
document's, `splice_checkpoint`), splits a row the official saver wrote
back into ours at read, and lets a put whose parent the official saver
wrote take the values only that parent holds.
"""

from __future__ import annotations

import json
from typing import Any, cast

import aiosqlite
import ormsgpack
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from langgraph_hybrid_saver.backends.sqlite.read import BlobKey
from langgraph_hybrid_saver.backends.sqlite.sql import INSERT_BLOBS_SQL, SELECT_OFFICIAL_SQL
from langgraph_hybrid_saver.core import (
    BlobRow,
    StoredCheckpoint,
    to_tuple,
)
from langgraph_hybrid_saver.encode import encode_put
from langgraph_hybrid_saver.errors import CorruptDataError
from langgraph_hybrid_saver.outbox.ops import PutOp


class OfficialRows:
    """Whole checkpoints of one database file, with the saver's serde."""

    def __init__(self, serde: SerializerProtocol, path: str) -> None:
        self.serde = serde
        self.path = path

    async def row(
        self,
        conn: aiosqlite.Connection,
        op: PutOp,
        doc: dict[str, Any],
        keys: list[BlobKey],
        known: dict[BlobKey, tuple[str, bytes | None]],
        official: set[tuple[str, ...]],
    ) -> tuple[Any, ...]:
        """The `checkpoints` row of a put: the whole checkpoint, serialized.
        `keys`: its `_blob_keys`; `official`: the parents (thread, ns, id) the
        official saver wrote."""
        r = op.row
        versions: dict[str, Any] = doc.get("channel_versions") or {}
        blobs = {k[2]: known[k] for k in keys if k in known}
        missing = missing_channels(doc, keys, known)
        if missing and r.parent_checkpoint_id and row_key(r.parent_checkpoint_id, op) in official:
            adopted = await self.adopt_parent(conn, op, versions, missing)
            known.update((k, adopted[k[2]]) for k in keys if k[2] in adopted)
            blobs |= adopted
        stored = StoredCheckpoint(
            r.thread_id, r.checkpoint_ns, r.checkpoint_id, r.parent_checkpoint_id, doc, {}, blobs
        )
        spliced = splice_checkpoint(doc, blobs) if type(self.serde) is JsonPlusSerializer else None
        try:
            if spliced is not None:
                type_, data = "msgpack", spliced
            else:
                type_, data = self.serde.dumps_typed(to_tuple(self.serde, stored).checkpoint)
        except Exception as e:
            raise CorruptDataError(
                f"checkpoint {r.checkpoint_id!r} of thread {r.thread_id!r}: the SQLite "
                f"backend cannot assemble it with its serializer ({type(e).__name__}: {e}); "
                "give the backend the saver's serde (open_backend(url, serde=...))"
            ) from e
        return (
            r.thread_id,
            r.checkpoint_ns,
            r.checkpoint_id,
            r.parent_checkpoint_id,
            type_,
            data,
            r.metadata.encode(),
            r.checkpoint,
        )

    async def adopt_parent(
        self, conn: aiosqlite.Connection, op: PutOp, versions: dict[str, Any], missing: list[str]
    ) -> dict[str, tuple[str, bytes | None]]:
        """Blobs of unchanged channels whose values only the parent holds, because
        the official saver wrote it (a thread it started, continued by us)."""
        r = op.row
        rows = await conn.execute_fetchall(
            SELECT_OFFICIAL_SQL, (r.thread_id, r.checkpoint_ns, r.parent_checkpoint_id)
        )
        if not rows:
            return {}
        parent = self.decode(r.thread_id, str(r.parent_checkpoint_id), *next(iter(rows)))
        values, parent_versions = parent["channel_values"], parent["channel_versions"]
        adopted = []
        for ch in missing:
            if ch in values and str(parent_versions.get(ch)) == str(versions[ch]):
                adopted.append(BlobRow(ch, str(versions[ch]), *self.serde.dumps_typed(values[ch])))
        await conn.executemany(
            INSERT_BLOBS_SQL,
            [(r.thread_id, r.checkpoint_ns, b.channel, b.version, b.type, b.blob) for b in adopted],
        )
        return {b.channel: (b.type, b.blob) for b in adopted}

    def decode(self, thread_id: str, checkpoint_id: str, type_: str, data: bytes) -> Any:
        try:
            return self.serde.loads_typed((type_, data))
        except Exception as e:
            raise CorruptDataError(
                f"checkpoint {checkpoint_id!r} of thread {thread_id!r} in {self.path!r} "
                f"cannot be decoded ({type(e).__name__}: {e}); was it written with "
                "another serde?"
            ) from e

    def split(
        self, thread_id: str, ns: str, cid: str, type_: str, data: bytes
    ) -> tuple[dict[str, Any], dict[str, tuple[str, bytes | None]]]:
        """Our shape (inline document + blobs) of a whole official checkpoint."""
        checkpoint = cast(Checkpoint, self.decode(thread_id, cid, type_, data))
        config: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}
        try:
            row, _, blob_rows = encode_put(
                self.serde, config, checkpoint, {}, checkpoint["channel_versions"]
            )
        except Exception as e:
            raise CorruptDataError(
                f"checkpoint {cid!r} of thread {thread_id!r} in {self.path!r} is not a "
                f"valid checkpoint ({type(e).__name__}: {e})"
            ) from e
        return json.loads(row.checkpoint), {b.channel: (b.type, b.blob) for b in blob_rows}


def splice_checkpoint(
    doc: dict[str, Any], blobs: dict[str, tuple[str, bytes | None]]
) -> bytes | None:
    """What `JsonPlusSerializer().dumps_typed` writes for the whole checkpoint
    (the document with every channel value), built from the blobs' own msgpack
    bytes instead of decoding and re-encoding each value: msgpack values do not
    depend on what contains them. None when a blob is not plain msgpack, null
    or bytes (the caller then decodes and encodes)."""
    values = {ch: _pack(v) for ch, v in (doc.get("channel_values") or {}).items()}
    for ch, (type_, blob) in blobs.items():
        if type_ == "msgpack" and blob is not None:
            values[ch] = blob
        elif type_ in ("null", "bytes"):
            values[ch] = _pack(None if type_ == "null" else blob or b"")
        elif type_ != "empty":
            return None
    channel_values = _map_header(len(values)) + b"".join(_pack(ch) + v for ch, v in values.items())
    fields = [
        _pack(k) + (channel_values if k == "channel_values" else _pack(v)) for k, v in doc.items()
    ]
    if "channel_values" not in doc:
        fields.append(_pack("channel_values") + channel_values)
    return _map_header(len(fields)) + b"".join(fields)


def _pack(value: Any) -> bytes:
    return ormsgpack.packb(value, option=ormsgpack.OPT_NON_STR_KEYS)


def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x80 | n])
    if n < 1 << 16:
        return b"\xde" + n.to_bytes(2, "big")
    return b"\xdf" + n.to_bytes(4, "big")


def row_key(checkpoint_id: str, op: PutOp) -> tuple[str, str, str]:
    return (op.row.thread_id, op.row.checkpoint_ns, checkpoint_id)


def missing_channels(
    doc: dict[str, Any], keys: list[BlobKey], known: dict[BlobKey, Any]
) -> list[str]:
    """Channels of a put with a version but neither an inline value nor a known blob."""
    inline = doc.get("channel_values") or {}
    return [key[2] for key in keys if key not in known and key[2] not in inline]
