"""Retention: keep the latest N checkpoints of every (thread, namespace) and
delete threads idle longer than a duration, in the durable store and in
Redis. Run by `langgraph-hybrid-saver prune` and by the reconcile worker's
`--retention`.

A thread's last activity is its newest checkpoint id: LangGraph makes them
with uuid6, whose text sorts in time order, and every store keys on them, so
"idle since" is one comparison with the id of the cutoff time
(`checkpoint_id_at`), with no payload decoded. Checkpoint timestamps
(`ts`) would need each checkpoint read and parsed, in a different column
format per store.

Threads are walked in pages of `batch` (`DurableBackend.thread_ids`); each
page is planned from its checkpoint ids (`checkpoint_index`) and changed in
at most two transactions: the idle threads' deletions (queued through the
outbox like `adelete_thread`, so a write queued before the deletion is
superseded and the thread leaves the thread index) and one
`prune_keep_latest`. Entries written before the run are applied first
(`flush`), so a prune never meets an older entry applied after it.

DeltaChannel: a thread whose checkpoints carry
`counters_since_delta_snapshot` rebuilds values from the chain of older
checkpoints, so keep-latest also keeps, for each checkpoint it keeps, the
ancestors back to the nearest one storing each DeltaChannel value
(`backends._prune`, from `chain_index`), and reports them; deleting an
idle thread takes the whole chain, which severs nothing. A subgraph call's
namespace goes with the root checkpoint it started from, as in
PostgresSaver's prune; a thread with one is planned from `chain_index` too.

Idempotent: a second run finds nothing more to remove.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from uuid import UUID

from langgraph_hybrid_saver.backends import DurableBackend
from langgraph_hybrid_saver.backends._prune import ChainRow, kept_checkpoints
from langgraph_hybrid_saver.errors import ConfigError, FlushTimeoutError
from langgraph_hybrid_saver.hot import HotTier
from langgraph_hybrid_saver.outbox.ops import DeleteThreadOp, seq_key
from langgraph_hybrid_saver.outbox.reconciler import ReconcilerStats, apply_entries
from langgraph_hybrid_saver.outbox.stream import Outbox

logger = logging.getLogger("langgraph_hybrid_saver")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+)([smhdw])")
UUID_EPOCH = 0x01B21DD213814000  # 100 ns intervals from 1582-10-15 to 1970-01-01


def parse_duration(text: str, name: str = "--idle") -> float:
    """'30d', '12h', '90m', '45s', '2w' as seconds.

    Raises:
        ConfigError: Naming the value and the form to use.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match[1]) == 0:
        raise ConfigError(
            f"{name}={text!r} is not a duration: use a positive whole number and a "
            "unit (s, m, h, d or w), e.g. 30d, 12h or 90m"
        )
    return int(match[1]) * UNITS[match[2]]


def checkpoint_id_at(seconds: float) -> str:
    """The smallest uuid6 checkpoint id of a time (seconds since the epoch):
    every id LangGraph makes at or after it sorts at or after this one."""
    ticks = int(seconds * 10_000_000) + UUID_EPOCH
    value = ((ticks >> 12) & 0xFFFFFFFFFFFF) << 80 | (ticks & 0x0FFF) << 64
    return str(UUID(int=value | 0x6 << 76 | 0x2 << 62))  # version 6, RFC variant


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """What a retention run removes: threads whose newest checkpoint is
    older than `idle` seconds, and all but the newest `keep_latest`
    checkpoints of every namespace of the others. None: that rule is off."""

    idle: float | None = None
    keep_latest: int | None = None

    def __post_init__(self) -> None:
        if self.idle is None and self.keep_latest is None:
            raise ConfigError(
                "a retention policy needs a rule: give idle (e.g. 30d), keep-latest "
                "(e.g. 1) or both"
            )
        if self.idle is not None and not self.idle > 0:
            raise ConfigError(f"idle={self.idle!r}: use a positive number of seconds")
        if self.keep_latest is not None and (
            isinstance(self.keep_latest, bool)
            or not isinstance(self.keep_latest, int)
            or self.keep_latest < 1
        ):
            raise ConfigError(
                f"keep_latest={self.keep_latest!r}: use a whole number of 1 or more "
                "(delete idle threads whole with idle=...)"
            )

    @classmethod
    def parse(cls, spec: str) -> RetentionPolicy:
        """'idle=30d,keep-latest=1' (either part may be left out).

        Raises:
            ConfigError: Naming the part that is wrong and the form to use.
        """
        idle: float | None = None
        keep: int | None = None
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, _, value = part.partition("=")
            key = key.strip().replace("_", "-")
            if key == "idle":
                idle = parse_duration(value.strip(), "idle")
            elif key == "keep-latest" and value.strip().isdigit():
                keep = int(value)
            else:
                raise ConfigError(
                    f"--retention {spec!r}: {part!r} is not idle=DURATION or keep-latest=N; "
                    'write e.g. "idle=30d,keep-latest=1"'
                )
        return cls(idle, keep)


