"""Running the hot tier's scripts: on a lane (connection.py) when there are
lanes, else through redis-py; under `replicas_ack` each write is followed by
its acknowledgement on the same connection (replicas.py).

A write whose large values go beside the script (`sets`) runs as plain SETs
to temporary keys, with a TTL in case the script fails before it takes them,
then the script, in one MULTI: values that never pass through Lua. The same
keys on a retry overwrite what a failed attempt set; when the call fails,
they are deleted (the script's own refusals have done so already; keys it
took are gone, so deleting them is harmless).

A write may carry a `stamp`: a plain command sent right after the script on
the same connection (the thread's stamp key, hot/local_cache.py). It is not
part of the script because Redis reports a key a script wrote to the
connection that ran it even under client tracking's NOLOOP.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError

from langgraph_hybrid_saver.hot.connection import LaneBroken, Lanes, raise_queued
from langgraph_hybrid_saver.hot.replicas import ReplicaAck

logger = logging.getLogger("langgraph_hybrid_saver.hot")

TEMP_TTL_MS = 600_000  # a temporary key the script did not consume (it crashed)


class ScriptRunner:
    """One client's script calls: `eval` for reads, `write` for writes."""

    def __init__(self, redis: Redis | RedisCluster, where: str) -> None:
        self.redis: Any = redis
        self.where = where  # host:port for error messages
        self.cluster = isinstance(redis, RedisCluster)
        self.lanes: Lanes | None = (
            Lanes(redis) if not self.cluster and Lanes.usable(redis) else None
        )
        self.ack: ReplicaAck | None = None  # replicas_ack: every write waits for replicas

    async def aclose(self) -> None:
        """Close the lanes' own connections (not the client)."""
        if self.lanes is not None:
            await self.lanes.aclose()

    def lane_failed(self, e: LaneBroken) -> None:
        """A lane that cannot work on this server stays off from now on."""
        if e.unsupported:
            self.lanes = None

    async def eval(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Run one registered script (scripts in a pipeline or on a cluster
        go through redis-py): on a lane when there are lanes, else (and when
        the lane fails or the server does not know the script yet) through
        redis-py, which loads it and retries by its policy."""
        if self.lanes is not None:
            try:
                return await self.lanes.call("EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:
                pass
            except LaneBroken as e:
                self.lane_failed(e)
        return await script(keys=keys, args=args)

    async def write(
        self,
        script: Any,
        keys: list[str],
        args: list[Any],
        what: str,
        sets: Sequence[tuple[str, bytes]] = (),
        stamp: Sequence[Any] = (),
    ) -> Any:
        """A write script (after plain SETs of `sets`, followed by `stamp`),
        acknowledged by replicas under `replicas_ack`; the script's reply."""
        if self.ack is None and not sets:
            return await self._script_then(script, keys, args, stamp)
        try:
            if self.ack is not None:
                return await self.ack.run(self, script, keys, args, sets, TEMP_TTL_MS, what, stamp)
            return await self._transaction(sets, script, keys, args, stamp)
        except Exception:
            if sets:
                try:
                    await self.redis.delete(*(k for k, _ in sets))
                except Exception:  # the TTL deletes them
                    logger.warning("could not delete the temporary keys of a failed put")
            raise

    async def _script_then(
        self, script: Any, keys: list[str], args: list[Any], stamp: Sequence[Any]
    ) -> Any:
        """`eval`, then `stamp` in the same network write."""
        if not stamp:
            return await self.eval(script, keys, args)
        if self.lanes is not None:
            try:
                evalsha = ("EVALSHA", script.sha, len(keys), *keys, *args)
                reply, stamped = await self.lanes.send([evalsha, stamp])
                if not isinstance(reply, NoScriptError):
                    return _checked(reply, stamped)
            except LaneBroken as e:
                self.lane_failed(e)
        reply = await script(keys=keys, args=args)
        await self.redis.execute_command(*stamp)
        return reply

    async def _transaction(
        self,
        sets: Sequence[tuple[str, bytes]],
        script: Any,
        keys: list[str],
        args: list[Any],
        stamp: Sequence[Any],
    ) -> Any:
        sets_cmds = [("SET", k, v, "PX", TEMP_TTL_MS) for k, v in sets]
        if self.lanes is not None:
            try:
                body = [*sets_cmds, ("EVALSHA", script.sha, len(keys), *keys, *args)]
                replies = await self.lanes.send(
                    [("MULTI",), *body, ("EXEC",), *([stamp] if stamp else [])]
                )
                *_, reply = raise_queued(replies[: len(body) + 2])
                return _checked(reply, replies[-1] if stamp else None)
            except NoScriptError:
                pass
            except LaneBroken as e:
                self.lane_failed(e)
        async with self.redis.pipeline(transaction=True) as pipe:
            for k, v in sets:
                pipe.set(k, v, px=TEMP_TTL_MS)
            await script(keys=keys, args=args, client=pipe)
            replies = await pipe.execute(raise_on_error=False)  # errors as the server said them
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        if stamp:
            await self.redis.execute_command(*stamp)
        return replies[-1]


def _checked(reply: Any, stamped: Any) -> Any:
    """The script's reply; its error or the stamp's raised (a write the
    other processes' caches did not hear of is not reported done)."""
    if isinstance(reply, Exception):
        raise reply
    if isinstance(stamped, Exception):
        raise stamped
    return reply
