"""Pure logic of isolating refused entries in a batch (no servers: a fake
store that refuses some threads, a fake outbox that records what
`apply_entries` dead-letters and acks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from langgraph_hybrid_saver.errors import SerializationError
from langgraph_hybrid_saver.outbox.ops import (
    DeleteThreadOp,
    Op,
)
from langgraph_hybrid_saver.outbox.reconciler import ReconcilerStats, apply_entries


class RefusingStore:
    def __init__(self, bad: set[str], down_after: int | None = None) -> None:
        self.bad, self.down_after = bad, down_after
        self.calls = 0
        self.applied: list[str] = []

    async def apply(self, ops: Sequence[Op]) -> int:
        self.calls += 1
        if self.down_after is not None and self.calls > self.down_after:
            raise ConnectionError("store down")
        if any(op.thread_id in self.bad for op in ops):
            raise SerializationError("refused")
        self.applied += [op.seq for op in ops]
        return len(ops)


class RecordingOutbox:
    def __init__(self) -> None:
        self.dead: list[str] = []
        self.acked: list[str] = []

    async def dead_letter(self, shard: int, sid: str, reason: str) -> None:
        self.dead.append(sid)

    async def ack(self, applied: Sequence[tuple[int, str, str]]) -> None:
        self.acked += [sid for _, sid, _ in applied]


def batch(n: int, bad: set[int]) -> list[tuple[int, str, Op]]:
    return [
        (0, f"{i}-0", DeleteThreadOp(f"{i:05d}", f"bad{i}" if i in bad else f"t{i}"))
        for i in range(n)
    ]


@pytest.mark.parametrize("bad", [set(), {0}, {511}, {3, 200, 201}], ids=str)
async def test_refused_entries_are_found_by_halving(bad: set[int]) -> None:
    entries = batch(512, bad)
    store = RefusingStore({f"bad{i}" for i in bad})
    hot = RecordingOutbox()
    stats = ReconcilerStats()
    outbox: Any = hot
    done = await apply_entries(outbox, store, entries, stats)  # type: ignore[arg-type]
    assert hot.dead == [f"{i}-0" for i in sorted(bad)]
    assert [sid for _, sid, _ in done] == [f"{i}-0" for i in range(512) if i not in bad]
    assert store.applied == [f"{i:05d}" for i in range(512) if i not in bad]  # in order
    assert store.calls <= 1 + 2 * len(bad) * 9  # log2(512) = 9
    assert stats.dead_lettered == len(bad)


async def test_an_outage_while_isolating_acks_what_was_applied() -> None:
    store = RefusingStore({"bad100"}, down_after=3)
    hot = RecordingOutbox()
    outbox: Any = hot
    with pytest.raises(ConnectionError):
        await apply_entries(outbox, store, batch(512, {100}), ReconcilerStats())  # type: ignore[arg-type]
    assert hot.dead == [] and hot.acked == [f"{i}-0" for i in range(len(hot.acked))]
    assert store.applied == [f"{i:05d}" for i in range(len(hot.acked))]
