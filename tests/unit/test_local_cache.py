"""The local cache's bookkeeping (hot/local_cache.py), no server: what is
cached after a read, a put and pending writes, what an invalidation or a
flush drops, the stamp keys' names, the bound in bytes."""

from __future__ import annotations

import asyncio
import json

import pytest

from langgraph_hybrid_saver.core import BlobRow, CheckpointRow, StoredCheckpoint, WriteRow
from langgraph_hybrid_saver.hot.keys import Keys
from langgraph_hybrid_saver.hot.local_cache import LocalCache

KEYS = Keys("p", 16)


def cache(max_bytes: int = 1 << 20) -> LocalCache:
    c = LocalCache(KEYS, max_bytes)
    c.ready = True
    return c


def stored(cid: str, versions: dict[str, str], blobs: dict[str, bytes]) -> StoredCheckpoint:
    cp = {"v": 4, "id": cid, "channel_values": {}, "channel_versions": versions}
    return StoredCheckpoint(
        "t", "", cid, None, cp, {"step": 1}, {ch: ("bytes", b) for ch, b in blobs.items()}
    )


def row(cid: str, parent: str | None, versions: dict[str, str]) -> CheckpointRow:
    cp = {"v": 4, "id": cid, "channel_values": {}, "channel_versions": versions}
    return CheckpointRow("t", "", cid, parent, json.dumps(cp), json.dumps({"step": 2}))


def get(c: LocalCache) -> StoredCheckpoint | None:
    return asyncio.run(c.get("t", ""))


@pytest.mark.parametrize("thread_id", ["t", "a:b", "x}:y", "ünï", "{", ""])
def test_stamp_keys_name_their_thread(thread_id: str) -> None:
    key = KEYS.stamp(thread_id)
    assert key.startswith(KEYS.stamps)
    assert KEYS.stamped_thread(key.encode()) == thread_id
    assert KEYS.stamp(thread_id).split("{")[1].split("}")[0] == str(KEYS.shard(thread_id))


def test_other_keys_are_not_stamps() -> None:
    assert KEYS.stamped_thread(KEYS.base("t").encode()) is None
    assert KEYS.stamped_thread(b"q:v1:s:{1}:1:t") is None


def test_a_read_is_cached_unless_its_thread_changed_meanwhile() -> None:
    c = cache()
    token = c.begin("t")
    c.end("t", "", token, stored("c1", {"a": "1"}, {"a": b"A"}))
    got = get(c)
    assert got is not None and got.checkpoint_id == "c1" and got.blobs == {"a": ("bytes", b"A")}
    assert c.hits == 1

    token = c.begin("t")
    c.invalidate([KEYS.stamp("t").encode()])  # another connection wrote the thread
    c.end("t", "", token, stored("c2", {}, {}))
    assert get(c) is None and c.entries == {}

    token = c.begin("t")
    c.flush()  # tracking was lost while the read was out
    c.end("t", "", token, stored("c3", {}, {}))
    assert c.entries == {}

    token = c.begin("t")
    c.invalidate([KEYS.stamp("other").encode()])  # another thread: no matter
    c.end("t", "", token, stored("c4", {}, {}))
    assert ("t", "") in c.entries


def test_a_put_on_top_of_the_cached_parent_is_the_new_entry() -> None:
    c = cache()
    c.put(row("c1", None, {"a": "1"}), ["a\x001"], [BlobRow("a", "1", "bytes", b"A")])
    assert c.entries == {}, "no entry to build on: Redis may hold a newer checkpoint"
    token = c.begin("t")
    c.end("t", "", token, stored("c1", {"a": "1", "b": "1"}, {"a": b"A", "b": b"B"}))
    # b changes, a is unchanged: its value comes from the parent's entry
    c.put(
        row("c2", "c1", {"a": "1", "b": "2"}),
        ["a\x001", "b\x002"],
        [BlobRow("b", "2", "bytes", b"B2")],
    )
    got = get(c)
    assert got is not None and got.checkpoint_id == "c2" and got.parent_checkpoint_id == "c1"
    assert got.blobs == {"a": ("bytes", b"A"), "b": ("bytes", b"B2")}
    assert got.metadata == {"step": 2}
    # a value at a version the entry lacks: not cached
    c.put(row("c3", "c2", {"a": "7"}), ["a\x007"], [])
    assert c.entries == {}


