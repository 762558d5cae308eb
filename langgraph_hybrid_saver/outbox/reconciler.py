"""The reconciler: drains the Redis outbox into the durable store.

Ordering and crash safety, in short:

* Each shard's outbox is a Redis stream; a thread always lands in the same
  shard, so stream order is per-thread order.
* One reconciler at a time owns a shard (a lease key with a TTL, renewed while
  it works). Several reconcilers split the shards between them; when one dies,
  its leases expire and another takes its shards over.
* An entry is deleted from the stream (XDEL) only after the durable store has
  committed it, so the head of a stream is always the oldest unapplied entry:
  whatever a dead reconciler had read is simply read again.
* The durable store keeps a per-thread watermark in the same transaction as
  the rows, so an entry applied twice (a crash between commit and XDEL, or a
  stale owner whose lease ran out) changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from langgraph_hybrid_saver import telemetry
from langgraph_hybrid_saver.backends import DurableBackend, reason, refused
from langgraph_hybrid_saver.hot import HotTier
from langgraph_hybrid_saver.outbox.ops import (
    DeleteThreadOp,
    Op,
    PutOp,
)
from langgraph_hybrid_saver.outbox.stream import Applied, Outbox

logger = logging.getLogger("langgraph_hybrid_saver.reconciler")

# After a partial batch, wait this long for more entries: on a busy thread
# the durable store then commits one transaction per ~10 ms, not one per put.
DEFAULT_LINGER_MS = 10


@dataclass(slots=True)
class ReconcilerStats:
    applied: int = 0
    read: int = 0
    batches: int = 0
    errors: int = 0
    last_error: str | None = None
    dead_lettered: int = 0  # entries the durable store refused, moved aside
    owned_shards: list[int] = field(default_factory=list)


Entry = tuple[int, str, Op]  # (shard, outbox entry id, operation)


def describe(op: Op) -> str:
    """What an outbox entry holds, for dead letters and logs."""
    if isinstance(op, DeleteThreadOp):
        return f"delete of thread {op.thread_id!r}"
    what = "checkpoint" if isinstance(op, PutOp) else "pending writes of checkpoint"
    ns = op.row.checkpoint_ns if isinstance(op, PutOp) else op.checkpoint_ns
    cid = op.row.checkpoint_id if isinstance(op, PutOp) else op.checkpoint_id
    return f"{what} {cid!r} (thread {op.thread_id!r}, namespace {ns!r})"


async def apply_entries(
    outbox: Outbox, backend: DurableBackend, entries: Sequence[Entry], stats: ReconcilerStats
) -> list[Applied]:
    """Apply outbox entries in one transaction; returns those to ack.

    When the store refuses data in the batch (not an outage), the refused
    entries are found by halving the batch: each goes to the dead-letter
    stream with its reason, everything else is applied in order, so one bad
    entry never holds up the others (k bad entries among n cost about
    2k log2(n) applies). An outage is raised: what is applied by then is
    acked, the rest retried. The only path from the outbox to a backend:
    the reconciler's batches and the saver's delete_thread use it."""
    done: list[Applied] = []

    async def apply_or_split(batch: Sequence[Entry]) -> None:
        try:
            started = telemetry.clock()
            n = await backend.apply([op for _, _, op in batch])
            stats.applied += n
            telemetry.applied(backend, n, started)
        except Exception as e:
            if not refused(e):
                raise
            if len(batch) == 1:
                [(shard, sid, op)] = batch
                stats.dead_lettered += 1
                telemetry.dead_lettered(backend)
                await outbox.dead_letter(shard, sid, f"{describe(op)}: {reason(e)}")
                return
            half = len(batch) // 2
            await apply_or_split(batch[:half])
            await apply_or_split(batch[half:])
            return
        done.extend((shard, sid, op.thread_id) for shard, sid, op in batch)

    try:
        await apply_or_split(entries)
    except Exception:
        await outbox.ack(done)
        raise
    return done


class Reconciler:
    """Applies outbox entries of the shards it leases, in order, in batches."""

    def __init__(
        self,
        hot: HotTier,
        backend: DurableBackend,
        *,
        owner: str | None = None,
        batch_size: int = 512,
        lease_ms: int = 5000,
        block_ms: int = 100,
        linger_ms: int = DEFAULT_LINGER_MS,
        max_backoff: float = 5.0,
    ) -> None:
        self.hot = hot
        self.outbox = Outbox(hot)
        self.backend = backend
        host = socket.gethostname()
        self.owner = owner or f"{host}:{os.getpid()}:{secrets.token_hex(4)}"
        self.drain_timeout = 10.0  # seconds `run` drains for once stopped
        self.batch_size = batch_size
        self.lease_ms = lease_ms
        self.block_ms = block_ms
        self.linger_ms = linger_ms
        self.max_backoff = max_backoff
        self.stats = ReconcilerStats()
        # Called with (shard, entry id) of each batch right after its durable
        # commit (the benchmark's lag measurement; a metrics hook).
        self.on_applied: Callable[[Sequence[tuple[int, str]]], None] | None = None
        self._acks: list[Applied] = []  # applied, not yet deleted
        self._wake: asyncio.Event | None = None
        self._owned: set[int] = set()
        self._renewed_at = 0.0

    async def _refresh_leases(self) -> None:
        """Heartbeat, then hold a fair share of the shards (ceil(shards/workers))."""
        workers = await self.outbox.heartbeat(self.owner, self.lease_ms)
        share = math.ceil(self.hot.shards / max(workers, 1))
        # Renew ours, try every other (a shard held by a live worker stays
        # its), then let go of what exceeds the fair share: three round trips
        # however many shards, so a refresh never stalls reconciling for long.
        outbox, owner = self.outbox, self.owner
        self._owned = set(await outbox.try_leases(sorted(self._owned), owner, self.lease_ms))
        if len(self._owned) < share:
            others = [s for s in range(outbox.shards) if s not in self._owned]
            self._owned |= set(await outbox.try_leases(others, owner, self.lease_ms))
        surplus = sorted(self._owned)[share:]
        if surplus:
            await outbox.release(surplus, owner)
            self._owned -= set(surplus)
        self.stats.owned_shards = sorted(self._owned)
        self._renewed_at = time.monotonic()

    async def step(self, block_ms: int | None = None, *, defer_ack: bool = False) -> int:
        """Read one batch of the owned shards, apply it, delete it. Returns the
        number of entries processed. With `defer_ack` the applied entries are
        deleted in the same round trip as the next step's read (or by
        `flush_acks`): one await less per batch on a busy loop."""
        if time.monotonic() - self._renewed_at > self.lease_ms / 3000:
            await self._refresh_leases()
        if not self._owned:
            await self.flush_acks()
            await asyncio.sleep((block_ms or 0) / 1000)
            return 0
        acks, self._acks = self._acks, []
        owned = sorted(self._owned)
        entries = await self.outbox.read(owned, self.batch_size, block_ms, acks)
        if not entries:
            return 0
        self.stats.read += len(entries)
        with telemetry.reconcile_batch(self.backend, len(entries)):
            applied = await self._apply(entries)
            telemetry.note(telemetry.ENTRIES, len(applied))
        if self.on_applied is not None:
            self.on_applied([(shard, sid) for shard, sid, _ in applied])
        if defer_ack:
            self._acks = applied
        else:
            await self.outbox.ack(applied)
        self.stats.batches += 1
        return len(entries)

    async def _apply(self, entries: Sequence[Entry]) -> list[Applied]:
        return await apply_entries(self.outbox, self.backend, entries, self.stats)

    async def flush_acks(self) -> None:
        """Delete the applied entries a deferred step left in the outbox."""
        acks, self._acks = self._acks, []
        if acks:
            await self.outbox.ack(acks)

    def wake(self) -> None:
        """Cut a linger short: someone waits for the durable store."""
        if self._wake is not None:
            self._wake.set()

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        """Wait `seconds`; `wake()` or `stop` end the wait early."""
        assert self._wake is not None
        if not (stop.is_set() or self._wake.is_set()):
            waits = [asyncio.ensure_future(e.wait()) for e in (stop, self._wake)]
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
        self._wake.clear()

    async def run(self, stop: asyncio.Event, *, drain_timeout: float | None = None) -> None:
        """Work until `stop` is set, then drain the owned shards (for at most
        `drain_timeout` seconds; default: the attribute, read when it stops)
        and let go.

        After a partial batch it lingers until `linger_ms` after the step
        began, so the durable store commits fewer, larger transactions;
        after a failure it backs off. `wake()` (someone waits for the
        durable store) cuts both short."""
        if drain_timeout is not None:
            self.drain_timeout = drain_timeout
        self._wake = asyncio.Event()
        unwatch = telemetry.watch(self.outbox)  # the backlog, lag and dead-letter gauges
        backoff = 0.05
        while not stop.is_set():
            try:
                started = time.monotonic()
                n = await self.step(self.block_ms, defer_ack=True)
                backoff = 0.05
                # Linger until linger_ms after this step began: a busy loop or a
                # slow store already made the step that long (and the batch that
                # big), so lingering on top would only add lag. What was applied
                # leaves the outbox before any wait, else with the next read.
                left = self.linger_ms / 1000 - (time.monotonic() - started)
                if left > 0 and 0 < n < self.batch_size:
                    await self.flush_acks()
                    await self._pause(stop, left)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the durable store or Redis is down: retry
                self.stats.errors += 1
                self.stats.last_error = f"{type(e).__name__}: {e}"
                telemetry.error("redis" if isinstance(e, RedisError) else "durable")
                logger.warning("reconcile failed, retrying in %.2fs: %s", backoff, e)
                await self._pause(stop, backoff)
                backoff = min(backoff * 2, self.max_backoff)
        await self.drain(self.drain_timeout)
        try:
            await self.release_all()
        except RedisError as e:  # e.g. Redis failing over: the leases expire by themselves
            logger.warning("releasing the shard leases on close failed: %s", e)
        unwatch()

    async def drain(self, timeout: float) -> None:
        """Apply what the owned shards hold, and what shards of dead
        reconcilers hold (once their leases expire), for at most `timeout`
        seconds. Shards of live reconcilers are left to them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if await self.step(None):
                    continue
                orphans = await self.outbox.orphans(self._owned)
                if not orphans:
                    return
                self._owned |= set(await self.outbox.try_leases(orphans, self.owner, self.lease_ms))
                await asyncio.sleep(0.1)  # a dead owner's lease has not expired yet
            except Exception as e:
                logger.warning("drain on close failed: %s", e)
                await asyncio.sleep(0.1)
        logger.warning("outbox not drained within %.1fs; another reconciler will finish", timeout)

    async def _settle_acks(self) -> None:
        try:
            await self.flush_acks()
        except Exception as e:  # re-read and skipped by the watermark later
            logger.warning("deleting applied entries failed: %s", e)

    async def release_all(self) -> None:
        await self._settle_acks()
        await self.outbox.release(sorted(self._owned), self.owner)
        self._owned.clear()
        await self.outbox.leave(self.owner)
