"""How the hot tier packs values for Redis and its Lua scripts, and how an
outbox entry's fields decode into the operation a durable store applies. No
server: the entries are built by hand, field by field, as the put, put_writes
and drop_thread scripts write them."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ormsgpack
import pytest

from langgraph_hybrid_saver import CorruptDataError
from langgraph_hybrid_saver.core import (
    BlobRow,
    CheckpointRow,
    StoredCheckpoint,
    WriteRow,
    blob_field,
)
from langgraph_hybrid_saver.hot.codec import (
    decode_record,
    pack_blob,
    pack_for_lua,
    pack_record,
    pack_stored,
    pack_write,
    unpack_blob,
    unpack_write,
    write_field,
)
from langgraph_hybrid_saver.outbox.codec import decode_entry
from langgraph_hybrid_saver.outbox.ops import (
    DeleteThreadOp,
    PutOp,
    WritesOp,
    seq_key,
)

# --- pack_for_lua ---------------------------------------------------------------------------


def test_pack_for_lua_writes_every_string_as_str32() -> None:
    """cmsgpack in Redis cannot read msgpack `bin`: bytes go as `str` too."""
    assert pack_for_lua("ab") == b"\xdb\x00\x00\x00\x02ab"
    assert pack_for_lua(b"\x00\xff") == b"\xdb\x00\x00\x00\x02\x00\xff"  # any bytes
    assert pack_for_lua("é") == b"\xdb\x00\x00\x00\x02\xc3\xa9"  # UTF-8 length
    assert pack_for_lua("") == b"\xdb\x00\x00\x00\x00"


def test_pack_for_lua_lists() -> None:
    assert pack_for_lua([]) == b"\x90"
    assert pack_for_lua(["a", [b"b"]]) == (
        b"\x92" + b"\xdb\x00\x00\x00\x01a" + b"\x91" + b"\xdb\x00\x00\x00\x01b"
    )
    sixteen = [str(i) for i in range(16)]  # past fixarray: array32
    assert pack_for_lua(sixteen).startswith(b"\xdd\x00\x00\x00\x10")
    fifteen = sixteen[:15]
    assert pack_for_lua(fifteen).startswith(b"\x9f")


@pytest.mark.parametrize(
    "value",
    [[], ["x"], ["a", ["b", ["c"]], "é"], [str(i) for i in range(40)], "plain", "x" * 70_000],
    ids=["empty", "one", "nested", "array32", "str", "long"],
)
def test_pack_for_lua_is_msgpack(value: Any) -> None:
    assert ormsgpack.unpackb(pack_for_lua(value)) == value


# --- blobs, writes, records -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "blob"),
    [("msgpack", b"\x93\x01\x02\x03"), ("bytes", b"a\x00b\x00"), ("empty", b""), ("json", b"")],
)
def test_blob_round_trip(type_: str, blob: bytes) -> None:
    packed = pack_blob(type_, blob)
    assert packed == type_.encode() + b"\x00" + blob
    assert unpack_blob(packed) == (type_, blob)  # NULs inside the blob stay


def test_a_missing_blob_packs_as_empty() -> None:
    assert unpack_blob(pack_blob("empty", None)) == ("empty", b"")


@pytest.mark.parametrize(
    "write",
    [
        WriteRow("task-1", 0, "~p", "messages", "msgpack", b"\x91\xa1x"),
        WriteRow("t", -3, "~p~0", "__interrupt__", "bytes", b"\x00\xff"),
        WriteRow("t\U0001f600", 7, "", "ch", "empty", b""),
    ],
)
def test_write_round_trip(write: WriteRow) -> None:
    assert unpack_write(pack_write(write)) == write


def test_write_field_names_checkpoint_task_and_idx() -> None:
    w = WriteRow("task", -1, "~p", "__error__", "bytes", b"")
    assert write_field("c1", w) == "c1\x00task\x00-1"


ROW = CheckpointRow("t", "sub:1", "c2", "c1", '{"v":1,"id":"c2","channel_values":{}}', '{"step":2}')


def test_pack_record_layout() -> None:
    refs = [blob_field("messages", "2"), blob_field("other", "1")]
    assert ormsgpack.unpackb(pack_record(ROW, refs)) == [ROW.checkpoint, ROW.metadata, "c1", refs]
    root = CheckpointRow("t", "", "c1", None, "{}", "{}")
    assert ormsgpack.unpackb(pack_record(root, ())) == ["{}", "{}", "", []]


def test_decode_record_round_trip() -> None:
    refs = [blob_field("messages", "2")]
    stored, got_refs = decode_record("t", "sub:1", "c2", pack_record(ROW, refs), "redis")
    assert (stored.thread_id, stored.checkpoint_ns, stored.checkpoint_id) == ("t", "sub:1", "c2")
    assert stored.parent_checkpoint_id == "c1"
    assert stored.checkpoint == json.loads(ROW.checkpoint)
    assert stored.metadata == {"step": 2}
    assert got_refs == refs
    root = CheckpointRow("t", "", "c1", None, "{}", "{}")
    back, _ = decode_record("t", "", "c1", pack_record(root, ()), "redis")
    assert back.parent_checkpoint_id is None


@pytest.mark.parametrize(
    "record",
    [b"\xc1", ormsgpack.packb(["{}", "{}"]), ormsgpack.packb(["not json", "{}", "", []])],
    ids=["not-msgpack", "short", "bad-json"],
)
def test_decode_record_of_a_corrupt_record(record: bytes) -> None:
    with pytest.raises(CorruptDataError, match="hot record of checkpoint 'c9' in redis:6379"):
        decode_record("t", "", "c9", record, "redis:6379")


def test_pack_stored_is_what_the_readers_decode() -> None:
    w = WriteRow("task", 0, "~p", "messages", "msgpack", b"\x91\xa1w")
    s = StoredCheckpoint(
        "t",
        "",
        "c2",
        "c1",
        {"id": "c2", "channel_values": {"step": 2}, "channel_versions": {"messages": "5"}},
        {"step": 2},
        blobs={"messages": ("msgpack", b"\x91\xa1m")},
        writes=[w],
    )
    record, blob_pairs, write_pairs = pack_stored(s)
    back, refs = decode_record("t", "", "c2", record, "redis")
    assert (back.checkpoint, back.metadata, back.parent_checkpoint_id) == (
        s.checkpoint,
        s.metadata,
        "c1",
    )
    assert refs == [blob_field("messages", "5")]  # the version the checkpoint reads
    assert blob_pairs == [blob_field("messages", "5"), pack_blob("msgpack", b"\x91\xa1m")]
    assert write_pairs[0] == write_field("c2", w) and unpack_write(write_pairs[1]) == w


# --- decode_entry: outbox fields as the scripts write them ---------------------------------


def put_fields(record_key: bytes = b"r", **blobs: bytes) -> dict[bytes, bytes]:
    refs = [blob_field(ch, "3") for ch in blobs]
    fields = {
        b"k": b"p",
        b"t": b"t",
        b"n": b"sub:1",
        b"c": b"c2",
        record_key: pack_record(ROW, refs),
    }
    for ch, value in blobs.items():
        fields[blob_field(ch, "3").encode()] = value
    return fields


def test_decode_a_put_entry() -> None:
    fields = put_fields(messages=pack_blob("msgpack", b"\x91\xa1m"), empty=pack_blob("empty", None))
    op = decode_entry("1700000000000-4", fields)
    assert op == PutOp(
        seq_key("1700000000000-4"),
        CheckpointRow("t", "sub:1", "c2", "c1", ROW.checkpoint, ROW.metadata),
        (BlobRow("messages", "3", "msgpack", b"\x91\xa1m"), BlobRow("empty", "3", "empty", b"")),
    )


def test_decode_a_put_entry_with_a_large_value() -> None:
    """A large value's field is empty in the entry; its value comes from its own key."""
    fields = put_fields(b"R", big=b"", small=pack_blob("bytes", b"s"))
    key = b"lhs:v1:{3}:1:t:p:5-0:big\x003"
    op = decode_entry("5-0", fields, {b"big\x003": (key, pack_blob("bytes", b"B" * 100))})
    assert isinstance(op, PutOp)
    assert op.row.parent_checkpoint_id == "c1"
    assert op.blobs == (
        BlobRow("big", "3", "bytes", b"B" * 100),
        BlobRow("small", "3", "bytes", b"s"),
    )