@dataclass(slots=True)
class RetentionReport:
    """What a run removed (with `dry_run`: would remove)."""

    dry_run: bool
    threads_scanned: int = 0
    threads_deleted: int = 0  # idle threads, deleted whole
    checkpoints_of_deleted: int = 0  # the checkpoints those threads held
    threads_pruned: int = 0  # threads that lost checkpoints to keep-latest
    checkpoints_pruned: int = 0
    # older than the latest N, kept because a kept checkpoint's DeltaChannel
    # values are rebuilt from them (or, format < v4, its pending sends read)
    threads_kept_for_delta: int = 0
    checkpoints_kept_for_delta: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class BatchPlan:
    """What one page of threads loses. `chains`: threads with more than
    `keep` checkpoints in a namespace and a DeltaChannel or a subgraph
    call's namespace, planned checkpoint by checkpoint by `plan_chains`."""

    idle: list[str] = field(default_factory=list)
    prune: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)
    checkpoints_idle: int = 0
    checkpoints_pruned: int = 0
    threads_kept_for_delta: int = 0
    checkpoints_kept_for_delta: int = 0


def plan_batch(
    index: Sequence[tuple[str, str, str, bool]], keep: int | None, cutoff: str | None
) -> BatchPlan:
    """The plan of a page from its `checkpoint_index` rows: a thread whose
    newest checkpoint id sorts before `cutoff` is idle; any other with more
    than `keep` checkpoints in a namespace is pruned, or, when it uses a
    DeltaChannel or has a subgraph call's namespace, left to `plan_chains`.
    (A pruned thread of checkpoints older than format v4 also keeps the
    parent a newest one reads its pending sends from, which the count of
    such a thread leaves out.)"""
    counts: dict[str, dict[str, int]] = {}
    newest: dict[str, str] = {}
    delta: set[str] = set()
    for thread_id, ns, cid, is_delta in index:
        per_ns = counts.setdefault(thread_id, {})
        per_ns[ns] = per_ns.get(ns, 0) + 1
        newest[thread_id] = max(newest.get(thread_id, ""), cid)
        if is_delta:
            delta.add(thread_id)
    plan = BatchPlan()
    for thread_id in sorted(counts):
        if cutoff is not None and newest[thread_id] < cutoff:
            plan.idle.append(thread_id)
            plan.checkpoints_idle += sum(counts[thread_id].values())
        elif keep is not None:
            excess = sum(max(0, n - keep) for n in counts[thread_id].values())
            if not excess:
                continue
            if thread_id in delta or any(":" in ns for ns in counts[thread_id]):
                plan.chains.append(thread_id)
            else:
                plan.prune.append(thread_id)
                plan.checkpoints_pruned += excess
    return plan


def plan_chains(plan: BatchPlan, rows: Sequence[ChainRow], keep: int) -> None:
    """Add to `plan` what the threads of `plan.chains` lose, from their
    `chain_index` rows: what `prune_keep_latest` with `delta_chains` does
    not keep (`kept_checkpoints`)."""
    kept = kept_checkpoints(rows, keep)
    by_ns: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        by_ns.setdefault((r.thread_id, r.checkpoint_ns), []).append(r.checkpoint_id)
    newest = {
        (thread_id, ns, cid)
        for (thread_id, ns), ids in by_ns.items()
        for cid in sorted(ids, reverse=True)[:keep]
    }
    every = {(r.thread_id, r.checkpoint_ns, r.checkpoint_id) for r in rows}
    gone = Counter(thread_id for thread_id, _, _ in every - kept)
    older = Counter(thread_id for thread_id, _, _ in kept - newest)
    for thread_id in sorted(gone):
        plan.prune.append(thread_id)
        plan.checkpoints_pruned += gone[thread_id]
    for thread_id in sorted(older):
        plan.threads_kept_for_delta += 1
        plan.checkpoints_kept_for_delta += older[thread_id]


