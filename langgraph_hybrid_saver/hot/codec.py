"""How the hot tier packs checkpoints, blobs and writes into Redis values.

A record is msgpack [checkpoint json, metadata json, parent, blob fields]; a
blob value is `type NUL bytes`; a pending write is msgpack of its row. Pure
functions, shared by the store, the outbox codec and the operators' views.

Values of at least the saver's `compress_min_bytes` are stored zstd-compressed
(level 1) when that saves at least a tenth: their type is then prefixed with
SOH (`COMPRESSED`), which no serializer's type name starts with. Every reader
expands them, whatever its own setting; the durable store gets them expanded.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

import ormsgpack
import zstandard

from langgraph_hybrid_saver.core import (
    CheckpointRow,
    StoredCheckpoint,
    WriteRow,
    blob_field,
)
from langgraph_hybrid_saver.errors import CorruptDataError, SerializationError

COMPRESSED = "\x01"
COMPRESS_LEVEL = 1  # zstd's fastest regular level


class _Zstd(threading.local):
    """A compressor and a decompressor per thread (neither may be used by
    two threads at once): making a context costs ~16 µs a value."""

    def __init__(self) -> None:
        self.c = zstandard.ZstdCompressor(level=COMPRESS_LEVEL)
        self.d = zstandard.ZstdDecompressor()


_zstd = _Zstd()


def squeeze(type_: str, blob: bytes | None, min_bytes: int) -> tuple[str, bytes | None]:
    """A typed value as Redis stores it: compressed from `min_bytes` (0: never)."""
    if type_.startswith(COMPRESSED):
        raise SerializationError(
            f"the serializer named a value's type {type_!r}, which starts with \\x01, "
            "the mark of a compressed value: use a serializer whose type names are "
            "printable text"
        )
    if min_bytes and blob is not None and len(blob) >= min_bytes:
        packed = _zstd.c.compress(blob)
        if len(packed) * 10 <= len(blob) * 9:
            return COMPRESSED + type_, packed
    return type_, blob


def expand(type_: str, blob: bytes) -> tuple[str, bytes]:
    """A value as `squeeze` stored it, back as the serializer wrote it."""
    if not type_.startswith(COMPRESSED):
        return type_, blob
    try:
        return type_[1:], _zstd.d.decompress(blob)
    except zstandard.ZstdError as e:
        raise CorruptDataError(f"a compressed value cannot be expanded ({e})") from e


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


def pack_blob(type_: str, blob: bytes | None, compress_min: int = 0) -> bytes:
    type_, blob = squeeze(type_, blob, compress_min)
    return type_.encode() + b"\x00" + (blob or b"")


def unpack_blob(value: bytes) -> tuple[str, bytes]:
    type_, _, blob = value.partition(b"\x00")
    return expand(type_.decode(), blob)


def write_field(checkpoint_id: str, w: WriteRow) -> str:
    return f"{checkpoint_id}\x00{w.task_id}\x00{w.idx}"


def pack_write(w: WriteRow, compress_min: int = 0) -> bytes:
    type_, blob = squeeze(w.type, w.blob, compress_min)
    return ormsgpack.packb([w.task_id, w.idx, w.task_path, w.channel, type_, blob])


def unpack_write(value: bytes) -> WriteRow:
    task_id, idx, task_path, channel, type_, blob = ormsgpack.unpackb(value)
    if blob is not None:
        type_, blob = expand(type_, blob)
    return WriteRow(task_id, idx, task_path, channel, type_, blob)


def pack_record(row: CheckpointRow, refs: Sequence[str]) -> bytes:
    return ormsgpack.packb(
        [row.checkpoint, row.metadata, row.parent_checkpoint_id or "", list(refs)]
    )


def pack_stored(s: StoredCheckpoint, compress_min: int = 0) -> tuple[bytes, list[Any], list[Any]]:
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
        field = blob_field(channel, str(versions[channel]))
        blobs += (field, pack_blob(type_, blob, compress_min))
    writes: list[Any] = []
    for w in s.writes:
        writes += (write_field(s.checkpoint_id, w), pack_write(w, compress_min))
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