def test_decode_a_put_entry_whose_large_value_is_gone() -> None:
    fields = put_fields(b"R", big=b"")
    key = b"lhs:v1:{3}:1:t:p:5-0:big\x003"
    for large in (None, {}, {b"big\x003": (key, None)}):
        with pytest.raises(CorruptDataError, match=r"channel 'big' .* is gone from Redis"):
            decode_entry("5-0", fields, large)


def test_decode_a_writes_entry() -> None:
    w0 = WriteRow("task", 0, "~p", "messages", "msgpack", b"\x91\xa1a")
    w1 = WriteRow("task", 1, "~p", "other", "bytes", b"\x00")
    fields = {b"k": b"w", b"t": b"t", b"n": b"", b"c": b"c2", b"u": b"0"}
    for w in (w0, w1):
        fields[write_field("c2", w).encode()] = pack_write(w)
    assert decode_entry("7-1", fields) == WritesOp(seq_key("7-1"), "t", "", "c2", False, (w0, w1))
    assert decode_entry("7-1", {**fields, b"u": b"1"}).upsert is True  # type: ignore[union-attr]


def test_decode_a_delete_entry() -> None:
    fields = {b"k": b"d", b"t": "t\U0001f600".encode()}  # UTF-8, as Redis holds it
    assert decode_entry("9-0", fields) == DeleteThreadOp(seq_key("9-0"), "t\U0001f600")


