"""The local cache: the latest checkpoint of each (thread, namespace) this
process wrote or read, served without a round trip while no other
connection changes the thread.

Invalidation is Redis' own (server-assisted client-side caching, plain
RESP2, no modules): a connection of ours subscribes to
`__redis__:invalidate`, and the saver's pipelined connection (the lane,
hot/connection.py) turns on `CLIENT TRACKING ... REDIRECT <that connection>
BCAST PREFIX <stamp prefix> NOLOOP`. Every write that changes what a read
of a thread returns (put, put_writes, copy, drop) is followed, on the same
connection, by a write of the thread's stamp key (hot/keys.py,
hot/runner.py), so Redis tells us of every change to a thread made by any
connection but the lane: other processes, other savers, and our own writes
whenever they go through redis-py instead of the lane (those only cost a
miss). Our own writes update the cache here.

Freshness: Redis queues a change's invalidation before the reply to the
write that made it, so once another process learns its write is done, the
invalidation is in our socket; before serving a hit the cache checks that no
byte waits in that socket nor in the lane's (one `select` with no timeout),
else lets the event loop read them first (two turns of the loop), so a hit is
never older than what reached this host.

Safety over hits: a read whose thread was invalidated while it was in flight
is not cached; when the invalidation connection or the lane's tracking is
lost (a reconnect, a failover, FLUSHALL), everything is dropped and nothing
is cached until tracking is back. Redis Cluster: off (tracking is per node).

Entries are kept as JSON text and serialized values, decoded on every hit,
so a caller that changes the tuple it got never changes the cache; bounded
by bytes, least recently used out first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import select
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import hiredis

from langgraph_hybrid_saver.core import BlobRow, CheckpointRow, StoredCheckpoint, WriteRow
from langgraph_hybrid_saver.errors import ConfigError
from langgraph_hybrid_saver.hot.connection import LaneBroken
from langgraph_hybrid_saver.hot.keys import Keys

logger = logging.getLogger("langgraph_hybrid_saver.hot")

CHANNEL = b"__redis__:invalidate"
RECONNECT_DELAY = 1.0  # seconds between attempts to open the invalidation connection
_ENTRY_OVERHEAD = 300  # bytes an entry costs beyond its values (objects, keys)


@dataclass(slots=True)
class _Entry:
    checkpoint_id: str
    parent_checkpoint_id: str | None
    checkpoint: str  # JSON text
    metadata: str  # JSON text
    versions: dict[str, str]  # channel -> version, for the next put's unchanged values
    blobs: dict[str, tuple[str, bytes | None]]
    writes: dict[tuple[str, int], WriteRow] = field(default_factory=dict)
    size: int = 0

    def measure(self) -> None:
        self.size = (
            _ENTRY_OVERHEAD
            + len(self.checkpoint)
            + len(self.metadata)
            + sum(len(b or b"") for _, b in self.blobs.values())
            + sum(len(w.blob) for w in self.writes.values())
        )


class LocalCache:
    """Latest checkpoints by (thread, namespace), at most `max_bytes`."""

    def __init__(self, keys: Keys, max_bytes: int) -> None:
        self.keys = keys
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self.by_thread: dict[str, set[str]] = {}
        self.bytes = 0
        self.ready = False  # tracking is on: entries may be served and stored
        self.hits = 0
        self.misses = 0
        self.invalidations = 0
        self._seq = 0  # counts invalidations and flushes
        self._flushed_at = 0
        self._touched: dict[str, int] = {}  # thread -> seq of its last invalidation, while read
        self._reading: dict[str, int] = {}  # thread -> reads in flight
        # Whether no byte waits in the tracking sockets (set by Tracking).
        self.quiet: Callable[[], bool] = lambda: False

    # --- reads ----------------------------------------------------------------

    async def get(self, thread_id: str, ns: str) -> StoredCheckpoint | None:
        """The cached latest checkpoint, once the loop has read what reached
        the tracking sockets: at once when nothing is waiting in them, else
        after two turns of the loop (the select, then its callbacks)."""
        if not self.ready or (thread_id, ns) not in self.entries:
            self.misses += self.ready
            return None
        if not self.quiet():
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        entry = self.entries.get((thread_id, ns))
        if entry is None or not self.ready:
            self.misses += 1
            return None
        self.entries.move_to_end((thread_id, ns))
        self.hits += 1
        return StoredCheckpoint(
            thread_id,
            ns,
            entry.checkpoint_id,
            entry.parent_checkpoint_id,
            json.loads(entry.checkpoint),
            json.loads(entry.metadata),
            dict(entry.blobs),
            list(entry.writes.values()),
        )

    def begin(self, thread_id: str) -> int:
        """Before a read from Redis whose result may be cached: a token for `end`."""
        self._reading[thread_id] = self._reading.get(thread_id, 0) + 1
        return self._seq

    def end(self, thread_id: str, ns: str, token: int, stored: StoredCheckpoint | None) -> None:
        """After that read: cache `stored` (the latest of the namespace) unless
        the thread changed, or tracking was lost, while the read was in flight."""
        left = self._reading[thread_id] - 1
        touched = self._touched.get(thread_id, -1)
        if left:
            self._reading[thread_id] = left
        else:
            del self._reading[thread_id]
            self._touched.pop(thread_id, None)
        if stored is None or not self.ready or token < self._flushed_at or touched >= token:
            return
        all_versions = stored.checkpoint.get("channel_versions", {})
        versions = {ch: str(all_versions[ch]) for ch in stored.blobs if ch in all_versions}
        entry = _Entry(
            stored.checkpoint_id,
            stored.parent_checkpoint_id,
            json.dumps(stored.checkpoint, separators=(",", ":")),
            json.dumps(stored.metadata, separators=(",", ":")),
            versions,
            dict(stored.blobs),
            {(w.task_id, w.idx): w for w in stored.writes},
        )
        self._store(thread_id, stored.checkpoint_ns, entry)

    # --- our own writes (on the lane: Redis does not tell us of them) ----------

    def put(self, row: CheckpointRow, refs: Sequence[str], blobs: Sequence[BlobRow]) -> None:
        """A checkpoint we stored: the namespace's latest now. Its unchanged
        values come from its parent's entry; without that entry it is not cached."""
        self._touch(row.thread_id)
        parent = self.entries.get((row.thread_id, row.checkpoint_ns))
        if not self.ready or parent is None or row.checkpoint_id <= parent.checkpoint_id:
            # not known to be the latest (no entry: Redis may hold a newer one)
            self.forget(row.thread_id, row.checkpoint_ns)
            return
        sent = {(b.channel, b.version): (b.type, b.blob) for b in blobs}
        values: dict[str, tuple[str, bytes | None]] = {}
        versions: dict[str, str] = {}
        for ref in refs:
            channel, _, version = ref.partition("\x00")
            versions[channel] = version
            value = sent.get((channel, version))
            if value is None and parent is not None and parent.versions.get(channel) == version:
                value = parent.blobs.get(channel)
            if value is None:
                self.forget(row.thread_id, row.checkpoint_ns)
                return
            values[channel] = value
        entry = _Entry(
            row.checkpoint_id,
            row.parent_checkpoint_id,
            row.checkpoint,
            row.metadata,
            versions,
            values,
        )
        self._store(row.thread_id, row.checkpoint_ns, entry)

    def put_writes(
        self, thread_id: str, ns: str, cid: str, writes: Sequence[WriteRow], upsert: bool
    ) -> None:
        """Writes we stored to checkpoint `cid`: as the put_writes script keeps
        them (one per task and index; special channels overwrite)."""
        self._touch(thread_id)
        entry = self.entries.get((thread_id, ns))
        if entry is None:
            return
        if entry.checkpoint_id != cid:
            # Writes to a checkpoint newer than the entry: its put may come
            # after them (LangGraph saves writes while the put waits for the
            # one before), and then it must not be cached as having none.
            if cid > entry.checkpoint_id:
                self.forget(thread_id, ns)
            return
        for w in writes:
            if upsert:
                entry.writes[(w.task_id, w.idx)] = w
            else:
                entry.writes.setdefault((w.task_id, w.idx), w)
        self.bytes -= entry.size
        entry.measure()
        self.bytes += entry.size
        self._evict()

    # --- invalidation -----------------------------------------------------------

    def invalidate(self, keys: list[bytes] | None) -> None:
        """Redis changed these stamp keys (None: everything, e.g. FLUSHALL)."""
        if keys is None:
            self.flush()
            return
        for key in keys:
            thread_id = self.keys.stamped_thread(key)
            if thread_id is None:
                continue
            self.invalidations += 1
            self.forget_thread(thread_id)

    def flush(self) -> None:
        """Drop everything; reads in flight are not cached."""
        self._seq += 1
        self._flushed_at = self._seq + 1
        self._seq += 1
        self.entries.clear()
        self.by_thread.clear()
        self.bytes = 0

    def forget(self, thread_id: str, ns: str) -> None:
        entry = self.entries.pop((thread_id, ns), None)
        if entry is not None:
            self.bytes -= entry.size
            namespaces = self.by_thread[thread_id]
            namespaces.discard(ns)
            if not namespaces:
                del self.by_thread[thread_id]

    def forget_thread(self, thread_id: str) -> None:
        """Drop the thread's entries: we change it (or may have)."""
        self._touch(thread_id)
        for ns in list(self.by_thread.get(thread_id, ())):
            self.forget(thread_id, ns)

    def _touch(self, thread_id: str) -> None:
        """The thread changes: a read of it in flight, whose reply may predate
        the change, is not cached (our own writes bring no invalidation)."""
        self._seq += 1
        if thread_id in self._reading:
            self._touched[thread_id] = self._seq

    def _store(self, thread_id: str, ns: str, entry: _Entry) -> None:
        self.forget(thread_id, ns)
        entry.measure()
        if entry.size > self.max_bytes:
            return
        self.entries[(thread_id, ns)] = entry
        self.by_thread.setdefault(thread_id, set()).add(ns)
        self.bytes += entry.size
        self._evict()

    def _evict(self) -> None:
        while self.bytes > self.max_bytes and self.entries:
            (thread_id, ns), _ = next(iter(self.entries.items()))
            self.forget(thread_id, ns)

    def stats(self) -> dict[str, Any]:
        return {
            "enabled": self.ready,
            "hits": self.hits,
            "misses": self.misses,
            "invalidations": self.invalidations,
            "entries": len(self.entries),
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
        }


