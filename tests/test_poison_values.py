"""Values no durable store can hold as they are: stored as blobs, or refused.

A channel value stays inline in the checkpoint JSON only if every store's
JSON holds it unchanged (`encode.storable_inline`); other primitives become
typed blobs, which every store holds and the official savers read. What no
store can hold (a lone surrogate, an int past 64 bits, NUL or a lone
surrogate in metadata, ids and names) is refused at put/put_writes, before
anything reaches Redis, so the reconciler never meets it.
"""

from __future__ import annotations

import enum
import json
import math
import uuid
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint, empty_checkpoint
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, StateGraph

from langgraph_hybrid_saver import AsyncHybridSaver, ConfigError, SerializationError
from langgraph_hybrid_saver.core import (
    BlobRow,
    ListQuery,
    blob_field,
    normalize_id,
    parse_config,
)
from langgraph_hybrid_saver.encode import (
    encode_put,
    encode_writes,
    storable_inline,
)
from tests.conftest import hybrid_saver

SERDE = JsonPlusSerializer()
TID = "thread-poison"

# Channel values a node may return, by channel: where each is stored.
INLINE = {
    "plain": "plain text",
    "emoji": "smile \U0001f600",  # a surrogate pair in the JSON text: fine
    "i62": 2**62,
    "i63max": 2**63 - 1,
    "i63min": -(2**63),
    "zero": 0.0,
    "neg": -1.5,
    "flag": True,
}
AS_BLOB = {
    "nul": "a\x00b",
    "negzero": -0.0,
    "nan": math.nan,
    "inf": math.inf,
    "ninf": -math.inf,
    "u63": 2**63,  # past int64, within msgpack's uint64
}
VALUES = {**INLINE, **AS_BLOB}


def same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN, -0.0 distinct from 0.0, types kept."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


def loads(serde: SerializerProtocol, b: BlobRow) -> Any:
    assert b.blob is not None
    return serde.loads_typed((b.type, b.blob))


def assert_values(got: dict[str, Any]) -> None:
    bad = {k: (got.get(k), v) for k, v in VALUES.items() if not same(got.get(k), v)}
    assert not bad, bad


def config(thread_id: str = TID) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


def checkpoint(values: dict[str, Any]) -> Checkpoint:
    cp = empty_checkpoint()
    cp["channel_values"] = dict(values)
    cp["channel_versions"] = dict.fromkeys(values, "1")
    return cp


# --- the predicate ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "inline"),
    [
        (None, True),
        (True, True),
        (False, True),
        ("", True),
        ("plain", True),
        ("caf\u00e9 \U0001f600", True),
        ("a\x00b", False),
        ("x\ud800y", False),
        ("\ud83d\ude00", False),  # a pair split in two code points: not UTF-8
        (2**63 - 1, True),
        (-(2**63), True),
        (2**63, False),
        (-(2**63) - 1, False),
        (2**70, False),
        (0.0, True),
        (-1.5, True),
        (9.99e15, True),
        (1e16, False),  # jsonb gives 1e+16 back as the integer 10000000000000000
        (-1e308, False),
        (-0.0, False),
        (math.nan, False),
        (math.inf, False),
        (-math.inf, False),
        (b"x", False),
        (enum.IntEnum("Level", "LOW").LOW, False),  # a subclass would read back as int
        (type("Text", (str,), {})("t"), False),
        (["x"], False),
        ({"k": 1}, False),
    ],
)
def test_storable_inline(value: Any, inline: bool) -> None:
    assert storable_inline(value) is inline


# --- encode_put / encode_writes, no server ----------------------------------------------


def test_encode_put_keeps_storable_inline_and_blobs_the_rest() -> None:
    row, refs, blobs = encode_put(
        SERDE, config(), checkpoint(VALUES), {}, dict.fromkeys(VALUES, "1")
    )
    doc = json.loads(row.checkpoint)
    assert set(doc["channel_values"]) == set(INLINE)
    assert all(same(doc["channel_values"][k], v) for k, v in INLINE.items())
    assert {b.channel for b in blobs} == set(AS_BLOB)
    assert sorted(refs) == sorted(blob_field(ch, "1") for ch in AS_BLOB)
    for b in blobs:
        assert same(loads(SERDE, b), AS_BLOB[b.channel]), b.channel
    # Nothing a store refuses is left in the document text.
    assert "\\u0000" not in row.checkpoint and "NaN" not in row.checkpoint
    assert "Infinity" not in row.checkpoint and "-0.0" not in row.checkpoint


