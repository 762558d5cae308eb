"""`AsyncHybridSaver`: the LangGraph face over the tiers (tiering.py), the
write path (writes.py), the reconciler (outbox/reconciler.py) and the sync
bridge (bridge.py); `HybridSaver` (sync_saver.py) runs it on a private loop.

Write path (`write_behind`, the default): one Lua script writes the checkpoint,
its new blobs and its outbox entry to Redis atomically; the reconciler applies
the entry to the durable store later. `write_through` additionally waits until
the entry is applied before returning.

Read path: Redis first; on a miss, the durable store, and the result is copied
back into Redis. `list` merges both tiers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.types import TASKS
from redis.asyncio import Redis, RedisCluster

from langgraph_hybrid_saver import telemetry
from langgraph_hybrid_saver.backends import PRUNE_STRATEGIES, DurableBackend
from langgraph_hybrid_saver.bridge import SyncBridge, on_own_loop
from langgraph_hybrid_saver.clients import open_clients
from langgraph_hybrid_saver.core import (
    ListQuery,
    StoredCheckpoint,
    WriteRow,
    list_query,
    next_version,
    normalize_id,
    parse_config,
    pre_v4,
    to_tuple,
)
from langgraph_hybrid_saver.errors import ConfigError, ConfigTypeError
from langgraph_hybrid_saver.hot import DEFAULT_PREFIX, DEFAULT_SHARDS, HotTier
from langgraph_hybrid_saver.hot.index import IndexBuilder
from langgraph_hybrid_saver.hot.replicas import ReplicaAck
from langgraph_hybrid_saver.outbox.reconciler import DEFAULT_LINGER_MS, Reconciler
from langgraph_hybrid_saver.outbox.stream import Outbox
from langgraph_hybrid_saver.tiering import Tiers, durable_threads
from langgraph_hybrid_saver.writes import BacklogPolicy, Durability, Writes, redis_errors

logger = logging.getLogger("langgraph_hybrid_saver")

Placement = Literal["in_process", "external"]


class AsyncHybridSaver(SyncBridge):
    """A LangGraph checkpointer: Redis for hot reads, a durable store behind it.

    Args:
        redis: A `redis.asyncio.Redis` or `RedisCluster` client (bytes responses).
        backend: A durable backend (see `langgraph_hybrid_saver.backends`).
        serde: Serializer for channel values and writes.
        ttl: Seconds a thread's hot copy lives after its last write (None:
            forever). The durable store keeps everything.
        key_prefix: Prefix of every Redis key; one per application/tenant.
        shards: Number of outbox streams (hash tags); the same in every process.
        reconciler: "in_process" runs the reconciler as a task on this event
            loop; "external" leaves it to `python -m langgraph_hybrid_saver
            reconcile` workers (the layout for multi-core hosts).
        reconcile_linger_ms: After a partial batch the reconciler waits this
            long for more entries, so the durable store commits fewer, larger
            transactions (0: never wait). Write-through waits and `aflush`
            cut the wait short.
        durability: "write_behind" (default) or "write_through".
        refresh_ttl_on_read: Also refresh the TTL when a thread is read.
        hot_window: Keep only the newest N checkpoints of each namespace in
            Redis (None: all within the TTL); older ones are read from the
            durable store.
        max_backlog: Bound on outbox entries not yet in the durable store.
        max_lag_seconds: Bound on the age of the oldest such entry.
        on_backlog: Past a bound: "write_through" makes every write wait for
            the durable store until the backlog is back under it; "raise"
            refuses writes with `BacklogError` (nothing is written).
        flush_timeout: Default timeout of `aflush` and write-through waits.
        durable_timeout: Seconds a read that needs the durable store (a new
            thread, one past its TTL or window) may take before it fails with
            `ServerUnreachableError`; threads hot in Redis never wait for it.
        replicas_ack: Every hot write (put, put_writes, copy, delete, leases)
            returns only once this many Redis replicas have it (WAIT), so a
            failover to one of them loses no acknowledged write (None: no wait).
        replicas_ack_timeout: Seconds to wait for them; past it the call
            raises `ReplicationTimeoutError` (the write is on the primary).
        replicas_ack_fsync: Wait with WAITAOF instead: the replicas have also
            fsynced the write to their append-only file (Redis >= 7.2, Valkey).
        thread_index: Keep the set of known threads in Redis (loaded from the
            durable store in the background, then kept by every write), so a
            read of a thread in neither tier costs one Redis round trip and
            no durable read. Off: such reads ask the durable store. Turn it
            off when something else than these savers writes threads into
            the durable store (e.g. the official saver, or a second key
            prefix on the same store).
        local_cache_bytes: Serve the latest checkpoint of threads this process
            wrote or read from memory (at most this many bytes, least recently
            used out first), kept correct by Redis' invalidation messages
            (client tracking); 0 or None: off. Off on Redis Cluster.
        compress_min_bytes: Channel values and writes of at least this many
            serialized bytes are zstd-compressed in Redis (the durable store
            gets them as the serializer wrote them); None: never.
        loop: The event loop that owns the clients (default: the running one).

    Its connections belong to the loop it was created on: async calls from
    another loop run there (while it runs), sync calls from other threads too.
    """

    def __init__(
        self,
        redis: Redis | RedisCluster,
        backend: DurableBackend,
        *,
        serde: SerializerProtocol | None = None,
        ttl: float | None = 3600.0,
        key_prefix: str = DEFAULT_PREFIX,
        shards: int = DEFAULT_SHARDS,
        reconciler: Placement = "in_process",
        reconcile_linger_ms: int = DEFAULT_LINGER_MS,
        durability: Durability = "write_behind",
        refresh_ttl_on_read: bool = False,
        hot_window: int | None = None,
        max_backlog: int | None = None,
        max_lag_seconds: float | None = None,
        on_backlog: BacklogPolicy = "write_through",
        flush_timeout: float = 30.0,
        durable_timeout: float = 5.0,
        replicas_ack: int | None = None,
        replicas_ack_timeout: float = 1.0,
        replicas_ack_fsync: bool = False,
        thread_index: bool = True,
        compress_min_bytes: int | None = 4096,
        local_cache_bytes: int | None = 64 * 1024 * 1024,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(serde=serde)
        if reconciler not in ("in_process", "external"):
            raise ConfigError(f"reconciler={reconciler!r}: use 'in_process' or 'external'")
        if durable_timeout is not None and not durable_timeout > 0:
            raise ConfigError(f"durable_timeout={durable_timeout!r}: use a positive number or None")
        linger = reconcile_linger_ms
        if not isinstance(linger, int) or isinstance(linger, bool) or linger < 0:
            raise ConfigError(
                f"reconcile_linger_ms={linger!r}: use an int >= 0 (milliseconds; 0: no linger)"
            )
        try:
            self.loop = loop or asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigError(
                "AsyncHybridSaver must be created inside a running event loop; "
                "from sync code use HybridSaver"
            ) from None
        self.hot = HotTier(
            redis,
            prefix=key_prefix,
            shards=shards,
            ttl=ttl,
            refresh_on_read=refresh_ttl_on_read,
            window=hot_window,
            compress_min=compress_min_bytes,
            local_cache_bytes=local_cache_bytes,
        )
        if replicas_ack is not None:
            self.hot.run.ack = ReplicaAck(replicas_ack, replicas_ack_timeout, replicas_ack_fsync)
        self.backend = backend
        self.placement = reconciler
        self.durable_timeout = durable_timeout
        self.outbox = Outbox(self.hot)
        pages = partial(durable_threads, backend)
        self.index = IndexBuilder(self.hot, pages) if thread_index else None
        self.tiers = Tiers(self.hot, self.outbox, backend, durable_timeout, self.index)
        self.reconciler: Reconciler | None = (
            Reconciler(self.hot, backend, linger_ms=reconcile_linger_ms)
            if reconciler == "in_process"
            else None
        )
        self.writes = Writes(
            self.tiers,
            self.reconciler,
            durability=durability,
            flush_timeout=flush_timeout,
            max_backlog=max_backlog,
            max_lag_seconds=max_lag_seconds,
            on_backlog=on_backlog,
        )
        self._closed = False
        self._on_close: list[Callable[[], Awaitable[Any]]] = []

    # --- lifecycle ------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def from_conn_string(
        cls, redis_url: str, durable_url: str, **options: Any
    ) -> AsyncIterator[AsyncHybridSaver]:
        """Open clients for the URLs, run `setup()`, and close everything on exit.

        Args:
            redis_url: `redis://[:password@]host:port/db` (or `rediss://`),
                or `redis+sentinel://host1:port1,host2:port2/service_name/db`.
            durable_url: `postgresql://user@host:port/dbname` or
                `sqlite:///path/to/file.db`.
            **options: Constructor options (`ttl`, `key_prefix`, ...).
        """
        saver = await cls.open(redis_url, durable_url, **options)
        try:
            yield saver
        finally:
            await saver.aclose()

    @classmethod
    async def open(cls, redis_url: str, durable_url: str, **options: Any) -> AsyncHybridSaver:
        """Like `from_conn_string`, without the context manager: call `aclose()`."""
        redis, backend = await open_clients(redis_url, durable_url, options.get("serde"))
        try:
            saver = cls(redis, backend, **options)
            saver._on_close += [backend.close, redis.aclose]
            await saver.setup()
        except BaseException:
            await backend.close()
            await redis.aclose()
            raise
        return saver

    @on_own_loop
    async def setup(self) -> None:
        """Create or migrate the durable schema and check the Redis layout.

        Idempotent. Also starts the in-process reconciler.
        """
        await self.hot.check_layout()
        await self.hot.start_local_cache()
        await self.backend.setup()
        self._start()
        if self.index is not None:
            self.index.request()

    def _start(self) -> None:
        self._check_open()
        self.writes.start(self.loop)

    @property
    def durability(self) -> Durability:
        return self.writes.durability

    @property
    def overloaded(self) -> bool:
        """The outbox is past `max_backlog` or `max_lag_seconds`."""
        return self.writes.overloaded

    async def aclose(self, drain_timeout: float = 10.0) -> None:
        """Stop the reconciler after draining what it owns (for at most
        `drain_timeout` seconds: what is left stays in the outbox for the next
        reconciler), then close the clients. From any loop; idempotent."""
        if self._closed:
            return
        await self._on_own_loop(self._aclose(drain_timeout))

    async def _aclose(self, drain_timeout: float) -> None:
        if self._closed:
            return
        self._closed = True
        await self.writes.stop(drain_timeout)
        if self.index is not None:
            await self.index.aclose()
        await self.hot.aclose()
        for close in self._on_close:
            await close()

    async def __aenter__(self) -> AsyncHybridSaver:
        await self.setup()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- reads ----------------------------------------------------------------

    @telemetry.traced("aget_tuple", telemetry.of_config)
    @on_own_loop
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Get a checkpoint tuple: Redis first, then the durable store.

        Args:
            config: `thread_id`, optional `checkpoint_ns` and `checkpoint_id`
                (latest when absent).

        Returns:
            The checkpoint tuple with pending writes in `writes_sort_key` order,
            or None.
        """
        thread_id, ns, cid = parse_config(config)
        with redis_errors(self.hot.where):
            stored = await self.tiers.get(thread_id, ns, cid)
            if stored is None:
                return None
            return to_tuple(self.serde, stored, await self._sends(stored))

    @telemetry.traced("alist", telemetry.of_config)
    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """List checkpoints newest first from both tiers, without duplicates.

        Args:
            config: `thread_id` (and optional `checkpoint_ns`), or None for all
                threads.
            filter: Metadata that must be contained (jsonb `@>` semantics).
            before: Only checkpoints older than this config's `checkpoint_id`.
            limit: Maximum number of checkpoints.
        """
        query = list_query(config, filter, before, limit)
        self._check_open()
        with redis_errors(self.hot.where):
            listed = await self._on_own_loop(self._list_with_sends(query))
        for stored, sends in listed:
            yield to_tuple(self.serde, stored, sends)

    async def _list_with_sends(
        self, query: ListQuery
    ) -> list[tuple[StoredCheckpoint, list[WriteRow]]]:
        listed = await self.tiers.list(query)
        by_key = {(s.thread_id, s.checkpoint_ns, s.checkpoint_id): s for s in listed}
        return [(s, await self._sends(s, by_key)) for s in listed]

    async def _sends(
        self,
        stored: StoredCheckpoint,
        read: Mapping[tuple[str, str, str], StoredCheckpoint] | None = None,
    ) -> list[WriteRow]:
        """The pending sends of a checkpoint older than format v4: its
        parent's writes to TASKS (LangGraph 1 writes format v4, which keeps
        them in the checkpoint); the parent is taken from `read` when there."""
        if not (stored.parent_checkpoint_id and pre_v4(stored.checkpoint)):
            return []
        key = (stored.thread_id, stored.checkpoint_ns, stored.parent_checkpoint_id)
        parent = (read or {}).get(key) or await self.tiers.get(*key)
        return [w for w in parent.writes if w.channel == TASKS] if parent else []

    @on_own_loop
    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """The ancestor writes and seed of each channel (DeltaChannel support).

        Same result as `BaseCheckpointSaver`'s walk, but the ancestors are read
        in pages of the namespace (both tiers, a few round trips per page)
        instead of one `get_tuple` per ancestor.
        """
        if not channels:
            return {}
        thread_id, ns, cid = parse_config(config)
        return await self.tiers.delta_history(self.serde, thread_id, ns, cid, channels)

    # --- writes ---------------------------------------------------------------

    @telemetry.traced("aput", telemetry.of_config)
    @on_own_loop
    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint: one atomic Redis write (checkpoint, new blobs,
        outbox entry); the durable store follows asynchronously.

        Returns:
            The config of the stored checkpoint.
        """
        self._start()
        with redis_errors(self.hot.where):
            return await self.writes.put(self.serde, config, checkpoint, metadata, new_versions)

    @telemetry.traced("aput_writes", telemetry.of_writes)
    @on_own_loop
    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store pending writes of a task, idempotently per (task_id, idx)."""
        thread_id, ns, cid = parse_config(config)
        if cid is None:
            raise ConfigError(
                "put_writes needs config['configurable']['checkpoint_id'] (the "
                "checkpoint the writes belong to)"
            )
        self._start()
        at = (thread_id, ns, cid)
        with redis_errors(self.hot.where):
            await self.writes.put_writes(self.serde, at, writes, task_id, task_path)

    # --- deletes --------------------------------------------------------------

    @telemetry.traced("adelete_thread", telemetry.of_thread)
    @on_own_loop
    async def adelete_thread(self, thread_id: str) -> None:
        """Delete a thread from both tiers.

        Redis is cleared and a delete entry is queued in one atomic step; the
        entry is then applied (through the reconciler's `apply_entries`) and
        taken off the outbox, so the durable store is cleared before returning.
        Entries of the thread queued before the call can never bring it back
        (they sit below the delete in the thread's watermark).
        """
        thread_id = normalize_id(thread_id, "thread_id")
        with redis_errors(self.hot.where):
            await self.writes.delete_thread(thread_id)

    @telemetry.traced("adelete_for_runs", telemetry.of_ids)
    @on_own_loop
    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints and writes created by the given runs."""
        if isinstance(run_ids, str):
            raise ConfigTypeError("run_ids must be a list of run ids, not a str")
        ids = [normalize_id(r, "run_id") for r in run_ids]
        if ids:
            await self.writes.delete_for_runs(ids)

    @telemetry.traced("aprune", telemetry.of_ids)
    @on_own_loop
    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune threads: "keep_latest" keeps the newest checkpoint of each
        namespace, as PostgresSaver's `prune` (a subgraph call's namespace
        goes with the root checkpoint it started from; threads with a
        DeltaChannel are refused with `NotImplementedError`); "delete"
        deletes them."""
        if isinstance(thread_ids, str):
            raise ConfigTypeError("thread_ids must be a list of thread ids, not a str")
        if strategy not in PRUNE_STRATEGIES:
            raise ConfigError(f"strategy={strategy!r}: use one of {PRUNE_STRATEGIES}")
        ids = [normalize_id(t, "thread_id") for t in thread_ids]
        if strategy == "delete":
            for thread_id in ids:
                await self.adelete_thread(thread_id)
            return
        if ids:
            await self.writes.prune_keep_latest(ids)

    @telemetry.traced("acopy_thread", telemetry.of_copy)
    @on_own_loop
    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint (all namespaces, full parent chain) and its
        pending writes to another thread."""
        src = normalize_id(source_thread_id, "source_thread_id")
        dst = normalize_id(target_thread_id, "target_thread_id")
        self._start()
        await self.writes.copy_thread(src, dst)

    # --- leases ---------------------------------------------------------------

    @asynccontextmanager
    async def alease(self, thread_id: str, ttl: float = 30.0) -> AsyncIterator[str]:
        """Hold a thread exclusively, e.g. around a resume after a crash.

        While held, writes to the thread from any saver that does not hold the
        lease are refused with `ThreadBusyError` (fencing): a second process
        resuming the same thread fails instead of interleaving. The lease is
        renewed while held and expires `ttl` seconds after its holder dies.

        Yields:
            The fencing token (increases with every new holder).

        Raises:
            ThreadBusyError: Another holder has the thread.
        """
        token = await self._acquire(thread_id, ttl)
        try:
            yield token
        finally:
            await self._release(thread_id)

    @on_own_loop
    async def _acquire(self, thread_id: str, ttl: float) -> str:
        thread_id = normalize_id(thread_id, "thread_id")
        owner = self.reconciler.owner if self.reconciler else f"saver:{id(self):x}"
        with redis_errors(self.hot.where):
            return await self.writes.acquire(thread_id, owner, ttl)

    @on_own_loop
    async def _release(self, thread_id: str) -> None:
        with redis_errors(self.hot.where):
            await self.writes.release(thread_id)

    @contextmanager
    def lease(self, thread_id: str, ttl: float = 30.0) -> Iterator[str]:
        """Sync form of `alease`."""
        token = self._sync(self._acquire(thread_id, ttl))
        try:
            yield token
        finally:
            self._sync(self._release(thread_id))

    # --- durability -----------------------------------------------------------

    @telemetry.traced("aflush")
    @on_own_loop
    async def aflush(self, timeout: float | None = None) -> None:
        """Return once every entry written before the call is in the durable store.

        Raises:
            FlushTimeoutError: The outbox did not drain within `timeout` seconds
                (default: `flush_timeout`).
        """
        await self.writes.flush(timeout)

    @on_own_loop
    async def astats(self) -> dict[str, Any]:
        """Backlog, reconcile lag, the in-process reconciler's counters and the
        durable backend's own `stats` if it keeps any (Cosmos DB: request units)."""
        return await self.writes.stats()

    def get_next_version(self, current: str | None, channel: None) -> str:
        return next_version(current)

    def flush(self, timeout: float | None = None) -> None:
        return self._sync(self.aflush(timeout))

    def close(self, drain_timeout: float = 10.0) -> None:
        """Sync form of `aclose`, from another thread than the saver's loop."""
        if not self._closed:
            self._sync(self.aclose(drain_timeout))

    def stats(self) -> dict[str, Any]:
        return self._sync(self.astats())
