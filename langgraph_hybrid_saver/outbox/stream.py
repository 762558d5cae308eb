"""The outbox's Redis side: per-shard streams of entries not yet in the
durable store (the hot tier's write scripts append them), the shard leases
of the reconcilers, reading entries with their large values, acking applied
ones (which settles their threads' TTL and window), dead letters, and the
backlog that flushes and bounds wait on."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.exceptions import NoScriptError, ReadOnlyError, ResponseError

from langgraph_hybrid_saver.errors import CorruptDataError
from langgraph_hybrid_saver.hot import HotTier
from langgraph_hybrid_saver.hot.lua import source
from langgraph_hybrid_saver.outbox.codec import decode_entry
from langgraph_hybrid_saver.outbox.ops import (
    Op,
    PutOp,
    WritesOp,
)

logger = logging.getLogger("langgraph_hybrid_saver.outbox")

# An applied outbox entry: (shard, entry id, thread id).
Applied = tuple[int, str, str]


def _evalsha(script: Any, keys: Sequence[Any], args: Sequence[Any]) -> tuple[Any, ...]:
    return ("EVALSHA", script.sha, len(keys), *keys, *args)


def _command_name(pool: Any) -> tuple[str, ...]:
    """What `get_connection` takes: nothing since redis-py 5.3 (which warns
    when given a command name), a command name before."""
    param = inspect.signature(pool.get_connection).parameters.get("command_name")
    return ("XREAD",) if param is not None and param.default is inspect.Parameter.empty else ()


def _pairs(fields: Any) -> dict[bytes, bytes]:
    """An entry's fields as a dict (RESP2 gives a flat list)."""
    if isinstance(fields, dict):
        return fields
    it = iter(fields)
    return dict(zip(it, it, strict=True))