def test_encrypted_serializer_keeps_nothing_inline() -> None:
    serde = EncryptedSerializer.from_pycryptodome_aes(key=b"k" * 32)
    values = {"plain": "TOPSECRET", "n": 7, "nul": "a\x00b", "none": None}
    row, _, blobs = encode_put(serde, config(), checkpoint(values), {}, dict.fromkeys(values, "1"))
    assert json.loads(row.checkpoint)["channel_values"] == {"none": None}
    assert {b.channel for b in blobs} == {"plain", "n", "nul"}
    assert all(loads(serde, b) == values[b.channel] for b in blobs)
    with pytest.raises(SerializationError, match="lone surrogate"):
        encode_put(serde, config(), checkpoint({"s": "x\ud800y"}), {}, {"s": "1"})


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("x\ud800y", "lone surrogate"),
        (2**70, "Integer exceeds 64-bit range"),
        (-(2**63) - 1, "Integer exceeds 64-bit range"),
    ],
)
def test_encode_put_refuses_what_the_serializer_cannot_store(value: Any, reason: str) -> None:
    with pytest.raises(SerializationError) as err:
        encode_put(SERDE, config(), checkpoint({"v": value, "ok": 1}), {}, {"v": "1", "ok": "1"})
    msg = str(err.value)
    assert f"thread {TID!r}" in msg and "channel 'v'" in msg and reason in msg
    assert "keep such values out of the graph state" in msg and "metadata" not in msg
    assert isinstance(err.value, TypeError)


def test_unchanged_unstorable_value_is_not_re_encoded() -> None:
    """Only channels in new_versions are serialized; the reference stays."""
    row, refs, blobs = encode_put(SERDE, config(), checkpoint({"v": 2**70}), {}, {})
    assert refs == [blob_field("v", "1")] and blobs == []
    assert json.loads(row.checkpoint)["channel_values"] == {}


def test_encode_writes_values() -> None:
    writes = [(ch, v) for ch, v in VALUES.items()]
    rows, upsert = encode_writes(SERDE, writes, "task-1", "~p")
    assert not upsert
    assert all(same(SERDE.loads_typed((w.type, w.blob)), VALUES[w.channel]) for w in rows)
    for value, reason in (("x\ud800y", "lone surrogate"), (2**70, "64-bit")):
        with pytest.raises(SerializationError) as err:
            encode_writes(SERDE, [("ok", 1), ("v", value)], "task-1", "~p", thread_id=TID)
        msg = str(err.value)
        assert "write 1 to channel 'v' by task 'task-1'" in msg and f"thread {TID!r}" in msg
        assert reason in msg


@pytest.mark.parametrize(
    ("task_id", "task_path", "channel", "named"),
    [
        ("t\x00", "~p", "v", "task id 't\\x00'"),
        ("t", "~p\ud800", "v", "task path '~p\\ud800'"),
        ("t", "~p", "v\x00", "channel 'v\\x00'"),
    ],
)
def test_encode_writes_refuses_unstorable_names(
    task_id: str, task_path: str, channel: str, named: str
) -> None:
    with pytest.raises(SerializationError, match="text column") as err:
        encode_writes(SERDE, [(channel, 1)], task_id, task_path, thread_id=TID)
    assert named in str(err.value) and f"thread {TID!r}" in str(err.value)


@pytest.mark.parametrize(
    ("metadata", "where", "reason"),
    [
        ({"k": ["a", "b\x00"]}, "the value at ['k'][1]", "NUL"),
        ({"k": {"x\x00": 1}}, "the key ['k']['x\\x00']", "NUL"),
        ({"k\x00": 1}, "the key ['k\\x00']", "NUL"),
        ({"k": "x\udc00y"}, "the value at ['k']", "lone surrogate"),
        ({"k": math.nan}, "not JSON-serializable", "Out of range float"),
        ({"k": object()}, "not JSON-serializable", "object"),
    ],
)
def test_encode_put_refuses_unstorable_metadata(
    metadata: dict[str, Any], where: str, reason: str
) -> None:
    with pytest.raises(SerializationError) as err:
        encode_put(SERDE, config(), checkpoint({}), metadata, {})  # type: ignore[arg-type]
    msg = str(err.value)
    assert msg.startswith("metadata of checkpoint") and f"thread {TID!r}" in msg
    assert where in msg and reason in msg and "keep metadata values to str" in msg


