"""The apply template every backend follows; the backends write the rows.

`apply(ops)` on any store is the same four steps around the store's own
writes:

1. lock (or read) the watermarks of the batch's threads, taken in
   `batch_threads` order so that concurrent appliers cannot deadlock;
2. `plan_apply`: skip every entry at or below its thread's watermark and
   cut the rest into runs of puts and writes, each ended by the delete that
   follows it (`outbox.ops.apply_order`): a delete must land after what was
   queued before it, and a run can be written one statement per table;
3. write each run, then its delete (the store's part);
4. store the watermarks that moved (`ApplyPlan.watermarks`) with the rows,
   in the same transaction, and return `ApplyPlan.applied`.

`refuse_delta_threads` is the one refusal of `prune_keep_latest` every
store makes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from langgraph_hybrid_saver.outbox.ops import (
    DeleteThreadOp,
    Op,
    apply_order,
)


@dataclass(frozen=True, slots=True)
class ApplyPlan:
    """What one batch does to a store whose watermarks were given.

    Attributes:
        runs: The entries past their watermark, as runs of puts and writes,
            each with the delete that ends it (None after the last run).
        watermarks: The threads whose watermark moves, to their new `seq`,
            in `batch_threads` order.
        applied: How many entries the batch applies (what `apply` returns).
    """

    runs: list[tuple[list[Op], DeleteThreadOp | None]]
    watermarks: dict[str, str]
    applied: int


def batch_threads(ops: Iterable[Op]) -> list[str]:
    """The batch's thread ids, sorted: the order every writer locks them in."""
    return sorted({op.thread_id for op in ops})


def plan_apply(ops: Sequence[Op], marks: Mapping[str, str]) -> ApplyPlan:
    """The plan of a batch against the stored watermarks `marks` (a thread
    missing from it has none yet: '')."""
    start = {t: marks.get(t, "") for t in batch_threads(ops)}
    current = dict(start)
    runs = apply_order(ops, current)
    moved = {t: seq for t, seq in current.items() if seq != start[t]}
    applied = sum(len(run) + (delete is not None) for run, delete in runs)
    return ApplyPlan(runs, moved, applied)


def refuse_delta_threads(threads: Iterable[str]) -> None:
    """`prune_keep_latest` without `delta_chains` (what `aprune` calls)
    refuses threads whose metadata has `counters_since_delta_snapshot`, as
    PostgresSaver's `prune` does: a DeltaChannel rebuilds its value from the
    chain of older checkpoints, which keeping only the latest would sever.

    Raises:
        NotImplementedError: Naming the threads, when there are any.
    """
    if delta := sorted(threads):
        raise NotImplementedError(
            "keep_latest would sever the DeltaChannel history of threads "
            f"{', '.join(delta)}; prune them with strategy='delete', or with retention "
            "(`langgraph-hybrid-saver prune --keep-latest N`), which keeps that history"
        )
