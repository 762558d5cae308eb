"""How the hot tier packs checkpoints, blobs and writes into Redis values.

A record is msgpack [checkpoint json, metadata json, parent, blob fields]; a
blob value is `type NUL bytes`; a pending write is msgpack of its row. Pure
functions, shared by the store, the outbox codec and the operators' views.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import ormsgpack

from langgraph_hybrid_saver.core import (
    CheckpointRow,
    StoredCheckpoint,
    WriteRow,
    blob_field,
)
from langgraph_hybrid_saver.errors import CorruptDataError


def pack_for_lua(value: list[Any] | str | bytes) -> bytes:
    """msgpack of nested lists of strings/bytes, every string as msgpack `str`:
    Redis' Lua cmsgpack cannot decode the `bin` type other packers use for
    bytes, and a Lua string holds any bytes."""
    if isinstance(value, list):
        n = len(value)
        head = bytes([0x90 | n]) if n < 16 else b"\xdd" + n.to_bytes(4, "big")
        return head + b"".join(pack_for_lua(v) for v in value)
    raw = value.encode() if isinstance(value, str) else value
    return b"\xdb" + len(raw).to_bytes(4, "big") + raw


def pack_blob(type_: str, blob: bytes | None) -> bytes:
    return type_.encode() + b"\x00" + (blob or b"")


def unpack_blob(value: bytes) -> tuple[str, bytes]:
    type_, _, blob = value.partition(b"\x00")
    return type_.decode(), blob


def write_field(checkpoint_id: str, w: WriteRow) -> str:
    return f"{checkpoint_id}\x00{w.task_id}\x00{w.idx}"


def pack_write(w: WriteRow) -> bytes:
    return ormsgpack.packb([w.task_id, w.idx, w.task_path, w.channel, w.type, w.blob])


def unpack_write(value: bytes) -> WriteRow:
    task_id, idx, task_path, channel, type_, blob = ormsgpack.unpackb(value)
    return WriteRow(task_id, idx, task_path, channel, type_, blob)


def pack_record(row: CheckpointRow, refs: Sequence[str]) -> bytes:
    return ormsgpack.packb(
        [row.checkpoint, row.metadata, row.parent_checkpoint_id or "", list(refs)]
    )




def pack_stored(s: StoredCheckpoint) -> tuple[bytes, list[Any], list[Any]]:
    """A whole checkpoint as Redis keeps it under its thread (whichever that
    is: the record does not name it): its record, its blob field/value pairs
    and its pending-write field/value pairs."""
    versions = s.checkpoint.get("channel_versions", {})
    row = CheckpointRow(
        s.thread_id,
        s.checkpoint_ns,
        s.checkpoint_id,
        s.parent_checkpoint_id,
        json.dumps(s.checkpoint, separators=(",", ":")),
        json.dumps(s.metadata, separators=(",", ":")),
    )
    blobs: list[Any] = []
    for channel, (type_, blob) in s.blobs.items():
        blobs += (blob_field(channel, str(versions[channel])), pack_blob(type_, blob))
    writes: list[Any] = []
    for w in s.writes:
        writes += (write_field(s.checkpoint_id, w), pack_write(w))
    return pack_record(row, blobs[::2]), blobs, writes


def decode_record(
    thread_id: str, ns: str, cid: str, rec: bytes, where: str
) -> tuple[StoredCheckpoint, list[str]]:
    try:
        doc, md, parent, refs = ormsgpack.unpackb(rec)
        stored = StoredCheckpoint(
            thread_id, ns, cid, parent or None, json.loads(doc), json.loads(md)
        )
    except (ValueError, TypeError, ormsgpack.MsgpackDecodeError) as e:
        raise CorruptDataError(
            f"hot record of checkpoint {cid!r} in {where} cannot be decoded ({e}); "
            "delete that key and the durable copy will be read through"
        ) from e
    return stored, refs
