"""Outbox entries: the fields a hot write script puts in a shard's stream,
decoded into the operation the durable store applies (`core.Op`)."""

from __future__ import annotations

import ormsgpack

from langgraph_hybrid_saver.core import (
    BlobRow,
    CheckpointRow,
)
from langgraph_hybrid_saver.errors import CorruptDataError
from langgraph_hybrid_saver.hot.codec import unpack_blob, unpack_write
from langgraph_hybrid_saver.outbox.ops import (
    DeleteThreadOp,
    Op,
    PutOp,
    WritesOp,
    seq_key,
)


def decode_entry(
    sid: str,
    fields: dict[bytes, bytes],
    large: dict[bytes, tuple[bytes, bytes | None]] | None = None,
) -> Op:
    """An outbox entry as the operation the durable store must apply; `large`:
    the values of its large blobs (`Outbox.large_values`)."""
    try:
        kind = fields[b"k"]
        thread_id = fields[b"t"].decode()
        seq = seq_key(sid)
        if kind == b"d":
            return DeleteThreadOp(seq, thread_id)
        ns, cid = fields[b"n"].decode(), fields[b"c"].decode()
        if kind == b"w":
            writes = tuple(unpack_write(v) for f, v in fields.items() if b"\x00" in f)
            return WritesOp(seq, thread_id, ns, cid, fields[b"u"] == b"1", writes)
        record = fields.get(b"V") or fields.get(b"R") or fields[b"r"]
        doc, md, parent, _ = ormsgpack.unpackb(record)
        blobs = []
        for f, v in fields.items():
            if b"\x00" in f:
                channel, _, version = f.decode().partition("\x00")
                if v == b"":  # a large value, in a key of its own
                    key, value = (large or {}).get(f, (b"(not read)", None))
                    if value is None:
                        raise CorruptDataError(
                            f"outbox entry {sid}: the value of channel {channel!r} (key "
                            f"{key!r}) is gone from Redis (evicted or deleted); the "
                            "checkpoint cannot be applied whole"
                        )
                    v = value
                type_, blob = unpack_blob(v)
                blobs.append(BlobRow(channel, version, type_, blob))
        row = CheckpointRow(thread_id, ns, cid, parent or None, doc, md)
        return PutOp(seq, row, tuple(blobs))
    except (KeyError, ValueError, ormsgpack.MsgpackDecodeError) as e:
        raise CorruptDataError(
            f"outbox entry {sid} cannot be decoded ({e}); it is moved to the shard's "
            "dead-letter stream (`langgraph-hybrid-saver dead-letters list` shows them)"
        ) from e