def local_cache(
    redis: Any, keys: Keys, lanes: Any, max_bytes: int | None
) -> tuple[LocalCache | None, Tracking | None]:
    """The cache and its tracking for `local_cache_bytes`; none without a
    lane (its writes are the ones Redis does not report) or with 0/None."""
    if max_bytes is not None and (
        isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0
    ):
        raise ConfigError(
            f"local_cache_bytes={max_bytes!r}: use an int >= 0 (bytes; 0 or None: no local cache)"
        )
    if not max_bytes or lanes is None:
        return None, None
    cache = LocalCache(keys, max_bytes)
    return cache, Tracking(redis, cache, lanes)


class Tracking:
    """The invalidation connection, and tracking turned on on the lane.

    `cache.ready` is True only while both hold; whenever either is (re)made,
    the cache starts empty.
    """

    def __init__(self, redis: Any, cache: LocalCache, lanes: Any) -> None:
        self.pool = redis.connection_pool
        self.cache = cache
        self.lanes = lanes  # hot/connection.py Lanes
        self.client_id: int | None = None
        self._conn: Any = None
        self._reader: Any = None
        self._subscribed: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        lanes.on_open = self._register
        lanes.on_close = self._lane_lost
        self._socket: Any = None  # the invalidation connection's
        cache.quiet = self.quiet

    async def start(self) -> None:
        """Open the invalidation connection and turn tracking on; on failure
        the cache stays off and another attempt follows."""
        try:
            await self._open()
        except Exception as e:
            logger.warning("local cache off: cannot open its invalidation connection (%s)", e)
            self._retry()

    async def _open(self) -> None:
        conn = self.pool.make_connection()
        await conn.connect()
        try:
            await conn.send_command("CLIENT", "ID")
            client_id = int(await conn.read_response())
            # From here the connection is ours (redis-py's reader takes a
            # subscription's replies for its push handler).
            transport = conn._writer.transport
            self._reader = hiredis.Reader()
            self._subscribed = asyncio.get_running_loop().create_future()
            transport.set_protocol(_Invalidations(self))
            subscribe: Any = ("SUBSCRIBE", CHANNEL)
            transport.write(hiredis.pack_command(subscribe))
            await asyncio.wait_for(self._subscribed, conn.socket_timeout or 5.0)
        except BaseException:
            conn._writer.transport.abort()
            raise
        self._conn, self.client_id = conn, client_id
        self._socket = conn._writer.transport.get_extra_info("socket")
        pipe = await self.lanes.connection()  # tracking on the lane as it is now
        self._register(pipe)

    def _register(self, pipe: Any) -> None:
        """Turn tracking on on a lane connection: its first commands when it
        is new. The cache is emptied once Redis has answered."""
        self.cache.ready = False
        self.cache.flush()
        if self.client_id is None or self._closed:
            return
        off: Any = ("CLIENT", "TRACKING", "OFF")
        on: Any = ("CLIENT", "TRACKING", "ON", "REDIRECT", self.client_id, "BCAST", "PREFIX")
        on += (self.cache.keys.stamps, "NOLOOP")
        packed = hiredis.pack_command(off) + hiredis.pack_command(on)
        try:
            _, reply = pipe.send(packed, 2)
        except LaneBroken:  # the next lane registers
            return
        client_id = self.client_id

        def done(f: asyncio.Future[Any]) -> None:
            if f.cancelled() or isinstance(f.exception(), LaneBroken):
                return  # the next lane registers
            result = f.exception() or f.result()
            if result == b"OK":
                if self.client_id == client_id and not self._closed:
                    self.cache.flush()
                    self.cache.ready = True
            elif "redirect" in str(result).lower():  # our connection is not on this server
                self.lost()
            else:  # no client tracking here (Redis < 6, a proxy): off for good
                logger.warning("local cache off: Redis refused client tracking (%s)", result)
                self._closed = True
                self.lost()

        reply.add_done_callback(done)

    def quiet(self) -> bool:
        """No byte waits in the invalidation connection's socket nor in the
        lane's (an invalidation, or the lane's end, the loop has not read)."""
        pipe = self.lanes.pipe
        lane = pipe.transport.get_extra_info("socket") if pipe is not None else None
        sockets = [s for s in (self._socket, lane) if s is not None]
        if len(sockets) < 2:
            return False
        try:
            readable, _, _ = select.select(sockets, [], [], 0)
        except (OSError, ValueError):  # a socket closed meanwhile
            return False
        return not readable

    def _lane_lost(self) -> None:
        """The lane's tracking went with it: off until the next lane registers."""
        self.cache.ready = False
        self.cache.flush()

    def received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (message := self._reader.gets()) is not False:
            if not isinstance(message, list):
                continue
            if message[0] == b"invalidate" and len(message) == 2:  # RESP3: a push
                self.cache.invalidate(message[1])
            elif message[0] == b"message" and len(message) == 3:  # RESP2: on the channel
                self.cache.invalidate(message[2])
            elif isinstance(message, list) and message[:1] == [b"subscribe"]:
                if self._subscribed is not None and not self._subscribed.done():
                    self._subscribed.set_result(None)

    def lost(self) -> None:
        """The invalidation connection is gone (or tracking is): off until remade."""
        self.cache.ready = False
        self.cache.flush()
        self.client_id = None
        conn, self._conn = self._conn, None
        self._socket = None
        if conn is not None:
            conn._writer.transport.abort()
        self._retry()

    def _retry(self) -> None:
        if self._closed or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.get_running_loop().create_task(self._reopen())

    async def _reopen(self) -> None:
        while not self._closed and self.client_id is None:
            await asyncio.sleep(RECONNECT_DELAY)
            try:
                await self._open()
            except Exception as e:
                logger.debug("local cache: invalidation connection not reopened (%s)", e)

    async def aclose(self) -> None:
        self._closed = True
        self.cache.ready = False
        if self._task is not None:
            self._task.cancel()
        conn, self._conn = self._conn, None
        self._socket = None
        if conn is not None:
            conn._writer.transport.abort()


class _Invalidations(asyncio.Protocol):
    """The protocol of the invalidation connection."""

    def __init__(self, tracking: Tracking) -> None:
        self.tracking = tracking

    def data_received(self, data: bytes) -> None:
        try:
            self.tracking.received(data)
        except Exception as e:  # hiredis.ProtocolError
            logger.warning("local cache: unreadable invalidation (%s)", e)
            self.tracking.lost()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.tracking._conn is not None and not self.tracking._closed:
            logger.warning("local cache off: invalidation connection lost (%s)", exc or "EOF")
            self.tracking.lost()
