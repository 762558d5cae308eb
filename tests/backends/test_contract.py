"""The DurableBackend contract (docs/ARCHITECTURE.md, "Backend contract"),
on every durable store by itself: no saver, no Redis, only
`open_backend(url)`, `open()`, `setup()` and outbox entries built by hand.

What a new backend must pass before the saver and the reconciler can rely on
it: `apply` is idempotent behind a per-thread watermark, a delete fences what
was queued before it, reads give back what was applied (latest, by id,
blobs, list with filter/before/limit, newest first), `delete_for_runs` and
`prune_keep_latest` delete what they say and no more (with `delta_chains`,
keeping a DeltaChannel thread's chain back to its snapshot).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.serde.types import TASKS

from langgraph_hybrid_saver.backends import DurableBackend, open_backend
from langgraph_hybrid_saver.backends._prune import ChainRow
from langgraph_hybrid_saver.core import (
    BlobRow,
    CheckpointRow,
    ListQuery,
    StoredCheckpoint,
    WriteRow,
)
from langgraph_hybrid_saver.outbox.ops import PutOp, WritesOp, seq_key

from ..helpers import delete_op, put_op, writes_op

SERDE = JsonPlusSerializer()


@pytest.fixture
async def backend(durable_url: str) -> AsyncIterator[DurableBackend]:
    b = open_backend(durable_url, serde=SERDE)
    await b.open()
    try:
        await b.setup()
        yield b
    finally:
        await b.close()


def query(thread_id: str | None, ns: str | None = "", **given: Any) -> ListQuery:
    fields = {"checkpoint_id": None, "filter": None, "before": None, "limit": None}
    return ListQuery(thread_id, ns, **{**fields, **given})


async def ids(backend: DurableBackend, thread_id: str | None, **given: Any) -> list[str]:
    """Checkpoint ids `list` returns (every namespace unless `ns` is given)."""
    given.setdefault("ns", None)
    return [s.checkpoint_id for s in await backend.list(query(thread_id, **given))]


def view(s: StoredCheckpoint | None) -> Any:
    """Everything a read returns, comparable across reads."""
    if s is None:
        return None
    writes = sorted((w.task_id, w.idx, w.task_path, w.channel, w.type, w.blob) for w in s.writes)
    return (
        s.thread_id,
        s.checkpoint_ns,
        s.checkpoint_id,
        s.parent_checkpoint_id,
        s.checkpoint,
        s.metadata,
        s.blobs,
        writes,
    )


async def snapshot(backend: DurableBackend, thread_id: str) -> list[Any]:
    return [view(s) for s in await backend.list(query(thread_id, None))]


def chain(thread_id: str) -> list[Any]:
    """c1 <- c2 of one thread, each with a blob, and a write to c1."""
    return [
        put_op(1, thread_id, "c1", {"a": b"a1"}, metadata={"step": 1, "run_id": "r1"}),
        writes_op(2, thread_id, "c1", b"w1", False),
        put_op(3, thread_id, "c2", {"b": b"b3"}, metadata={"step": 2, "run_id": "r2"}, parent="c1"),
    ]


# --- apply and read back --------------------------------------------------------------------


async def test_is_a_durable_backend(backend: DurableBackend) -> None:
    assert isinstance(backend, DurableBackend)
    assert isinstance(backend.where, str) and backend.where


async def test_apply_then_get_latest_and_by_id(backend: DurableBackend) -> None:
    ops = chain("t")
    assert await backend.apply(ops) == 3
    latest = await backend.get("t", "", None)
    assert latest is not None
    assert (latest.checkpoint_id, latest.parent_checkpoint_id) == ("c2", "c1")
    assert latest.checkpoint["channel_values"] == {"step": 3}
    assert latest.checkpoint["channel_versions"] == {"b": "3"}
    assert latest.metadata == {"step": 2, "run_id": "r2"}
    assert latest.blobs == {"b": ("bytes", b"b3")}
    assert latest.writes == []
    first = await backend.get("t", "", "c1")
    assert first is not None
    assert (first.checkpoint_id, first.parent_checkpoint_id) == ("c1", None)
    assert first.blobs == {"a": ("bytes", b"a1")}
    assert first.writes == [WriteRow("task", 0, "~p", "ch", "bytes", b"w1")]
    assert await backend.get("t", "", "c9") is None
    assert await backend.get("t", "other-ns", None) is None
    assert await backend.get("nobody", "", None) is None


async def test_get_blobs_by_channel_and_version(backend: DurableBackend) -> None:
    await backend.apply(chain("t"))
    await backend.apply([put_op(4, "t", "s1", {"a": b"sub"}, ns="sub")])
    got = await backend.get_blobs("t", "", [("a", "1"), ("b", "3"), ("zz", "9")])
    assert got == {"a": ("bytes", b"a1"), "b": ("bytes", b"b3")}  # absent ones left out
    assert await backend.get_blobs("t", "", [("b", "1"), ("a", "3")]) == {}  # other versions
    assert await backend.get_blobs("t", "sub", [("a", "4")]) == {"a": ("bytes", b"sub")}
    assert await backend.get_blobs("t", "sub", [("a", "1")]) == {}  # namespaces apart
    assert await backend.get_blobs("t", "", [("a", "4")]) == {}
    assert await backend.get_blobs("t", "", []) == {}
    assert await backend.get_blobs("nobody", "", [("a", "1")]) == {}


async def test_regular_writes_keep_the_first_value_special_ones_overwrite(
    backend: DurableBackend,
) -> None:
    await backend.apply([put_op(1, "t", "c1")])
    await backend.apply([writes_op(2, "t", "c1", b"first", False)])
    await backend.apply([writes_op(3, "t", "c1", b"second", False)])
    got = await backend.get("t", "", "c1")
    assert got is not None and [w.blob for w in got.writes] == [b"first"]
    await backend.apply([writes_op(4, "t", "c1", b"third", True)])
    got = await backend.get("t", "", "c1")
    assert got is not None and [w.blob for w in got.writes] == [b"third"]


# --- idempotency and the watermark -------------------------------------------------------------


async def test_the_same_batch_twice_applies_nothing_the_second_time(
    backend: DurableBackend,
) -> None:
    ops = [*chain("t"), *chain("u")]
    assert await backend.apply(ops) == 6
    before = (await snapshot(backend, "t"), await snapshot(backend, "u"))
    assert await backend.apply(ops) == 0
    assert (await snapshot(backend, "t"), await snapshot(backend, "u")) == before
    # A batch that overlaps the applied ones applies only what is new.
    more = put_op(5, "t", "c3", {"a": b"a5"}, parent="c2")
    assert await backend.apply([*ops, more]) == 1
    assert await ids(backend, "t") == ["c3", "c2", "c1"]


async def test_watermark_is_the_last_applied_seq_and_skips_what_it_covers(
    backend: DurableBackend,
) -> None:
    assert await backend.watermark("t") == ""
    await backend.apply(chain("t"))
    assert await backend.watermark("t") == seq_key("3-0")
    assert await backend.watermark("u") == ""  # per thread
    stale = [
        put_op(2, "t", "below", {"a": b"x"}),
        put_op(3, "t", "at", {"a": b"x"}),  # the same seq: already applied
        writes_op(3, "t", "c1", b"late", True),
    ]
    before = await snapshot(backend, "t")
    assert await backend.apply(stale) == 0
    assert await snapshot(backend, "t") == before
    assert await backend.watermark("t") == seq_key("3-0")
    # Only the entries above it in a mixed batch; the watermark moves to the last.
    mixed = [put_op(2, "t", "below"), put_op(4, "t", "c4"), put_op(1, "u", "u1")]
    assert await backend.apply(mixed) == 2
    assert await ids(backend, "t") == ["c4", "c2", "c1"]
    assert await backend.watermark("t") == seq_key("4-0")
    assert await backend.watermark("u") == seq_key("1-0")


async def test_a_delete_fences_what_was_queued_before_it(backend: DurableBackend) -> None:
    await backend.apply([*chain("t"), put_op(4, "t", "s1", ns="sub"), *chain("u")])
    assert await backend.apply([delete_op(5, "t")]) == 1
    assert await ids(backend, "t") == []  # every namespace
    assert await backend.get("t", "", None) is None
    assert await backend.get_blobs("t", "", [("a", "1"), ("b", "3")]) == {}
    assert await backend.watermark("t") == seq_key("5-0")
    assert await ids(backend, "u") == ["c2", "c1"]  # another thread is untouched
    # Entries queued before the delete (a slow worker, a replay) stay deleted.
    assert await backend.apply(chain("t")) == 0
    assert await ids(backend, "t") == []
    # What comes after the delete is a new life of the thread.
    assert await backend.apply([put_op(6, "t", "n1", {"a": b"new"})]) == 1
    assert await ids(backend, "t") == ["n1"]


async def test_a_delete_within_a_batch_lands_in_order(backend: DurableBackend) -> None:
    ops = [
        put_op(1, "t", "c1"),
        delete_op(2, "t"),
        put_op(3, "t", "c3"),
        writes_op(4, "t", "c3", b"w", False),
    ]
    assert await backend.apply(ops) == 4
    assert await ids(backend, "t") == ["c3"]
    got = await backend.get("t", "", None)
    assert got is not None and got.checkpoint_id == "c3" and len(got.writes) == 1
    assert await backend.watermark("t") == seq_key("4-0")


# --- list ----------------------------------------------------------------------------------------


async def test_list_newest_first_with_filter_before_and_limit(backend: DurableBackend) -> None:
    meta = {
        "c1": {"source": "input", "step": -1, "tags": ["a"], "flag": True},
        "c2": {"source": "loop", "step": 0, "tags": ["a", "b"], "flag": False},
        "c3": {"source": "loop", "step": 1, "tags": [["x", "y"]], "writes": {"n": {"k": 1}}},
        "c4": {"source": "loop", "step": 2, "tags": [], "flag": 1},
    }
    parent = None
    for n, (cid, md) in enumerate(meta.items(), start=1):
        await backend.apply([put_op(n, "t", cid, metadata=md, parent=parent)])
        parent = cid
    await backend.apply([put_op(5, "t", "s1", ns="sub"), put_op(1, "u", "c9")])

    assert await ids(backend, "t", ns="") == ["c4", "c3", "c2", "c1"]
    assert await ids(backend, "t") == ["s1", "c4", "c3", "c2", "c1"]  # every namespace
    assert await ids(backend, "t", ns="sub") == ["s1"]
    assert await ids(backend, "t", ns="", limit=2) == ["c4", "c3"]
    assert await ids(backend, "t", ns="", before="c3") == ["c2", "c1"]
    assert await ids(backend, "t", ns="", before="c3", limit=1) == ["c2"]
    assert await ids(backend, "t", ns="", checkpoint_id="c2") == ["c2"]
    assert await ids(backend, "t", ns="", checkpoint_id="c7") == []
    assert await ids(backend, "nobody") == []
    assert "c9" in await ids(backend, None)  # across threads
    for pattern, expected in [
        ({"source": "loop"}, ["c4", "c3", "c2"]),
        ({"source": "loop", "step": 0}, ["c2"]),
        ({"step": -1}, ["c1"]),
        ({"flag": True}, ["c1"]),  # a bool is not the number 1
        ({"flag": 1}, ["c4"]),
        ({"flag": False}, ["c2"]),
        ({"tags": ["b"]}, ["c2"]),  # list containment
        ({"tags": ["a"]}, ["c2", "c1"]),
        ({"tags": [["y"]]}, ["c3"]),  # nested lists
        ({"tags": []}, ["c4", "c3", "c2", "c1"]),
        ({"writes": {"n": {"k": 1}}}, ["c3"]),
        ({"writes": {"n": {"k": 2}}}, []),
        ({"missing": None}, []),
    ]:
        assert await ids(backend, "t", ns="", filter=pattern) == expected, pattern
    assert await ids(backend, "t", ns="", filter={"source": "loop"}, limit=2) == ["c4", "c3"]
    assert await ids(backend, "t", ns="", filter={"source": "loop"}, before="c4") == ["c3", "c2"]
    listed = await backend.list(query("t", "", checkpoint_id="c3"))
    assert [view(s) for s in listed] == [view(await backend.get("t", "", "c3"))]


# --- delete_for_runs and prune_keep_latest ------------------------------------------------------


async def test_delete_for_runs_returns_the_threads_it_touched(backend: DurableBackend) -> None:
    await backend.apply(chain("t"))  # c1 by r1, c2 by r2
    await backend.apply([put_op(1, "u", "u1", {"b": b"u"}, metadata={"run_id": "r2"})])
    await backend.apply([put_op(1, "v", "v1", metadata={"run_id": "r3"})])
    assert sorted(await backend.delete_for_runs(["r2", "r9"])) == [
        ("t", "", "c2", True),
        ("u", "", "u1", True),
    ]
    assert await ids(backend, "t") == ["c1"]
    assert await ids(backend, "u") == []
    assert await ids(backend, "v") == ["v1"]
    kept = await backend.get("t", "", "c1")
    assert kept is not None and [w.blob for w in kept.writes] == [b"w1"]
    # The blobs only the deleted checkpoints used are gone, the others stay.
    assert await backend.get_blobs("t", "", [("a", "1"), ("b", "3")]) == {"a": ("bytes", b"a1")}
    assert await backend.delete_for_runs(["r9"]) == []
    assert await backend.delete_for_runs([]) == []


async def test_prune_keep_latest_keeps_the_newest_per_namespace(backend: DurableBackend) -> None:
    await backend.apply([*chain("t"), put_op(4, "t", "c3", {"a": b"a4"}, parent="c2")])
    await backend.apply([writes_op(5, "t", "c3", b"w3", False)])
    await backend.apply(
        [put_op(6, "t", "s1", ns="sub"), put_op(7, "t", "s2", ns="sub", parent="s1")]
    )
    await backend.apply(chain("u"))
    await backend.prune_keep_latest(["t"])
    assert await ids(backend, "t", ns="") == ["c3"]
    assert await ids(backend, "t", ns="sub") == ["s2"]
    assert await ids(backend, "u") == ["c2", "c1"]  # not asked for
    kept = await backend.get("t", "", None)
    assert kept is not None and kept.checkpoint_id == "c3"
    assert kept.blobs == {"a": ("bytes", b"a4")} and [w.blob for w in kept.writes] == [b"w3"]
    await backend.prune_keep_latest(["t"])  # again: nothing more to prune
    assert await ids(backend, "t") == ["s2", "c3"]


async def test_prune_keep_latest_follows_postgres_savers_rules(backend: DurableBackend) -> None:
    """A subgraph call's namespace goes with the root checkpoint it started
    from; a checkpointer subgraph's keeps its newest; a pre-v4 head keeps
    the parent holding its pending sends."""
    root = [put_op(1, "t", "r1"), put_op(2, "t", "r2", parent="r1")]
    started = {"parents": {"": "r1"}}
    call = [
        put_op(3, "t", "s1", ns="child:task", metadata=started),
        put_op(4, "t", "s2", ns="child:task", metadata=started, parent="s1"),
        put_op(5, "t", "k1", ns="keeper", metadata=started),
        put_op(6, "t", "k2", ns="keeper", metadata=started, parent="k1"),
    ]
    send = WriteRow("task", 0, "~p", TASKS, "bytes", b"send")
    sends = [
        put_op(7, "p", "p1"),
        put_op(8, "p", "p2", parent="p1"),
        WritesOp(seq_key("9-0"), "p", "", "p2", False, (send,)),
        put_op(10, "p", "p3", parent="p2"),
    ]
    await backend.apply([*root, *call, *sends])
    await backend.apply([writes_op(11, "t", "s2", b"ws", False, ns="child:task")])
    rows = {r.checkpoint_id: r for r in await backend.chain_index(["t", "p"])}
    assert (rows["s2"].root, rows["r2"].root, rows["p2"].sends, rows["p3"].sends) == (
        "r1",
        None,
        True,
        False,
    )
    assert rows["p3"].pre_v4  # put_op writes format v1
    changed = await backend.prune_keep_latest(["t", "p"])
    assert sorted(changed) == [  # deleted, and made roots (what Redis must forget)
        ("p", "", "p1", True),
        ("p", "", "p2", False),
        ("t", "", "r1", True),
        ("t", "", "r2", False),
        ("t", "child:task", "s1", True),
        ("t", "child:task", "s2", True),
        ("t", "keeper", "k1", True),
        ("t", "keeper", "k2", False),
    ]
    assert await ids(backend, "t") == ["r2", "k2"]
    assert await ids(backend, "p") == ["p3", "p2"]
    p3 = await backend.get("p", "", "p3")
    assert p3 is not None and p3.parent_checkpoint_id == "p2"
    p2 = await backend.get("p", "", "p2")
    assert p2 is not None and p2.parent_checkpoint_id is None
    assert [w.blob for w in p2.writes] == [b"send"]


async def test_prune_keep_latest_refuses_a_delta_channel_thread(backend: DurableBackend) -> None:
    delta = {"step": 1, "counters_since_delta_snapshot": {"messages": 1}}
    await backend.apply([put_op(1, "d", "c1"), put_op(2, "d", "c2", metadata=delta, parent="c1")])
    await backend.apply(chain("t"))
    with pytest.raises(NotImplementedError):
        await backend.prune_keep_latest(["t", "d"])
    assert await ids(backend, "d") == ["c2", "c1"]  # nothing severed
    assert await ids(backend, "t") == ["c2", "c1"]  # nor pruned


def delta_put(
    n: int,
    cid: str,
    parent: str | None,
    *,
    snapshot: bool,
    inline: dict[str, Any] | None = None,
    thread_id: str = "d",
) -> PutOp:
    """A DeltaChannel step of thread `thread_id` at stream id `n-0`: channel
    `m` at version n, stored as a blob when `snapshot`, else with only the
    delta counters in the metadata; channel `x` (no DeltaChannel) at
    version 1, never stored; `inline` values in the document."""
    checkpoint = {
        "v": 1,
        "id": cid,
        "ts": "2024-01-01T00:00:00+00:00",
        "channel_values": inline or {},
        "channel_versions": {"m": f"{n}", "x": "1", **dict.fromkeys(inline or {}, "1")},
        "versions_seen": {},
    }
    metadata: dict[str, Any] = {"step": n}
    if not snapshot:
        metadata["counters_since_delta_snapshot"] = {"m": [1, 1]}
    blobs = (BlobRow("m", f"{n}", "bytes", f"m{n}".encode()),) if snapshot else ()
    row = CheckpointRow(thread_id, "", cid, parent, json.dumps(checkpoint), json.dumps(metadata))
    return PutOp(seq_key(f"{n}-0"), row, blobs)


async def test_prune_keep_latest_keeps_a_delta_channel_chain(backend: DurableBackend) -> None:
    """c5 rebuilds `m` from c3's snapshot and the writes of c3 and c4: with
    `delta_chains` those stay, c1 and c2 go (and m's blob at 1)."""
    steps = [("c1", True), ("c2", False), ("c3", True), ("c4", False), ("c5", False)]
    parent = None
    for n, (cid, snap) in enumerate(steps, 1):
        await backend.apply([delta_put(2 * n, cid, parent, snapshot=snap)])
        await backend.apply([writes_op(2 * n + 1, "d", cid, cid.encode(), False)])
        parent = cid
    await backend.apply(
        [put_op(20, "d", "s1", ns="sub"), put_op(21, "d", "s2", ns="sub", parent="s1")]
    )
    await backend.apply(chain("t"))
    rows = {r.checkpoint_id: r for r in await backend.chain_index(["d"])}
    assert rows["c4"] == ChainRow(
        "d", "", "c4", "c3", frozenset({"m"}), frozenset({"m", "x"}), frozenset(), pre_v4=True
    )
    assert rows["c3"].stored == {"m"} and rows["c3"].delta == set()
    assert rows["s1"].stored == {"step"} and rows["s1"].versioned == set()
    await backend.prune_keep_latest(["d", "t"], delta_chains=True)
    assert await ids(backend, "d") == ["s2", "c5", "c4", "c3"]
    assert await ids(backend, "t") == ["c2"]  # a thread without a DeltaChannel: as before
    c3 = await backend.get("d", "", "c3")
    assert c3 is not None and c3.parent_checkpoint_id is None  # now a root
    assert c3.blobs == {"m": ("bytes", b"m6")} and [w.blob for w in c3.writes] == [b"c3"]
    assert await backend.get_blobs("d", "", [("m", "2")]) == {}
    before = await snapshot(backend, "d")
    await backend.prune_keep_latest(["d"], delta_chains=True)  # again: nothing more
    assert await snapshot(backend, "d") == before


async def test_an_inline_value_is_a_snapshot_an_inline_null_is_not(
    backend: DurableBackend,
) -> None:
    """As PostgresSaver's delta walk reads them: a checkpoint whose inline
    `m` is a value seeds the walk, one whose `m` is null does not."""
    await backend.apply(
        [
            delta_put(1, "c1", None, snapshot=False, inline={"m": "plain value"}),
            delta_put(2, "c2", "c1", snapshot=False, inline={"m": None}),
            delta_put(3, "c3", "c2", snapshot=False),
            delta_put(4, "c4", "c3", snapshot=False, thread_id="e", inline={"m": None}),
        ]
    )
    rows = {r.checkpoint_id: r.stored for r in await backend.chain_index(["d", "e"])}
    assert rows == {"c1": {"m"}, "c2": set(), "c3": set(), "c4": set()}
    await backend.prune_keep_latest(["d"], delta_chains=True)
    assert await ids(backend, "d") == ["c3", "c2", "c1"]


# --- optional capabilities (declared on every backend, None where absent) ------------------


async def test_count_rows_of_one_thread_and_of_all(backend: DurableBackend) -> None:
    await backend.apply(chain("t"))
    await backend.apply([put_op(1, "u", "c1", {"a": b"u1"})])
    of_t, of_u, every = (
        await backend.count_rows("t"),
        await backend.count_rows("u"),
        await backend.count_rows(),
    )
    assert of_t.keys() == of_u.keys() == every.keys()
    assert {k: of_t[k] + of_u[k] for k in every} == every
    assert sum(of_t.values()) > sum(of_u.values()) > 0  # t: 2 checkpoints, a write
    assert set((await backend.count_rows("nobody")).values()) == {0}


async def test_server_version_and_stats_are_declared(backend: DurableBackend) -> None:
    version = await backend.server_version()
    assert version is None or (isinstance(version, str) and version)
    await backend.get("t", "", None)
    assert backend.stats is None or backend.stats["requests"] > 0


# --- setup and close -------------------------------------------------------------------------


async def test_setup_again_changes_nothing(backend: DurableBackend) -> None:
    await backend.apply(chain("t"))
    before = await snapshot(backend, "t")
    await backend.setup()
    await backend.setup()
    assert await snapshot(backend, "t") == before
    assert await backend.watermark("t") == seq_key("3-0")
    assert await backend.apply(chain("t")) == 0


async def test_what_was_applied_outlives_close(durable_url: str) -> None:
    first = open_backend(durable_url, serde=SERDE)
    await first.open()
    await first.setup()
    await first.apply(chain("t"))
    expected = await snapshot(first, "t")
    await first.close()
    second = open_backend(durable_url, serde=SERDE)
    await second.open()
    try:
        assert await snapshot(second, "t") == expected
        assert await second.watermark("t") == seq_key("3-0")
    finally:
        await second.close()