def _b(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Outbox:
    """The outbox streams of one key prefix; one round trip per call.

    Holds the `p` keys (large values of entries older layouts wrote) of the
    entries it read until it acks them: the reconciler reads and acks
    through one instance. An entry of this layout reads its large values from
    the thread's `v` keys, which stay as the hot copy."""

    def __init__(self, hot: HotTier) -> None:
        self.hot = hot
        self.redis: Any = hot.redis
        self.cluster = hot.cluster
        self.keys = hot.keys
        self.shards = hot.shards
        self._get_args: tuple[str, ...] | None = None  # what the pool's get_connection takes
        self._pins: dict[str, list[bytes]] = {}  # entry id -> its `p` keys, read, not yet deleted
        redis = hot.redis
        self._lease = redis.register_script(source("lease"))
        self._release = redis.register_script(source("release"))
        self._dead_letter = redis.register_script(source("dead_letter"))
        self._ack = redis.register_script(source("ack"))

    async def try_leases(self, shards: Sequence[int], owner: str, ttl_ms: int) -> list[int]:
        """Take (free) or renew (ours) the leases of `shards` in one round trip;
        returns the shards whose lease `owner` now holds."""
        held = await self._per_lease(self._lease, shards, [owner, ttl_ms])
        return [s for s, ok in zip(shards, held, strict=True) if ok]

    async def release(self, shards: Sequence[int], owner: str) -> None:
        """Let go of the leases of `shards` that `owner` holds, in one round trip."""
        await self._per_lease(self._release, shards, [owner])

    async def _per_lease(self, script: Any, shards: Sequence[int], args: list[Any]) -> list[Any]:
        if self.cluster:  # the lease keys live in different slots
            calls = (script(keys=[self.keys.leases[s]], args=args) for s in shards)
            return list(await asyncio.gather(*calls))
        return await self._pipeline([_evalsha(script, [self.keys.leases[s]], args) for s in shards])

    async def _pipeline(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """The replies of `commands`, sent in one write on a connection of the
        client's pool and read as Redis sent them (an error reply raises).

        The reconciler's reads and acks take this way instead of redis-py's
        pipeline: its pure-Python encoding of every argument, its reply
        callbacks and, for scripts, a SCRIPT EXISTS round trip on every
        execute were the larger part of a sequential in-process reconcile.
        Scripts go as EVALSHA; when Redis does not know one (a restart,
        SCRIPT FLUSH) they are loaded and the commands sent again: reads are
        repeatable, and an ack, lease or release done twice does what it did
        once. A connection that fails is dropped; the reconciler retries."""
        for attempt in (1, 2):
            replies = await self._exchange(commands)
            errors = [r for r in replies if isinstance(r, ResponseError)]
            if not errors:
                return replies
            if attempt == 2 or not all(isinstance(e, NoScriptError) for e in errors):
                raise errors[0]
            for script in (self._ack, self._lease, self._release):
                await self.redis.script_load(script.script)
        raise AssertionError("unreachable")

    async def _exchange(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        pool = self.redis.connection_pool
        if self._get_args is None:
            self._get_args = _command_name(pool)
        conn = await pool.get_connection(*self._get_args)
        try:
            await conn.send_packed_command(b"".join(hiredis.pack_command(c) for c in commands))
            replies = []
            for _ in commands:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as e:  # read whole: the next reply follows
                    replies.append(e)
            if any(isinstance(r, ReadOnlyError) for r in replies):
                # a failover demoted this server: the next connection finds the primary
                await conn.disconnect()
            return replies
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)

    async def read(
        self,
        shards: Sequence[int],
        count: int,
        block_ms: int | None,
        ack: Sequence[Applied] = (),
    ) -> list[tuple[int, str, Op]]:
        """The oldest entries of the given shards (applied ones are deleted, so
        the head of a stream is always the oldest unapplied entry), after
        deleting the applied entries `ack` in the same round trip."""
        if not shards:
            await self.ack(ack)
            return []
        index = {self.keys.outboxes[s]: s for s in shards}
        if self.cluster:
            await self.ack(ack)
            replies = await asyncio.gather(
                *(self.redis.xread({self.keys.outboxes[s]: "0-0"}, count=count) for s in shards)
            )
            reply = [r for rs in replies for r in (rs or [])]
            if not reply and block_ms:
                await asyncio.sleep(min(block_ms, 20) / 1000)
        else:
            xread: list[Any] = ["XREAD", "COUNT", count]
            if block_ms is not None:
                xread += ["BLOCK", block_ms]
            xread += ["STREAMS", *index, *["0-0"] * len(index)]
            *_, reply = await self._pipeline([*self._ack_commands(ack), tuple(xread)])
            if isinstance(reply, dict):  # RESP3: a map of stream to entries
                reply = list(reply.items())
            reply = [(stream, [(sid, _pairs(f)) for sid, f in es]) for stream, es in reply or []]
        read = [(index[_b(stream)], _b(sid), f) for stream, es in reply or [] for sid, f in es]
        large = await self.large_values([(sid, f) for _, sid, f in read])
        out = []
        for (shard, sid, fields), values in zip(read, large, strict=True):
            try:
                out.append((shard, sid, decode_entry(sid, fields, values)))
            except CorruptDataError as e:
                await self.dead_letter(shard, sid, str(e))
            else:
                if values and b"R" in fields:  # `p` keys: deleted with the entry
                    self._pins[sid] = [key for key, _ in values.values()]
        return out

    async def large_values(
        self, entries: Sequence[tuple[str, dict[bytes, bytes]]]
    ) -> list[dict[bytes, tuple[bytes, bytes | None]]]:
        """The large values of outbox entries (field -> (its key, value or
        None when the key is gone)), read in one round trip when any has one."""
        keys: list[list[tuple[bytes, bytes]]] = []
        for sid, fields in entries:
            keys.append([])
            for f, v in fields.items():
                if v == b"" and b"\x00" in f:
                    key = self.keys.entry_value(sid, fields, f)
                    if key is not None:
                        keys[-1].append((f, key))
        flat = [key for ks in keys for _, key in ks]
        if not flat:
            return [{} for _ in entries]
        if self.cluster:
            values = list(await asyncio.gather(*(self.redis.get(k) for k in flat)))
        else:
            values = await self.redis.mget(flat)
        found = iter(values)
        return [{f: (key, next(found)) for f, key in ks} for ks in keys]

    async def dead_letter(self, shard: int, sid: str, reason: str) -> None:
        """Move an outbox entry the durable store cannot take (undecodable, or
        refused by the store) to the shard's dead-letter stream, whole. Its
        large values stay for a retry; its thread stays pending, so
        its hot copy neither expires nor is trimmed."""
        logger.error(
            "outbox entry %s of shard %d is not durable; moved to %s: %s",
            sid, shard, self.keys.dead[shard], reason,
        )  # fmt: skip
        self._pins.pop(sid, None)
        keys = [self.keys.outboxes[shard], self.keys.dead[shard], self.keys.dead_index[shard]]
        await self.hot.run.eval(self._dead_letter, keys, [sid, reason, self.keys.shard_root(shard)])

    async def dead_reason(self, shard: int, sid: str) -> str | None:
        """Why outbox entry `sid` was dead-lettered, or None if it was not."""
        dead_id = await self.redis.hget(self.keys.dead_index[shard], sid)
        if dead_id is None:
            return None
        entries = await self.redis.xrange(self.keys.dead[shard], dead_id, dead_id)
        fields = entries[0][1] if entries else {}
        return _b(fields.get(b"reason", b"dead-lettered, then dropped by an operator"))

    async def dead_letters(self) -> int:
        """How many entries the dead-letter streams hold."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in self.keys.dead:
                pipe.xlen(stream)
            return sum(await pipe.execute())

    async def ack(self, applied: Sequence[Applied]) -> None:
        """Delete applied entries; the durable store has committed them."""
        if not applied:
            return
        if self.cluster:  # one slot per shard: one call each
            calls = [self._ack(keys=k, args=a) for k, a in self._ack_calls(applied)]
            await asyncio.gather(*calls, *(self.redis.delete(*p) for p in self._unpin(applied)))
            return
        await self._pipeline(self._ack_commands(applied))

    def _ack_calls(self, applied: Sequence[Applied]) -> list[tuple[list[str], list[str]]]:
        """(keys, args) of the ack script, one call per shard."""
        by_shard: dict[int, list[str]] = {}
        for shard, sid, thread_id in applied:
            by_shard.setdefault(shard, []).extend((sid, self.keys.base(thread_id)))
        return [([self.keys.outboxes[shard]], args) for shard, args in by_shard.items()]

    def _unpin(self, applied: Sequence[Applied]) -> list[list[bytes]]:
        """The `p` keys of applied entries, one list (one slot) per entry."""
        return [large for _, sid, _ in applied if (large := self._pins.pop(sid, None))]

    def _ack_commands(self, applied: Sequence[Applied]) -> list[tuple[Any, ...]]:
        acks = [_evalsha(self._ack, keys, args) for keys, args in self._ack_calls(applied)]
        return acks + [("DEL", *large) for large in self._unpin(applied)]

    async def heads(self) -> list[str | None]:
        """The newest entry id of every shard's outbox (None when empty)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in self.keys.outboxes:
                pipe.xrevrange(stream, count=1)
            replies = await pipe.execute()
        return [_b(r[0][0]) if r else None for r in replies]

    async def pending_upto(self, heads: Sequence[str | None]) -> int:
        """How many entries at or before `heads` are still in the outbox."""
        async with self.redis.pipeline(transaction=False) as pipe:
            todo = [(s, h) for s, h in enumerate(heads) if h is not None]
            for shard, head in todo:
                pipe.xrange(self.keys.outboxes[shard], "-", head, count=1)
            replies = await pipe.execute()
        return sum(1 for r in replies if r)

    async def backlog(self) -> tuple[int, float | None]:
        """Entries in the outbox and the age in seconds of the oldest one."""
        total, age, _ = await self.state()
        return total, age

    async def state(self) -> tuple[int, float | None, int]:
        """Entries in the outbox, the age in seconds of the oldest one, and the
        entries in the dead-letter streams: one round trip (two on a cluster,
        where TIME has no slot to go with the streams)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, dead in zip(self.keys.outboxes, self.keys.dead, strict=True):
                pipe.xlen(stream)
                pipe.xrange(stream, count=1)
                pipe.xlen(dead)
            if not self.cluster:
                pipe.time()
            replies = await pipe.execute()
        now_s, now_us = replies.pop() if not self.cluster else await self.redis.time()
        now_ms = now_s * 1000 + now_us // 1000
        total, oldest, dead_letters = 0, None, 0
        for i in range(0, len(replies), 3):
            total += replies[i]
            if replies[i + 1]:
                ms = int(_b(replies[i + 1][0][0]).split("-")[0])
                oldest = ms if oldest is None else min(oldest, ms)
            dead_letters += replies[i + 2]
        age = None if oldest is None else max(now_ms - oldest, 0) / 1000
        return total, age, dead_letters

    async def unreconciled(self) -> tuple[list[PutOp], set[tuple[str, str, str]]]:
        """What the outbox still holds (for `list(None, ...)` across threads):
        the puts, and the checkpoints with pending writes not yet reconciled."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in self.keys.outboxes:
                pipe.xrange(stream)
            replies = await pipe.execute()
        puts, written = [], set()
        for entries in replies:
            entries = [(_b(sid), f) for sid, f in entries]
            for (sid, f), large in zip(entries, await self.large_values(entries), strict=True):
                try:
                    op = decode_entry(sid, f, large)
                except CorruptDataError:
                    continue  # the reconciler moves it to the dead-letter stream
                if isinstance(op, PutOp):
                    puts.append(op)
                elif isinstance(op, WritesOp):
                    written.add((op.thread_id, op.checkpoint_ns, op.checkpoint_id))
        return puts, written

    # --- reconcilers ----------------------------------------------------------

    async def heartbeat(self, owner: str, lease_ms: int) -> int:
        """Mark `owner` alive for `lease_ms`, forget expired workers; returns
        how many reconcilers are alive."""
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self.keys.workers, {owner: now_ms + lease_ms})
            pipe.zremrangebyscore(self.keys.workers, "-inf", now_ms)
            pipe.zcard(self.keys.workers)
            _, _, workers = await pipe.execute()
        return int(workers)

    async def leave(self, owner: str) -> None:
        """Remove `owner` from the live reconcilers."""
        await self.redis.zrem(self.keys.workers, owner)

    async def orphans(self, owned: set[int]) -> list[int]:
        """Shards with entries that no live reconciler owns (`owned` excluded)."""
        now_ms = int(time.time() * 1000)
        alive = {_b(m) for m in await self.redis.zrangebyscore(self.keys.workers, now_ms, "+inf")}
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(self.shards):
                pipe.xlen(self.keys.outboxes[shard])
                pipe.get(self.keys.leases[shard])
            replies = await pipe.execute()
        out = []
        for shard in range(self.shards):
            length, holder = replies[2 * shard], replies[2 * shard + 1]
            holder = _b(holder) if holder is not None else None
            if length and shard not in owned and (holder is None or holder not in alive):
                out.append(shard)
        return out
