"""The saver's hot writes and what makes them durable.

Every write (put, put_writes, copy) goes to Redis in one script carrying the
thread's lease token (fencing); then `Writes` applies the durability mode:
`write_through`, or the backlog policy once the outbox is past a bound,
waits until the entry is in the durable store (`wait_durable`). `aflush`
waits the same way for every entry written before it. Thread leases live
here because every write carries their token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.serde.base import SerializerProtocol
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError as RedisOutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError

from langgraph_hybrid_saver import telemetry
from langgraph_hybrid_saver.backends import DurableBackend
from langgraph_hybrid_saver.core import ListQuery, next_config
from langgraph_hybrid_saver.encode import encode_put, encode_writes
from langgraph_hybrid_saver.errors import (
    BacklogError,
    ConfigError,
    DurableStoreError,
    FlushTimeoutError,
    HotTierFullError,
    HybridSaverError,
    NotDurableError,
    ServerUnreachableError,
)
from langgraph_hybrid_saver.hot import DEFAULT_PREFIX, HotTier
from langgraph_hybrid_saver.outbox.ops import (
    DeleteThreadOp,
    seq_key,
)
from langgraph_hybrid_saver.outbox.reconciler import Reconciler, ReconcilerStats, apply_entries
from langgraph_hybrid_saver.tiering import Tiers

logger = logging.getLogger("langgraph_hybrid_saver")

Durability = Literal["write_behind", "write_through"]
BacklogPolicy = Literal["write_through", "raise"]
MONITOR_INTERVAL = 0.1  # seconds between backlog checks when a bound is set


@contextmanager
def redis_errors(where: str) -> Iterator[None]:
    """Redis driver errors as this package's typed errors (cause kept)."""
    try:
        yield
    except HybridSaverError:
        raise
    except (RedisConnectionError, RedisTimeoutError) as e:
        telemetry.error("redis")
        raise ServerUnreachableError(
            f"Redis at {where} is unreachable ({type(e).__name__}); nothing "
            "was written if this was a write: check the server and retry"
        ) from e
    except RedisOutOfMemoryError as e:
        telemetry.error("redis")
        raise HotTierFullError(
            f"Redis at {where} is full (maxmemory) and refused the write; "
            "nothing was written: raise maxmemory, lower ttl or set hot_window"
        ) from e