async def wait_outbox(outbox: Outbox, timeout: float) -> None:
    """Return once every entry in the outbox at the call is applied (by the
    reconcilers running elsewhere or in this process).

    Raises:
        FlushTimeoutError: Entries are still there after `timeout` seconds.
    """
    heads = await outbox.heads()
    deadline = time.monotonic() + timeout
    while pending := await outbox.pending_upto(heads):
        if time.monotonic() > deadline:
            raise FlushTimeoutError(
                f"{pending} outbox entries written before the retention run are not yet "
                f"applied after {timeout}s, and retention runs after them: is a reconciler "
                "running? (`langgraph-hybrid-saver reconcile`), or raise --flush-timeout"
            )
        await asyncio.sleep(0.05)


async def delete_threads(
    hot: HotTier, outbox: Outbox, backend: DurableBackend, threads: Sequence[str]
) -> None:
    """Delete the threads as `adelete_thread` does (Redis, the thread index,
    a delete entry in the outbox), all applied in one transaction."""
    entries = []
    for thread_id in threads:
        sid = await hot.drop_thread(thread_id, queue=True)
        assert sid is not None
        entries.append((hot.shard(thread_id), sid, DeleteThreadOp(seq_key(sid), thread_id)))
    await outbox.ack(await apply_entries(outbox, backend, entries, ReconcilerStats()))


async def retain(
    hot: HotTier,
    outbox: Outbox,
    backend: DurableBackend,
    policy: RetentionPolicy,
    *,
    flush: Callable[[], Awaitable[None]],
    dry_run: bool = False,
    batch: int = 100,
    now: float | None = None,
    progress: Callable[[RetentionReport], None] | None = None,
) -> RetentionReport:
    """Apply `policy` to every thread of the durable store, `batch` threads
    per transaction; `flush` first returns once the outbox entries written
    before the run are applied. With `dry_run` nothing changes and the
    report counts what would go (after the same wait: the entries not yet
    applied are part of what the run would meet). `progress` is called
    after every page."""
    if batch < 1:
        raise ConfigError(f"batch={batch!r}: use 1 or more threads per transaction")
    report = RetentionReport(dry_run)
    await flush()
    start = time.time() if now is None else now
    cutoff = None if policy.idle is None else checkpoint_id_at(start - policy.idle)
    after = ""
    while threads := await backend.thread_ids(after, batch):
        after = threads[-1]
        keep = policy.keep_latest
        plan = plan_batch(await backend.checkpoint_index(threads), keep, cutoff)
        if plan.chains:
            assert keep is not None
            plan_chains(plan, await backend.chain_index(plan.chains), keep)
        if not dry_run:
            if plan.idle:
                await delete_threads(hot, outbox, backend, plan.idle)
            if plan.prune:
                assert keep is not None
                await hot.forget(
                    await backend.prune_keep_latest(plan.prune, keep, delta_chains=True)
                )
        report.threads_scanned += len(threads)
        report.threads_deleted += len(plan.idle)
        report.checkpoints_of_deleted += plan.checkpoints_idle
        report.threads_pruned += len(plan.prune)
        report.checkpoints_pruned += plan.checkpoints_pruned
        report.threads_kept_for_delta += plan.threads_kept_for_delta
        report.checkpoints_kept_for_delta += plan.checkpoints_kept_for_delta
        if progress is not None:
            progress(report)
    return report


async def run_every(
    hot: HotTier,
    backend: DurableBackend,
    policy: RetentionPolicy,
    every: float,
    stop: asyncio.Event,
    *,
    flush_timeout: float = 300.0,
) -> None:
    """Run `retain` at once and then every `every` seconds until `stop` is
    set (the reconcile worker's `--retention`). A failed run is logged and
    the next one runs on schedule: retention is idempotent."""
    outbox = Outbox(hot)
    while not stop.is_set():
        try:
            report = await retain(
                hot, outbox, backend, policy, flush=lambda: wait_outbox(outbox, flush_timeout)
            )
        except Exception as e:
            logger.warning("retention run failed (%s: %s); next in %ss", type(e).__name__, e, every)
        else:
            logger.info("retention: %s", report.to_json())
        try:
            await asyncio.wait_for(stop.wait(), every)
        except asyncio.TimeoutError:
            pass