def test_metadata_with_valid_pairs_and_top_level_nul() -> None:
    """Emoji (a surrogate pair in the JSON text) pass the walk; LangGraph strips
    NUL from top-level str metadata values itself."""
    md = {"e": "\U0001f600", "deep": [{"e": "\U0001f600"}], "s": "a\x00b"}
    row, _, _ = encode_put(SERDE, config(), checkpoint({}), md, {})  # type: ignore[arg-type]
    assert json.loads(row.metadata) == {**md, "s": "ab"}


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (
            lambda cp: cp["versions_seen"].update({"n\x00": {}}),
            "the key ['versions_seen']['n\\x00']",
        ),
        (
            lambda cp: cp["channel_versions"].update({"c\ud800": "1"}),
            "['channel_versions']['c\\ud800']",
        ),
        (lambda cp: cp["channel_versions"].update({"c": math.nan}), "not JSON-serializable"),
    ],
)
def test_checkpoint_document_problem_does_not_speak_of_metadata(change: Any, where: str) -> None:
    cp = checkpoint({})
    change(cp)
    with pytest.raises(SerializationError) as err:
        encode_put(SERDE, config(), cp, {}, {})
    msg = str(err.value)
    assert msg.startswith("the document of checkpoint") and f"thread {TID!r}" in msg
    assert where in msg and "metadata" not in msg and "channel names" in msg


def test_channel_name_with_nul_is_refused() -> None:
    with pytest.raises(SerializationError, match=r"channel 'a\\x00b' of checkpoint .*text column"):
        encode_put(SERDE, config(), checkpoint({"a\x00b": 1}), {}, {"a\x00b": "1"})


@pytest.mark.parametrize(
    ("configurable", "named"),
    [
        ({"thread_id": "a\x00b"}, "thread_id 'a\\x00b'"),
        ({"thread_id": "x\ud800"}, "thread_id 'x\\ud800'"),
        ({"thread_id": "t", "checkpoint_ns": "n\x00s"}, "checkpoint_ns 'n\\x00s'"),
        ({"thread_id": "t", "checkpoint_id": "c\x00"}, "checkpoint_id 'c\\x00'"),
    ],
)
def test_unstorable_ids_are_refused(configurable: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"configurable": configurable})
    assert named in str(err.value) and "text column" in str(err.value)


def test_ids_outside_config() -> None:
    assert parse_config({"configurable": {"thread_id": "t\U0001f600"}})[0] == "t\U0001f600"
    assert normalize_id("r\U0001f600", "run_id") == "r\U0001f600"
    with pytest.raises(ConfigError, match=r"run_id 'r\\x00' contains a NUL"):
        normalize_id("r\x00", "run_id")


# --- real graphs on every store -------------------------------------------------------


class State(TypedDict, total=False):
    plain: str
    emoji: str
    i62: int
    i63max: int
    i63min: int
    zero: float
    neg: float
    flag: bool
    nul: str
    negzero: float
    nan: float
    inf: float
    ninf: float
    u63: int
    v: Any


def graph(checkpointer: Any, value: Any = None) -> Any:
    """START -> node -> END; the node returns every VALUES channel, or `v`."""
    out = dict(VALUES) if value is None else {"v": value}
    builder = StateGraph(State)
    builder.add_node("node", lambda state: out)
    builder.add_edge(START, "node")
    builder.add_edge("node", END)
    return builder.compile(checkpointer=checkpointer)


def cfg(thread_id: str, **extra: Any) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}, **extra}  # type: ignore[typeddict-item]


async def run_values(saver: AsyncHybridSaver) -> tuple[str, str]:
    """Run the graph on a new thread; (thread id, id of its final checkpoint)."""
    tid = str(uuid.uuid4())
    final = await graph(saver).ainvoke({}, cfg(tid))
    assert_values(final)
    got = await saver.aget_tuple(cfg(tid))
    assert got is not None
    await saver.aflush(timeout=15)
    return tid, got.config["configurable"]["checkpoint_id"]


async def assert_final_checkpoint(checkpointer: Any, tid: str, final_id: str) -> None:
    """The final checkpoint itself holds every value (not the one before it,
    whose pending writes would give the same state)."""
    got = await checkpointer.aget_tuple(cfg(tid))
    assert got is not None and got.config["configurable"]["checkpoint_id"] == final_id
    assert got.metadata["step"] == 1 and not got.pending_writes
    assert_values(got.checkpoint["channel_values"])
    assert_values((await graph(checkpointer).aget_state(cfg(tid))).values)


async def drop_hot(saver: AsyncHybridSaver, key_prefix: str) -> None:
    keys = [k async for k in saver.hot.redis.scan_iter(f"{key_prefix}:*")]
    assert keys
    await saver.hot.redis.delete(*keys)