GOOD_WRITES = {
    b"k": b"w",
    b"t": b"t",
    b"n": b"",
    b"c": b"c2",
    b"u": b"0",
    b"c2\x00task\x000": pack_write(WriteRow("task", 0, "~p", "ch", "bytes", b"x")),
}


@pytest.mark.parametrize(
    ("sid", "fields"),
    [
        ("1-0", {b"k": b"d"}),  # no thread
        ("1-0", {b"t": b"t"}),  # no kind
        ("x-0", {b"k": b"d", b"t": b"t"}),  # not a stream id
        ("1-0", {b"k": b"d", b"t": b"\xff"}),  # a thread id that is not UTF-8
        ("1-0", {**put_fields(), b"r": b"\xc1"}),  # the record is not msgpack
        ("1-0", {**put_fields(), b"r": ormsgpack.packb(["{}", "{}"])}),  # nor a record
        ("1-0", {k: v for k, v in put_fields().items() if k != b"c"}),  # no checkpoint id
        ("1-0", {**put_fields(), b"ch\x001": b"\xff\x00x"}),  # a type that is not UTF-8
        ("1-0", {k: v for k, v in GOOD_WRITES.items() if k != b"u"}),  # no upsert flag
        ("1-0", {**GOOD_WRITES, b"c2\x00task\x000": b"\xc1"}),  # a write that is not msgpack
        ("1-0", {**GOOD_WRITES, b"c2\x00task\x000": ormsgpack.packb(["task", 0])}),
    ],
    ids=[
        "no-thread",
        "no-kind",
        "bad-sid",
        "thread-not-utf8",
        "record-not-msgpack",
        "record-short",
        "no-checkpoint-id",
        "blob-type-not-utf8",
        "no-upsert",
        "write-not-msgpack",
        "write-short",
    ],
)
def test_decode_a_corrupt_entry(sid: str, fields: dict[bytes, bytes]) -> None:
    with pytest.raises(CorruptDataError, match=f"outbox entry {sid} cannot be decoded"):
        decode_entry(sid, fields)


# --- compression ----------------------------------------------------------------------------

TEXT = json.dumps([{"role": "ai", "content": f"reply {i}: " + "words " * 40} for i in range(50)])


def test_large_values_are_compressed_and_expand_back() -> None:
    data = TEXT.encode()
    packed = pack_blob("json", data, 4096)
    assert len(packed) * 2 < len(data)
    assert packed.startswith(b"\x01json\x00")
    assert unpack_blob(packed) == ("json", data)
    w = WriteRow("task", 0, "~p", "messages", "json", data)
    assert len(pack_write(w, 4096)) * 2 < len(data)
    assert unpack_write(pack_write(w, 4096)) == w


def test_threads_compress_and_expand_at_once() -> None:
    """Each thread has its own zstd contexts (one used by two threads at
    once fails or mixes their data): values packed and unpacked in eight
    threads together come back whole."""

    def round_trips(n: int) -> int:
        ok = 0
        for i in range(150):
            data = f"{n}-{i} {TEXT}".encode()
            ok += unpack_blob(pack_blob("json", data, 1024)) == ("json", data)
        return ok

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(round_trips, range(8))) == [150] * 8


def test_small_incompressible_and_disabled_values_stay_as_they_are() -> None:
    data = TEXT.encode()
    assert pack_blob("json", data[:100], 4096) == b"json\x00" + data[:100]  # below the threshold
    assert pack_blob("json", data, 0) == b"json\x00" + data  # compression off
    noise = random.Random(0).randbytes(16384)  # compresses by less than a tenth
    assert pack_blob("bytes", noise, 4096) == b"bytes\x00" + noise
    assert unpack_blob(pack_blob("null", None, 1)) == ("null", b"")


def test_a_serializer_type_that_looks_compressed_is_refused() -> None:
    from langgraph_hybrid_saver import SerializationError

    with pytest.raises(SerializationError, match="starts with"):
        pack_blob("\x01odd", b"x", 0)


def test_a_corrupt_compressed_value_is_a_typed_error() -> None:
    with pytest.raises(CorruptDataError, match="cannot be expanded"):
        unpack_blob(b"\x01json\x00not zstd")


def test_outbox_entries_carry_compressed_values_and_decode_them_expanded() -> None:
    data = TEXT.encode()
    row = CheckpointRow("t", "", "c1", None, json.dumps({"v": 1}), "{}")
    fields = {
        b"k": b"p",
        b"t": b"t",
        b"n": b"",
        b"c": b"c1",
        b"r": pack_record(row, [blob_field("messages", "1")]),
        blob_field("messages", "1").encode(): pack_blob("json", data, 4096),
    }
    op = decode_entry("5-0", fields)
    assert isinstance(op, PutOp)
    assert op.blobs == (BlobRow("messages", "1", "json", data),)