class Writes:
    """Hot writes under a durability mode, a backlog policy and thread leases."""

    def __init__(
        self,
        tiers: Tiers,
        reconciler: Reconciler | None,
        *,
        durability: Durability,
        flush_timeout: float,
        max_backlog: int | None,
        max_lag_seconds: float | None,
        on_backlog: BacklogPolicy,
    ) -> None:
        if durability not in ("write_behind", "write_through"):
            raise ConfigError(f"durability={durability!r}: use 'write_behind' or 'write_through'")
        if on_backlog not in ("write_through", "raise"):
            raise ConfigError(f"on_backlog={on_backlog!r}: use 'write_through' or 'raise'")
        for name, bound in (("max_backlog", max_backlog), ("max_lag_seconds", max_lag_seconds)):
            if bound is not None and not bound > 0:
                raise ConfigError(f"{name}={bound!r}: use a positive number or None")
        self.tiers = tiers
        self.hot: HotTier = tiers.hot
        self.outbox = tiers.outbox
        self.backend: DurableBackend = tiers.backend
        self.reconciler = reconciler
        self.durability = durability
        self.flush_timeout = flush_timeout
        self.max_backlog = max_backlog
        self.max_lag_seconds = max_lag_seconds
        self.on_backlog = on_backlog
        self.overloaded = False  # set by `watch_backlog`
        self.held: dict[str, str] = {}  # thread_id -> lease token
        self._renewals: dict[str, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()
        self._reconciling: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None

    @property
    def bounded(self) -> bool:
        return self.max_backlog is not None or self.max_lag_seconds is not None

    async def write(
        self, hot_write: Callable[[str], Awaitable[Any]], thread_id: str, what: str
    ) -> Any:
        """Run one hot write (given the lease token held for the thread), then
        apply the durability mode and the backlog policy. Returns what the hot
        write returned (its outbox entry id)."""
        if self.overloaded and self.on_backlog == "raise":
            backlog, age = await self.outbox.backlog()
            raise BacklogError(
                f"outbox holds {backlog} entries (oldest {age or 0:.1f}s) past max_backlog="
                f"{self.max_backlog} / max_lag_seconds={self.max_lag_seconds}: nothing was "
                "written; the durable store is behind (is it up, is a reconciler running?)"
            )
        sid = await hot_write(self.held.get(thread_id, ""))
        if isinstance(sid, str) and (self.durability == "write_through" or self.overloaded):
            await self.wait_durable(thread_id, sid, what)
        return sid

    async def put(
        self,
        serde: SerializerProtocol,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """A checkpoint, its new blobs and its outbox entry in one hot write."""
        row, refs, blobs = encode_put(serde, config, checkpoint, metadata, new_versions)
        tid, ns, cid = row.thread_id, row.checkpoint_ns, row.checkpoint_id
        if telemetry.recording():
            telemetry.note(telemetry.BYTES, telemetry.put_size(row, blobs))
        what = f"checkpoint {cid!r} of thread {tid!r}"
        sid = await self.write(partial(self.hot.put, row, refs, blobs), tid, what)
        if isinstance(sid, list):
            # Redis lost unchanged channel values (a restart before they were
            # reconciled): store them again with this checkpoint.
            lost = {f.partition("\x00")[0] for f in sid}
            versions = checkpoint["channel_versions"]
            again = {**new_versions, **{ch: versions[ch] for ch in lost}}
            row, refs, blobs = encode_put(serde, config, checkpoint, metadata, again)
            await self.write(partial(self.hot.put, row, refs, blobs), tid, what)
        return next_config(tid, ns, cid)

    async def put_writes(
        self,
        serde: SerializerProtocol,
        at: tuple[str, str, str],
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> None:
        """Pending writes of a task to checkpoint `at` (thread, ns, id) in one hot write."""
        thread_id, ns, cid = at
        rows, upsert = encode_writes(serde, writes, task_id, task_path, thread_id=thread_id)
        if telemetry.recording():
            telemetry.note(telemetry.BYTES, telemetry.writes_size(rows))
        what = f"pending writes of task {task_id!r} to checkpoint {cid!r} of thread {thread_id!r}"
        hot_write = partial(self.hot.put_writes, thread_id, ns, cid, rows, upsert)
        await self.write(hot_write, thread_id, what)

    async def wait_durable(self, thread_id: str, sid: str, what: str) -> None:
        """Return once outbox entry `sid` of the thread is in the durable store.

        Raises:
            FlushTimeoutError: It is still in the outbox after `flush_timeout`
                (it is in Redis and will be applied later).
            NotDurableError: It left the outbox without being applied: the
                durable store refused it (it is dead-lettered, still readable
                from Redis) or Redis lost it (a restart before it was applied).
        """
        shard = self.hot.shard(thread_id)
        try:
            await self.wait_applied({shard: sid}, self.flush_timeout)
        except FlushTimeoutError as e:
            raise FlushTimeoutError(
                f"{what} is saved in Redis but not yet in the durable store: {e}"
            ) from None
        # Applied entries raise the thread's durable watermark to their seq (a
        # later delete of the thread raises it further); a dead-lettered entry
        # was moved aside, a lost one is simply gone.
        refusal = await self.outbox.dead_reason(shard, sid)
        if refusal is not None:
            raise NotDurableError(
                f"{what} is saved in Redis and readable, but the durable store refused "
                f"it ({refusal}); it waits in the dead-letter stream: see "
                "`langgraph-hybrid-saver dead-letters list`"
            )
        if await self.tiers.durable(self.backend.watermark(thread_id)) < seq_key(sid):
            raise NotDurableError(
                f"{what} left the outbox without reaching the durable store (Redis lost "
                "it: restarted or flushed before it was applied); it is not saved: "
                "retry the step"
            )

    async def wait_applied(self, heads: dict[int, str | None], timeout: float | None) -> None:
        """Return once no shard holds an entry at or below its id in `heads`."""
        timeout = self.flush_timeout if timeout is None else timeout
        targets = [heads.get(s) for s in range(self.hot.shards)]
        if self.reconciler is not None:
            self.reconciler.wake()
        deadline = time.monotonic() + timeout
        pause = 0.0005
        while await self.outbox.pending_upto(targets):
            if time.monotonic() > deadline:
                backlog, age = await self.outbox.backlog()
                prefix = (
                    "" if self.hot.prefix == DEFAULT_PREFIX else f" --key-prefix {self.hot.prefix}"
                )
                hint = (
                    "is the durable store reachable? see the reconciler's log"
                    if self.reconciler is not None
                    else "is a reconciler running? start one with `python -m "
                    f"langgraph_hybrid_saver reconcile --redis URL --durable URL{prefix}`"
                )
                raise FlushTimeoutError(
                    f"outbox not drained after {timeout}s: {backlog} entries pending, "
                    f"oldest {age or 0:.1f}s old; {hint}"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.02)

    # --- background work: the in-process reconciler, the backlog watch --------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the in-process reconciler and, under a backlog bound, its
        watch (each once)."""
        if self.reconciler is not None and self._reconciling is None:
            self._reconciling = loop.create_task(
                self.reconciler.run(self._stop), name="hybrid-saver-reconciler"
            )
        if self.bounded and self._watching is None:
            self._watching = loop.create_task(
                self.watch_backlog(self._stop), name="hybrid-saver-bound"
            )

    async def stop(self, drain_timeout: float) -> None:
        """Stop both, the reconciler after draining what it owns for at most
        `drain_timeout` seconds (what is left stays in the outbox)."""
        if self.reconciler is not None:
            self.reconciler.drain_timeout = drain_timeout
        self._stop.set()
        if self._watching is not None:
            await self._watching
        if self._reconciling is not None:
            try:  # the drain's last batch and the lease release take a moment more
                await asyncio.wait_for(self._reconciling, drain_timeout + 1)
            except asyncio.TimeoutError:
                logger.warning("reconciler did not stop in time; cancelled it")

    async def stats(self) -> dict[str, Any]:
        """Backlog, reconcile lag, the in-process reconciler's counters and the
        durable backend's own `stats` if it keeps any."""
        backlog, age, dead_letters = await self.outbox.state()
        out: dict[str, Any] = {
            "backlog": backlog,
            "dead_letters": dead_letters,
            "lag_seconds": age or 0.0,
            "overloaded": self.overloaded,
            "durability": self.durability,
        }
        if (durable := self.backend.stats) is not None:
            out["durable"] = durable
        if self.hot.local is not None:
            out["local_cache"] = self.hot.local.stats()
        if self.reconciler is not None:
            st = self.reconciler.stats
            out |= {
                "applied": st.applied,
                "batches": st.batches,
                "errors": st.errors,
                "last_error": st.last_error,
                "dead_lettered": st.dead_lettered,
                "owned_shards": st.owned_shards,
            }
        return out

    async def watch_backlog(self, stop: asyncio.Event) -> None:
        """Keep `overloaded` current off the hot path (one pipelined read per tick)."""
        while not stop.is_set():
            try:
                backlog, age = await self.outbox.backlog()
            except Exception as e:  # Redis down: writes fail on their own
                logger.warning("backlog check failed: %s", e)
            else:
                over = (self.max_backlog is not None and backlog >= self.max_backlog) or (
                    self.max_lag_seconds is not None and (age or 0) >= self.max_lag_seconds
                )
                if over != self.overloaded:
                    logger.log(
                        logging.WARNING if over else logging.INFO,
                        "outbox backlog %s (%d entries, oldest %.1fs): %s",
                        "over its bound" if over else "back under its bound",
                        backlog,
                        age or 0,
                        self.on_backlog if over else "write_behind",
                    )
                self.overloaded = over
            try:
                await asyncio.wait_for(stop.wait(), MONITOR_INTERVAL)
            except asyncio.TimeoutError:
                pass

    async def flush(self, timeout: float | None) -> None:
        """Return once every entry written before the call is applied."""
        heads = await self.outbox.heads()
        await self.wait_applied(dict(enumerate(heads)), timeout)

    # --- thread-wide writes --------------------------------------------------

    async def delete_thread(self, thread_id: str) -> None:
        """Drop the thread from Redis and queue its delete entry (one script),
        then apply that entry through the reconciler's `apply_entries` and take
        it off the outbox."""
        sid = await self.hot.drop_thread(thread_id, queue=True)
        assert sid is not None
        entry = (self.hot.shard(thread_id), sid, DeleteThreadOp(seq_key(sid), thread_id))
        stats = self.reconciler.stats if self.reconciler else ReconcilerStats()
        try:
            applied = await apply_entries(self.outbox, self.backend, [entry], stats)
        except Exception as e:
            telemetry.error("durable")
            raise DurableStoreError(
                f"thread {thread_id!r} is deleted from Redis, but the durable store "
                f"failed ({type(e).__name__}: {e}); the deletion is queued and the "
                "reconciler applies it when the store is back"
            ) from e
        if not applied:
            raise DurableStoreError(
                f"thread {thread_id!r} is deleted from Redis, but the durable store "
                "refused the deletion; it waits in the dead-letter stream: see "
                "`langgraph-hybrid-saver dead-letters list`"
            )
        await self.outbox.ack(applied)

    async def delete_for_runs(self, run_ids: list[str]) -> None:
        """Flush, delete the runs' rows in the durable store, then remove
        those from Redis (a run writing to the thread meanwhile keeps what it
        wrote since the flush)."""
        await self.flush(None)
        await self.hot.forget(await self.backend.delete_for_runs(run_ids))

    async def prune_keep_latest(self, thread_ids: list[str]) -> None:
        """Flush, prune the durable store, then remove from Redis what the
        prune deleted or changed (a run writing to the thread meanwhile keeps
        what it wrote since the flush)."""
        await self.flush(None)
        await self.hot.forget(await self.backend.prune_keep_latest(thread_ids))

    async def copy_thread(self, src: str, dst: str) -> None:
        """Every checkpoint of `src` (both tiers) written to `dst` in one script."""
        stored = await self.tiers.list(ListQuery(src, None, None, None, None, None))
        for s in stored:  # the copies name their own thread, as the Agent Server's do
            if "thread_id" in s.metadata:
                s.metadata = {**s.metadata, "thread_id": dst}
        if stored:  # oldest first, as they were written; one atomic script
            await self.write(
                partial(self.hot.put_thread, dst, stored[::-1]), dst, f"copy of {src!r} to {dst!r}"
            )

    # --- thread leases -------------------------------------------------------

    async def acquire(self, thread_id: str, owner: str, ttl: float) -> str:
        """Take the thread's lease (renewed every ttl/3 while held)."""
        ttl_ms = int(ttl * 1000)
        token = await self.hot.acquire_thread(thread_id, owner, ttl_ms)
        self.held[thread_id] = token

        async def renew() -> None:
            while self.held.get(thread_id) == token:
                await asyncio.sleep(ttl / 3)
                if not await self.hot.keep_thread(thread_id, token, ttl_ms):
                    logger.warning("lease of thread %s was lost", thread_id)
                    return

        self._renewals[thread_id] = asyncio.get_running_loop().create_task(renew())
        return token

    async def release(self, thread_id: str) -> None:
        token = self.held.pop(thread_id, None)
        if task := self._renewals.pop(thread_id, None):
            task.cancel()
        if token is not None:
            await self.hot.keep_thread(thread_id, token, 0)
