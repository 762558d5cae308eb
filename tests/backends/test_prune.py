"""`backends._prune`: which checkpoints keep-latest keeps on a DeltaChannel
thread, without servers. Each checkpoint is written as a small spec: `S`
stores the channel (a snapshot), `d` versions it without storing it (a
delta step), `.` does not version it."""

from __future__ import annotations

from typing import Any

from langgraph_hybrid_saver.backends._prune import (
    ChainRow,
    doomed_checkpoints,
    kept_checkpoints,
)


def row(
    cid: str,
    parent: str | None,
    *,
    stored: str = "",
    unstored: str = "",
    delta: str = "m",
    ns: str = "",
    thread: str = "t",
) -> ChainRow:
    """Checkpoint `cid`: channels (one letter each) it stores and those it
    versions without storing; `delta`: the channels of its counters."""
    return ChainRow(
        thread,
        ns,
        cid,
        parent,
        frozenset(delta),
        frozenset(stored) | frozenset(unstored),
        frozenset(stored),
    )


def chain(spec: str, channel: str = "m", ns: str = "") -> list[ChainRow]:
    """c0 <- c1 <- ... from a spec such as "SddSd"."""
    out = []
    for i, kind in enumerate(spec):
        out.append(
            row(
                f"c{i}",
                f"c{i - 1}" if i else None,
                stored=channel if kind == "S" else "",
                unstored=channel if kind == "d" else "",
                delta=channel,
                ns=ns,
            )
        )
    return out


def kept_ids(rows: list[ChainRow], keep: int = 1) -> list[str]:
    return sorted(cid for _, _, cid in kept_checkpoints(rows, keep))


def test_the_chain_back_to_the_nearest_snapshot() -> None:
    rows = chain("SddSdd")
    assert kept_ids(rows) == ["c3", "c4", "c5"]  # c5's value: c3's snapshot + c3, c4's writes
    assert doomed_checkpoints(rows, 1) == [("t", "", "c0"), ("t", "", "c1"), ("t", "", "c2")]


def test_a_head_that_stores_its_value_needs_nothing_older() -> None:
    assert kept_ids(chain("SddS")) == ["c3"]
    # a checkpoint that refers to the snapshot's blob (same version) stores it
    assert kept_ids(chain("SddSS")) == ["c4"]


def test_keep_two_walks_from_both() -> None:
    assert kept_ids(chain("SdSddd"), keep=2) == ["c2", "c3", "c4", "c5"]
    assert kept_ids(chain("SdSdSd"), keep=2) == ["c4", "c5"]  # c4 is a snapshot


def test_no_snapshot_keeps_the_chain_to_the_root() -> None:
    assert kept_ids(chain("dddd")) == ["c0", "c1", "c2", "c3"]


def test_a_missing_parent_ends_the_chain() -> None:
    rows = [r for r in chain("Sdddd") if r.checkpoint_id != "c1"]  # deleted by a run
    assert kept_ids(rows) == ["c2", "c3", "c4"]


def test_two_channels_walk_to_the_deeper_snapshot() -> None:
    # m snapshots at c3, f at c1: the head needs both
    rows = [
        row("c0", None, stored="m", unstored="f", delta="mf"),
        row("c1", "c0", stored="f", unstored="m", delta="mf"),
        row("c2", "c1", unstored="mf", delta="mf"),
        row("c3", "c2", stored="m", unstored="f", delta="mf"),
        row("c4", "c3", unstored="mf", delta="mf"),
    ]
    assert kept_ids(rows) == ["c1", "c2", "c3", "c4"]


def test_only_delta_channels_are_walked() -> None:
    # `b` (a consumed trigger: a version, no value) is not a DeltaChannel
    rows = [
        row("c0", None, stored="mb"),
        row("c1", "c0", stored="m", unstored="b"),
        row("c2", "c1", unstored="mb"),
    ]
    assert kept_ids(rows) == ["c1", "c2"]
    # the DeltaChannels are those of any checkpoint's counters: c3 (a
    # snapshot of everything) has none, its parent names m
    rows.append(row("c3", "c2", unstored="m", delta=""))
    assert kept_ids(rows) == ["c1", "c2", "c3"]