async def test_storable_values_round_trip(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    async with hybrid_saver(redis_url, durable_url, key_prefix) as saver:
        tid, final_id = await run_values(saver)
        stored = await saver.backend.get(tid, "", None)
        assert stored is not None and stored.checkpoint_id == final_id
        assert set(AS_BLOB) <= set(stored.blobs)
        assert not set(AS_BLOB) & set(stored.checkpoint["channel_values"])
        await assert_final_checkpoint(saver, tid, final_id)  # hot
        await drop_hot(saver, key_prefix)
        await assert_final_checkpoint(saver, tid, final_id)  # read through


async def test_official_postgres_saver_reads_the_values(
    redis_url: str, pg_url: str, key_prefix: str
) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    async with hybrid_saver(redis_url, pg_url, key_prefix) as saver:
        tid, final_id = await run_values(saver)
    async with AsyncPostgresSaver.from_conn_string(pg_url) as official:
        await assert_final_checkpoint(official, tid, final_id)


async def test_official_sqlite_saver_reads_the_values(
    redis_url: str, tmp_path: Path, key_prefix: str
) -> None:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path = tmp_path / "x.db"
    async with hybrid_saver(redis_url, f"sqlite:///{path}", key_prefix) as saver:
        tid, final_id = await run_values(saver)
    async with AsyncSqliteSaver.from_conn_string(str(path)) as official:
        await assert_final_checkpoint(official, tid, final_id)


async def thread_keys(saver: AsyncHybridSaver, key_prefix: str, tid: str) -> list[bytes]:
    return [k async for k in saver.hot.redis.scan_iter(f"{key_prefix}:*") if tid.encode() in k]


async def test_unstorable_values_are_refused_before_redis(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    async with hybrid_saver(redis_url, durable_url, key_prefix) as saver:
        before = str(uuid.uuid4())
        await graph(saver, "before").ainvoke({}, cfg(before))
        refused: list[str] = []
        # durability="exit": one checkpoint put at the end and no writes, so a
        # refusal leaves nothing of the thread. (In the other modes LangGraph
        # still stores the pending writes of a checkpoint whose put failed.)
        for value, reason in (("x\ud800y", "lone surrogate"), (2**70, "64-bit")):
            tid = str(uuid.uuid4())
            with pytest.raises(SerializationError, match=reason) as err:
                await graph(saver, value).ainvoke({}, cfg(tid), durability="exit")
            assert f"thread {tid!r}" in str(err.value) and "channel 'v'" in str(err.value)
            refused.append(tid)
        # LangGraph strips NUL from metadata values itself, not from keys.
        for metadata, reason in (({"k\x00": "v"}, "NUL"), ({"k": "x\ud800y"}, "lone surrogate")):
            tid = str(uuid.uuid4())
            with pytest.raises(SerializationError, match=reason) as err:
                await graph(saver, 1).ainvoke({}, cfg(tid, metadata=metadata), durability="exit")
            assert str(err.value).startswith("metadata of checkpoint") and tid in str(err.value)
            refused.append(tid)
        tid = f"{uuid.uuid4()}\x00x"
        with pytest.raises(ConfigError, match=r"thread_id .*NUL"):
            await graph(saver, 1).ainvoke({}, cfg(tid))
        refused.append(tid)
        after = str(uuid.uuid4())
        await graph(saver, "after").ainvoke({}, cfg(after))
        for tid in refused:
            assert await thread_keys(saver, key_prefix, tid) == [], (refused.index(tid), tid)
        await saver.aflush(timeout=15)
        everything = ListQuery(None, None, None, None, None, None)
        assert {s.thread_id for s in await saver.backend.list(everything)} == {before, after}
        for tid, value in ((before, "before"), (after, "after")):
            assert (await graph(saver).aget_state(cfg(tid))).values == {"v": value}
            stored = await saver.backend.get(tid, "", None)
            assert stored is not None and stored.checkpoint["channel_values"]["v"] == value


async def test_refusals_under_async_durability_leave_the_outbox_draining(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    """Default durability: the node's write is refused at put_writes (the
    checkpoints before it reach the durable store); a refused first put leaves
    no checkpoint (LangGraph still stores the input's pending writes); the
    outbox drains."""
    async with hybrid_saver(redis_url, durable_url, key_prefix) as saver:
        tid = str(uuid.uuid4())
        with pytest.raises(SerializationError, match="write 0 to channel 'v' by task"):
            await graph(saver, 2**70).ainvoke({}, cfg(tid))
        bad_md = str(uuid.uuid4())
        with pytest.raises(SerializationError, match=r"metadata of checkpoint .*\['k\\x00'\]"):
            await graph(saver, 1).ainvoke({}, cfg(bad_md, metadata={"k\x00": 1}))
        await saver.aflush(timeout=15)
        assert await saver.outbox.backlog() == (0, None)
        stored = await saver.backend.get(tid, "", None)
        assert stored is not None and stored.writes == []
        assert "v" not in stored.checkpoint["channel_values"] and "v" not in stored.blobs
        assert await saver.backend.get(bad_md, "", None) is None
        assert (await graph(saver).aget_state(cfg(bad_md))).values == {}