def test_an_older_put_drops_the_entry() -> None:
    c = cache()
    token = c.begin("t")
    c.end("t", "", token, stored("c5", {}, {}))
    c.put(row("c4", None, {}), [], [])
    assert c.entries == {}


def test_pending_writes_merge_as_the_script_keeps_them() -> None:
    c = cache()
    token = c.begin("t")
    c.end("t", "", token, stored("c1", {}, {}))

    def w(idx: int, blob: bytes) -> WriteRow:
        return WriteRow("task", idx, "", "ch", "bytes", blob)

    c.put_writes("t", "", "c1", [w(0, b"first")], upsert=False)
    c.put_writes("t", "", "c1", [w(0, b"second")], upsert=False)  # HSETNX: kept first
    c.put_writes("t", "", "c1", [w(-1, b"err1")], upsert=True)
    c.put_writes("t", "", "c1", [w(-1, b"err2")], upsert=True)  # HSET: the last
    c.put_writes("t", "", "c0", [w(1, b"elsewhere")], upsert=False)  # another checkpoint
    got = get(c)
    assert got is not None
    assert sorted((x.idx, x.blob) for x in got.writes) == [(-1, b"err2"), (0, b"first")]


def test_least_recently_used_goes_first_within_the_bound() -> None:
    c = cache(max_bytes=2000)
    for i in range(5):
        token = c.begin(f"t{i}")
        s = stored(f"c{i}", {"a": "1"}, {"a": b"x" * 400})
        s.thread_id = f"t{i}"
        c.end(f"t{i}", "", token, s)
        assert c.bytes <= 2000
    assert ("t4", "") in c.entries and ("t0", "") not in c.entries
    held = sum(e.size for e in c.entries.values())
    assert held == c.bytes
    big = stored("big", {"a": "1"}, {"a": b"x" * 5000})
    token = c.begin("t")
    c.end("t", "", token, big)
    assert ("t", "") not in c.entries, "an entry over the bound is not kept"


def test_nothing_is_served_or_cached_while_tracking_is_off() -> None:
    c = cache()
    token = c.begin("t")
    c.end("t", "", token, stored("c1", {}, {}))
    c.ready = False
    assert get(c) is None
    c.flush()
    token = c.begin("t")
    c.end("t", "", token, stored("c1", {}, {}))
    assert c.entries == {}


def test_a_read_that_may_predate_our_own_write_is_not_cached() -> None:
    """Our own writes bring no invalidation (NOLOOP): they mark reads in flight."""
    c = cache()
    token = c.begin("t")
    c.forget_thread("t")  # we deleted or copied the thread meanwhile
    c.end("t", "", token, stored("c1", {}, {}))
    assert c.entries == {}

    token = c.begin("t")
    c.put(row("c2", "c1", {}), [], [])  # we put meanwhile (no entry to build on)
    c.end("t", "", token, stored("c1", {}, {}))
    assert c.entries == {}, "c1 is older than our own c2"

    token = c.begin("t")
    c.put_writes("t", "", "c1", [WriteRow("task", 0, "", "ch", "bytes", b"w")], upsert=False)
    c.end("t", "", token, stored("c1", {}, {}))  # may lack that write
    assert c.entries == {}


def test_writes_before_their_checkpoints_put_keep_the_put_out() -> None:
    """LangGraph's async durability can save a checkpoint's writes before the
    put of that checkpoint returns: the put must not be cached write-less."""
    c = cache()
    token = c.begin("t")
    c.end("t", "", token, stored("c1", {}, {}))
    c.put_writes("t", "", "c2", [WriteRow("task", 0, "", "ch", "bytes", b"w")], upsert=False)
    c.put(row("c2", "c1", {}), [], [])
    assert c.entries == {}
    # writes to an older checkpoint leave the entry alone
    token = c.begin("t")
    c.end("t", "", token, stored("c3", {}, {}))
    c.put_writes("t", "", "c2", [WriteRow("task", 1, "", "ch", "bytes", b"late")], upsert=False)
    assert ("t", "") in c.entries