def test_a_channel_without_a_version_needs_no_walk() -> None:
    # counted in the metadata but never written: LangGraph reads it as empty
    assert kept_ids([row("c0", None, stored="m"), row("c1", "c0", delta="mx")]) == ["c1"]


def test_forks_walk_their_own_parents() -> None:
    # c1 and c2 are both children of c0; c3 (the newest) continues c1
    rows = [
        row("c0", None, stored="m"),
        row("c1", "c0", unstored="m"),
        row("c2", "c0", stored="m"),
        row("c3", "c1", unstored="m"),
    ]
    assert kept_ids(rows) == ["c0", "c1", "c3"]  # not c2: newer, but not on c3's chain
    assert kept_ids(rows, keep=2) == ["c0", "c1", "c2", "c3"]


def test_a_loop_ends() -> None:
    rows = [row("c0", "c1", unstored="m"), row("c1", "c0", unstored="m")]
    assert kept_ids(rows) == ["c0", "c1"]


def test_namespaces_and_threads_are_planned_apart() -> None:
    rows = [
        *chain("SdSd"),
        *chain("SSSd", channel="x", ns="sub"),
        *[
            row(f"c{i}", f"c{i - 1}" if i else None, unstored="m", delta="", thread="u")
            for i in range(4)
        ],
    ]
    assert sorted(kept_checkpoints(rows, 1)) == [
        ("t", "", "c2"),
        ("t", "", "c3"),
        ("t", "sub", "c2"),
        ("t", "sub", "c3"),
        ("u", "", "c3"),  # no DeltaChannel: the latest only
    ]


# --- PostgresSaver's rules, for every thread -----------------------------------------------------


def plain(cid: str, parent: str | None, ns: str = "", **extra: Any) -> ChainRow:
    """A checkpoint of a thread without a DeltaChannel."""
    empty: frozenset[str] = frozenset()
    return ChainRow("t", ns, cid, parent, empty, empty, empty, **extra)


def test_a_pre_v4_head_keeps_the_parent_its_sends_are_in() -> None:
    rows = [plain("c0", None), plain("c1", "c0", sends=True), plain("c2", "c1", pre_v4=True)]
    assert kept_ids(rows) == ["c1", "c2"]
    # v4 keeps its sends in the checkpoint; a parent without sends is not needed
    assert kept_ids([*rows[:2], plain("c2", "c1")]) == ["c2"]
    assert kept_ids([rows[0], plain("c1", "c0"), rows[2]]) == ["c2"]


def test_a_subgraph_call_goes_with_its_root_checkpoint() -> None:
    root = [plain("r0", None), plain("r1", "r0")]

    def call(started_from: str) -> list[ChainRow]:
        ns = "child:task1"
        return [plain("s0", None, ns, root=started_from), plain("s1", "s0", ns, root=started_from)]

    assert sorted(kept_checkpoints([*root, *call("r0")], 1)) == [("t", "", "r1")]
    assert kept_ids([*root, *call("r1")]) == ["r1", "s1"]  # from the kept root: its newest
    # a root not saved (a run saves it in the background): the call stays
    assert kept_ids([*root, *call("r2")]) == ["r1", "s1"]
    # with keep=2 the root r0 is kept, and so is its call's newest two
    assert kept_ids([*root, *call("r0")], keep=2) == ["r0", "r1", "s0", "s1"]


def test_a_checkpointer_subgraph_keeps_its_newest() -> None:
    # no task id in the namespace: its state outlives each call
    root = [plain("r0", None), plain("r1", "r0")]
    sub = [plain("s0", None, "child", root="r0"), plain("s1", "s0", "child", root="r0")]
    assert kept_ids([*root, *sub]) == ["r1", "s1"]
