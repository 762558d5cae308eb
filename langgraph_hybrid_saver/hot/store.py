"""The hot tier's store: a thread's checkpoints, blobs and writes in plain
Redis (>= 6) or Valkey, no modules, each read or write one script (keys.py
names the keys, scripts/ holds the scripts, codec.py packs the values), and
thread leases. A write also appends its outbox entry (in the same script);
reading, acking and dead-lettering entries is outbox/stream.py's.

The keys of one (thread, namespace) are written together and expire
together, so a namespace is either hot as a whole or read from the durable
store (a large value's key expires on its own once no newer checkpoint uses
it; a read that misses it reads that value from the durable store).

Large values (PIN_MIN_BYTES and more) never pass through Lua, where turning
a large argument into a Lua string costs Redis more than storing it: `put`
sends each one in a plain SET to a temporary key in the MULTI that runs the
put script, and the script RENAMEs it to its `v` key. Redis holds it once:
the outbox entry (record 'V') names the field, and the reconciler reads the
`v` key, which keeps no TTL and is neither trimmed nor deleted while the
thread has pending entries (a delete holds it in `base:h` until then).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langgraph.checkpoint.base.id import uuid6
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ResponseError

from langgraph_hybrid_saver.core import (
    BlobRow,
    CheckpointRow,
    StoredCheckpoint,
    WriteRow,
    blob_field,
)
from langgraph_hybrid_saver.errors import (
    ConfigError,
    SerializationError,
    ThreadBusyError,
    ThreadDeletedError,
)
from langgraph_hybrid_saver.hot.codec import (
    decode_record,
    pack_blob,
    pack_for_lua,
    pack_record,
    pack_stored,
    pack_write,
    unpack_blob,
    unpack_write,
    write_field,
)
from langgraph_hybrid_saver.hot.keys import Keys
from langgraph_hybrid_saver.hot.local_cache import local_cache
from langgraph_hybrid_saver.hot.lua import source
from langgraph_hybrid_saver.hot.runner import ScriptRunner

logger = logging.getLogger("langgraph_hybrid_saver.hot")

DEFAULT_PREFIX = "lhs"
DEFAULT_SHARDS = 16
DEFAULT_MAX_BULK = 512 * 1024 * 1024  # Redis' proto-max-bulk-len default
# A blob value this large goes beside the put script, not through it (a
# `pinned` experiment measures both ways).
PIN_MIN_BYTES = 16 * 1024
TOMBSTONE_MS = 604_800_000  # a deleted thread's generation and tombstone live 7 days
DEAD_WARN_INTERVAL = 60.0  # seconds between reports of one thread's dead letters


def _b(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _where(redis: Any) -> str:
    """host:port of a client, for error messages (never its password)."""
    try:
        if isinstance(redis, RedisCluster):
            node = redis.get_default_node() or redis.get_nodes()[0]
            return f"{node.host}:{node.port}"
        if service := getattr(redis.connection_pool, "service_name", None):
            return f"the primary of Sentinel service {service!r}"
        kw = redis.connection_pool.connection_kwargs
        return str(kw.get("path") or f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}")
    except Exception:
        return "redis"


@dataclass(slots=True)
class HotRead:
    """What one `get` found: `stored` is None when the record is not hot;
    `writes` are the hot pending writes of `checkpoint_id` either way;
    `missing` names blobs the record refers to that Redis no longer has (after
    a restart or an eviction) — the durable store has them."""

    checkpoint_id: str | None
    stored: StoredCheckpoint | None
    writes: list[WriteRow]
    generation: bytes
    missing: list[tuple[str, str]] = field(default_factory=list)  # (channel, version)
    # When not hot: 2 the thread is certainly in neither tier, 1 the thread
    # index is complete and holds it, 0 the index is not complete.
    index: int = 1


class HotTier:
    """A thread's Redis I/O (reads, writes, thread leases); one round trip per call."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        prefix: str = DEFAULT_PREFIX,
        shards: int = DEFAULT_SHARDS,
        ttl: float | None = 3600.0,
        refresh_on_read: bool = False,
        window: int | None = None,
        compress_min: int | None = None,
        local_cache_bytes: int | None = None,
    ) -> None:
        if compress_min is not None and (
            not isinstance(compress_min, int) or isinstance(compress_min, bool) or compress_min < 1
        ):
            raise ConfigError(
                f"compress_min_bytes must be a positive int or None (no compression), "
                f"got {compress_min!r}"
            )
        self.compress_min = compress_min or 0
        if not prefix or any(c in prefix for c in "{}"):
            raise ConfigError(
                f"key_prefix {prefix!r} must be non-empty and free of '{{' and '}}' "
                "(they delimit Redis Cluster hash tags)"
            )
        get_encoder = getattr(redis, "get_encoder", None)
        if get_encoder is not None and get_encoder().decode_responses:
            raise ConfigError(
                "this Redis client decodes replies to str (decode_responses=True), but "
                "checkpoints are binary: create it with decode_responses=False (and drop "
                "decode_responses from the redis_url)"
            )
        if not isinstance(shards, int) or not 1 <= shards <= 16384:
            raise ConfigError(f"shards must be an int in 1..16384, got {shards!r}")
        if ttl is not None and ttl <= 0:
            raise ConfigError(f"ttl must be a positive number of seconds or None, got {ttl!r}")
        if window is not None and (not isinstance(window, int) or window < 1):
            raise ConfigError(f"hot_window must be a positive int or None, got {window!r}")
        self.redis: Any = redis
        # Redis Cluster: scripts and single-stream reads route by key slot;
        # reads of several shards cannot share one command there.
        self.cluster = isinstance(redis, RedisCluster)
        self.where = _where(redis)
        self.window = window or 0
        self.prefix = prefix
        self.shards = shards
        self.ttl_ms = int(ttl * 1000) if ttl else 0
        self.refresh_ms = self.ttl_ms if refresh_on_read else 0
        self.keys = Keys(prefix, shards)
        self.max_bulk = DEFAULT_MAX_BULK  # the server's, read by check_layout
        # Large values go beside the script in the MULTI; not on Cluster,
        # where redis-py runs no MULTI.
        self.pin_min = 0 if self.cluster else PIN_MIN_BYTES
        self._warned: dict[str, float] = {}  # thread -> when its dead letters were reported
        self._put = redis.register_script(source("put"))
        self._put_writes = redis.register_script(source("put_writes"))
        self._copy = redis.register_script(source("copy"))
        self._get = redis.register_script(source("get"))
        self._list = redis.register_script(source("list"))
        self._list_full = redis.register_script(source("list_full"))
        self._repopulate = redis.register_script(source("repopulate"))
        self._drop = redis.register_script(source("drop_thread"))
        self._forget = redis.register_script(source("forget"))
        self._namespaces = redis.register_script(source("namespaces"))
        self._thread_lease = redis.register_script(source("thread_lease"))
        self._thread_lease_keep = redis.register_script(source("thread_lease_keep"))
        self.run = ScriptRunner(redis, self.where)
        self.local, self.tracking = local_cache(redis, self.keys, self.run.lanes, local_cache_bytes)

    async def start_local_cache(self) -> None:
        """Turn the local cache's invalidations on (once; a no-op without it)."""
        if self.tracking is not None and self.tracking.client_id is None:
            await self.tracking.start()

    async def aclose(self) -> None:
        """Close the hot path's own connections (not the client)."""
        if self.tracking is not None:
            await self.tracking.aclose()
        await self.run.aclose()

    # --- keys -----------------------------------------------------------------

    def shard(self, thread_id: str) -> int:
        return self.keys.shard(thread_id)

    def base(self, thread_id: str) -> str:
        return self.keys.base(thread_id)

    def outbox(self, thread_id: str) -> str:
        return self.keys.outboxes[self.shard(thread_id)]

    async def check_layout(self) -> None:
        """Refuse to share a prefix with a process that shards threads differently;
        learn the largest value the server accepts."""
        if self.run.ack is not None:
            await self.run.ack.check_server(self.redis, self.where)
        try:  # managed services may refuse CONFIG: keep the default then
            reply = await self.redis.config_get("proto-max-bulk-len")
            self.max_bulk = int(reply.get(b"proto-max-bulk-len") or reply["proto-max-bulk-len"])
        except Exception:
            pass
        await self.redis.hsetnx(self.keys.meta, "shards", self.shards)
        stored = await self.redis.hget(self.keys.meta, "shards")
        if stored is not None and int(stored) != self.shards:
            raise ConfigError(
                f"key_prefix {self.prefix!r} is in use with shards={int(stored)}, "
                f"this saver has shards={self.shards}: use the same value everywhere "
                "or another key_prefix"
            )

    # --- writes ---------------------------------------------------------------

    async def put(
        self, row: CheckpointRow, refs: Sequence[str], blobs: Sequence[BlobRow], token: str = ""
    ) -> str | list[str]:
        """Write a checkpoint, its new blobs and its outbox entry atomically.

        Returns the outbox entry id, or the blob fields among `refs` that are
        neither sent nor stored (nothing is written then: resend with them).
        """
        sent = {blob_field(b.channel, b.version) for b in blobs}
        required = [r for r in refs if r not in sent]
        head: list[Any] = [
            self.ttl_ms,
            self.window,
            token,
            row.thread_id,
            row.checkpoint_ns,
            row.checkpoint_id,
            pack_record(row, refs),
            row.parent_checkpoint_id or "",
            len(required),
            *required,
        ]
        self._fits(head[6], f"checkpoint {row.checkpoint_id!r} (without its blobs)")
        inline: list[Any] = []
        large: list[tuple[str, bytes]] = []  # (field, value)
        for b in blobs:
            packed = self._fits(
                pack_blob(b.type, b.blob, self.compress_min), f"channel {b.channel!r}"
            )
            if self.pin_min and len(packed) >= self.pin_min:
                large.append((blob_field(b.channel, b.version), packed))
            else:
                inline += (blob_field(b.channel, b.version), packed)
        if not large:
            reply = await self._fenced(self._put, row.thread_id, [*head, "", *inline])
        else:  # each large value under a temporary key of the thread's slot
            temp = self.keys.temporary(row.thread_id)
            sets = [(f"{temp}{i}", value) for i, (_, value) in enumerate(large)]
            named = pack_for_lua(
                [x for (f, _), (k, _) in zip(large, sets, strict=True) for x in (f, k)]
            )
            reply = await self._fenced(self._put, row.thread_id, [*head, named, *inline], sets)
        if isinstance(reply, list):
            return [_b(f) for f in reply]
        if self.local is not None:
            self.local.put(row, refs, blobs)
        return str(reply)

    async def put_writes(
        self,
        thread_id: str,
        ns: str,
        cid: str,
        writes: Sequence[WriteRow],
        upsert: bool,
        token: str = "",
    ) -> str:
        args: list[Any] = [
            self.ttl_ms,
            self.window,
            token,
            thread_id,
            ns,
            cid,
            "1" if upsert else "0",
        ]
        for w in writes:
            packed = self._fits(
                pack_write(w, self.compress_min), f"write {w.idx} to channel {w.channel!r}"
            )
            args += (write_field(cid, w), packed)
        sid = str(await self._fenced(self._put_writes, thread_id, args))
        if self.local is not None:
            self.local.put_writes(thread_id, ns, cid, writes, upsert)
        return sid

    def _fits(self, value: bytes, what: str) -> bytes:
        """`value`, if Redis accepts a value that large (else nothing is sent)."""
        if len(value) > self.max_bulk:
            raise SerializationError(
                f"{what} is {len(value):,} bytes serialized, over this Redis server's "
                f"proto-max-bulk-len of {self.max_bulk:,} bytes; nothing was written: keep "
                "large data out of the state (store a reference) or raise proto-max-bulk-len"
            )
        return value

    async def put_thread(
        self, thread_id: str, checkpoints: Sequence[StoredCheckpoint], token: str = ""
    ) -> str:
        """Write whole checkpoints (with blobs and writes) of one thread, oldest
        first, with their outbox entries, in one atomic script."""
        items = [
            [s.checkpoint_ns, s.checkpoint_id, *pack_stored(s, self.compress_min)]
            for s in checkpoints
        ]
        packed = self._fits(pack_for_lua(items), f"thread {thread_id!r} as one atomic copy")
        args = [self.ttl_ms, self.window, token, thread_id, packed]
        try:
            return str(await self._fenced(self._copy, thread_id, args))
        finally:
            if self.local is not None:  # a read in flight may predate the copy
                self.local.forget_thread(thread_id)

    async def _fenced(
        self, script: Any, thread_id: str, args: list[Any], sets: Sequence[tuple[str, bytes]] = ()
    ) -> Any:
        keys = [self.base(thread_id), self.outbox(thread_id)]
        what = f"a write to thread {thread_id!r}"
        try:
            reply = await self.run.write(
                script, keys, args, what, sets, self._stamp(thread_id, self.ttl_ms)
            )
            return reply if isinstance(reply, list) else _b(reply)
        except BaseException as e:
            if self.local is not None:  # written or not: read it back
                self.local.forget_thread(thread_id)
            if not isinstance(e, ResponseError):
                raise
            if not str(e).startswith(("LEASED", "DELETED")):
                raise
            if str(e).startswith("DELETED"):
                raise ThreadDeletedError(
                    f"thread {thread_id!r} was deleted and this write names one of its "
                    "deleted checkpoints (a late writer with a pre-delete config): nothing "
                    "was written; start the thread again without a checkpoint_id"
                ) from None
            holder = str(e).removeprefix("LEASED ")
            raise ThreadBusyError(
                f"thread {thread_id!r} is leased by {holder!r} and this writer does not "
                "hold the lease (or its lease expired): nothing was written; retry once "
                "the holder is done, or take the lease with saver.alease(thread_id)"
            ) from None

    def _stamp(self, thread_id: str, ttl_ms: int) -> tuple[Any, ...]:
        """The write that tells other processes' local caches the thread
        changed (hot/local_cache.py); it lives as long as the thread's keys."""
        key = self.keys.stamp(thread_id)
        return ("SET", key, "1", "PX", ttl_ms) if ttl_ms else ("SET", key, "1")

    async def acquire_thread(self, thread_id: str, owner: str, ttl_ms: int) -> str:
        """Take a thread's lease; returns its fencing token."""
        what = f"the lease of thread {thread_id!r}"
        keys = [self.base(thread_id)]
        ok, value = await self.run.write(self._thread_lease, keys, [ttl_ms, owner], what)
        if not ok:
            raise ThreadBusyError(
                f"thread {thread_id!r} is already leased by {_b(value)!r}; another process "
                "is running it. Retry after it finishes or after the lease expires"
            )
        return _b(value)

    async def keep_thread(self, thread_id: str, token: str, ttl_ms: int) -> bool:
        """Renew (ttl_ms > 0) or release (0) our lease; False if we lost it."""
        what = f"the lease of thread {thread_id!r}"
        keys = [self.base(thread_id)]
        kept = await self.run.write(self._thread_lease_keep, keys, [token, ttl_ms], what)
        return bool(kept)

    async def drop_thread(self, thread_id: str, *, queue: bool) -> str | None:
        """Remove the thread from Redis; with `queue`, also enqueue its deletion."""
        keys = [self.base(thread_id), self.outbox(thread_id)]
        tombstone = str(uuid6()) if queue else ""
        args = [thread_id, "1" if queue else "0", tombstone]
        what = f"the deletion of thread {thread_id!r}"
        stamp = self._stamp(thread_id, TOMBSTONE_MS)
        try:
            sid = await self.run.write(self._drop, keys, args, what, stamp=stamp)
        finally:
            if self.local is not None:  # a read in flight may predate the deletion
                self.local.forget_thread(thread_id)
        return _b(sid) if sid else None

    async def forget(self, changed: Sequence[tuple[str, str, str, bool]]) -> None:
        """Remove from Redis the checkpoints (thread, namespace, id, deleted)
        that a prune or `delete_for_runs` of the durable store deleted or
        changed, one script per thread; the rest of each thread stays, what
        was written since the flush included."""
        by_thread: dict[str, list[str]] = {}
        for thread_id, ns, cid, deleted in changed:
            by_thread.setdefault(thread_id, []).extend((ns, cid, "d" if deleted else "u"))
        for thread_id, args in by_thread.items():
            what = f"the prune of thread {thread_id!r}"
            stamp = self._stamp(thread_id, self.ttl_ms)
            try:
                await self.run.write(self._forget, [self.base(thread_id)], args, what, stamp=stamp)
            finally:
                if self.local is not None:  # a read in flight may predate the prune
                    self.local.forget_thread(thread_id)

    # --- reads ----------------------------------------------------------------

    async def get(self, thread_id: str, ns: str, cid: str | None) -> HotRead:
        args = [ns, cid or "", self.refresh_ms, thread_id]
        reply = await self.run.eval(self._get, [self.base(thread_id)], args)
        return self._read(thread_id, ns, reply)

    def _read(self, thread_id: str, ns: str, reply: list[Any]) -> HotRead:
        found, rec, blob_values, write_values, gen, *rest = reply
        if rest and rest[0]:
            self._report_dead(thread_id, int(rest[0]))
        found_id = _b(found) if found else None
        writes = [unpack_write(v) for v in write_values if v is not None]
        if found_id is None or rec is None:
            return HotRead(found_id, None, writes, gen, index=int(rest[1]) if rest else 1)
        stored, refs = decode_record(thread_id, ns, found_id, rec, self.base(thread_id))
        missing = []
        for ref, value in zip(refs, blob_values, strict=True):
            channel, _, version = ref.partition("\x00")
            if value is None:
                missing.append((channel, version))
            else:
                stored.blobs[channel] = unpack_blob(value)
        stored.writes = writes
        return HotRead(found_id, stored, writes, gen, missing)

    def _report_dead(self, thread_id: str, count: int) -> None:
        """Say, at most once a minute per thread, that a thread being read
        holds entries the durable store refused: its reads come from Redis,
        and the store lacks them until an operator retries them."""
        now = time.monotonic()
        if now - self._warned.get(thread_id, -DEAD_WARN_INTERVAL) < DEAD_WARN_INTERVAL:
            return
        self._warned[thread_id] = now
        logger.warning(
            "thread %r holds %d outbox entries the durable store refused (dead letters): "
            "they are readable from Redis only, not durable; see "
            "`langgraph-hybrid-saver dead-letters list --thread %s`",
            thread_id, count, thread_id,
        )  # fmt: skip

    async def get_many(self, keys: Sequence[tuple[str, str, str]]) -> list[HotRead]:
        """`get` of several (thread_id, ns, checkpoint_id) in one round trip
        (concurrent per-slot calls on Redis Cluster)."""
        if not keys:
            return []
        if self.cluster:
            replies = await asyncio.gather(
                *(
                    self._get(keys=[self.base(t)], args=[ns, cid, self.refresh_ms, t])
                    for t, ns, cid in keys
                )
            )
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for t, ns, cid in keys:
                    await self._get(
                        keys=[self.base(t)], args=[ns, cid, self.refresh_ms, t], client=pipe
                    )
                replies = await pipe.execute()
        return [self._read(t, ns, reply) for (t, ns, _), reply in zip(keys, replies, strict=True)]

    async def pending(self, thread_id: str) -> bool:
        """Whether the thread has outbox entries not yet durable (`base:o`)."""
        return bool(int(await self.redis.hget(self.base(thread_id) + ":o", "n") or 0))

    async def namespaces(self, thread_id: str) -> list[str]:
        return sorted(
            _b(n) for n in await self.run.eval(self._namespaces, [self.base(thread_id)], [])
        )

    async def list_full(
        self,
        thread_id: str,
        ns: str | None,
        cid: str | None,
        before: str | None,
        limit: int | None,
        *,
        indexed: bool = False,
    ) -> tuple[list[HotRead], bool]:
        """The newest `limit` checkpoints of a thread (every namespace when `ns`
        is None) with their blobs and writes, in one round trip; and whether
        Redis holds every checkpoint the query can match (with `indexed`, also
        when the complete thread index lacks the thread)."""
        args = ["1" if ns is None else "0", ns or "", cid or "", before or "", limit or 0]
        args += [self.refresh_ms, thread_id if indexed else ""]
        complete, gen, items, dead = await self.run.eval(
            self._list_full, [self.base(thread_id)], args
        )
        if dead:
            self._report_dead(thread_id, int(dead))
        reads = [
            self._read(thread_id, _b(item_ns), [found, rec, blobs, writes, gen])
            for item_ns, found, rec, blobs, writes in items
        ]
        return reads, bool(complete)

    async def list_headers(
        self, thread_id: str, ns: str, before: str | None, limit: int | None
    ) -> tuple[list[StoredCheckpoint], bool]:
        """Checkpoints of one namespace newest first, without blobs or writes,
        and whether Redis holds every checkpoint of the namespace."""
        base = self.base(thread_id)
        ids, recs, complete = await self.run.eval(
            self._list, [base], [ns, before or "", limit or 0]
        )
        out = []
        for cid, rec in zip(ids, recs, strict=True):
            if rec is None:  # a record evicted alone is read from the durable store
                complete = 0
            else:
                out.append(decode_record(thread_id, ns, _b(cid), rec, base)[0])
        return out, bool(complete)

    async def repopulate(
        self, stored: StoredCheckpoint, generation: bytes, *, latest: bool
    ) -> list[WriteRow] | None:
        """Copy a durable checkpoint into Redis; None if the thread was deleted
        meanwhile. Returns the union of durable and hot pending writes."""
        record, blobs, writes = pack_stored(stored, self.compress_min)
        args: list[Any] = [
            stored.checkpoint_ns,
            self.ttl_ms,
            stored.checkpoint_id,
            record,
            generation,
            "1" if latest else "0",
            len(blobs),
            *blobs,
            *writes,
        ]
        values = await self.run.eval(self._repopulate, [self.base(stored.thread_id)], args)
        if values is None:
            return None
        return [unpack_write(v) for v in values if v is not None]
