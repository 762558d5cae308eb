"""Redis connections for the hot-path scripts, outside redis-py's command layer.

Every saver call is one EVALSHA. Through `redis.asyncio.Redis`, each one also
passes the client's per-command layers (retry wrapper, observability hooks,
the pool's lock and counters, a pure-Python command packer, a timeout
context per read): each op takes 1.19-1.35x as long through them
([lanes.md](../benchmarks/results/experiments/lanes.md)). A lane is a
connection that redis-py opened (so TLS, AUTH, SELECT and HELLO are
redis-py's), used by one call at a time: the command is packed by hiredis
(in C; redis-py's packer is Python), written to the connection's stream,
and the reply read by a hiredis reader of the lane's own, under one timer
(`socket_timeout`).

Anything but an error reply (a broken connection, a timeout, a cancelled
caller) closes the lane. A lane that broke raises `LaneBroken`, and the
caller runs the command again through redis-py with its retry policy, as
redis-py's own retry would have. Opening a lane is redis-py's `connect()`,
with its retries: its errors are redis-py's, raised as they are.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:
    import hiredis
except ImportError:  # a core dependency; without it every call goes through redis-py
    hiredis = None  # type: ignore[assignment]

# One timer per call (3.11+) is much cheaper than wait_for's task per read.
_timeout = asyncio.timeout if sys.version_info >= (3, 11) else None
MAX_IDLE = 64  # lanes kept open between calls; more are closed after use
READ_SIZE = 65536


class LaneBroken(Exception):
    """The lane failed before its reply was read (it is closed); `unsupported`:
    this redis-py's connections cannot be used as lanes at all."""

    def __init__(self, message: str, *, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported


class Lanes:
    """A free list of lanes on one `redis.asyncio.Redis` client's server."""

    def __init__(self, redis: Any) -> None:
        self.pool = redis.connection_pool
        self.idle: list[tuple[Any, Any]] = []

    @staticmethod
    def usable(redis: Any) -> bool:
        """Lanes need hiredis and a pooled, non-cluster client."""
        return (
            hiredis is not None
            and getattr(redis, "connection_pool", None) is not None
            and getattr(redis, "connection", None) is None
        )

    async def _open(self) -> tuple[Any, Any]:
        conn = self.pool.make_connection()
        await conn.connect()
        if getattr(conn, "_reader", None) is None or getattr(conn, "_writer", None) is None:
            await conn.disconnect()
            raise LaneBroken("this redis-py's connections expose no streams", unsupported=True)
        return conn, hiredis.Reader(replyError=BaseParser.parse_error)  # bytes (HotTier's check)

    async def call(self, *args: Any) -> Any:
        """One command's reply; an error reply is raised as redis-py raises it."""
        lane = self.idle.pop() if self.idle else await self._open()
        conn, reader = lane
        try:
            conn._writer.write(hiredis.pack_command(args))
            if _timeout is not None:
                async with _timeout(conn.socket_timeout):
                    reply = await self._reply(conn, reader)
            else:
                reply = await asyncio.wait_for(self._reply(conn, reader), conn.socket_timeout)
        except (RedisConnectionError, RedisTimeoutError, OSError) as e:  # OSError: TimeoutError
            await conn.disconnect(nowait=True)
            raise LaneBroken(f"{type(e).__name__}: {e}") from e
        except BaseException:  # cancelled: the reply may still come, so never reuse it
            await conn.disconnect(nowait=True)
            raise
        if len(self.idle) < MAX_IDLE:
            self.idle.append(lane)
        else:
            await conn.disconnect()
        if isinstance(reply, Exception):
            raise reply
        return reply

    @staticmethod
    async def _reply(conn: Any, reader: Any) -> Any:
        reply = reader.gets()
        while reply is False:
            data = await conn._reader.read(READ_SIZE)
            if not data:
                raise RedisConnectionError("Redis closed the connection")
            reader.feed(data)
            reply = reader.gets()
        return reply

    async def aclose(self) -> None:
        idle, self.idle = self.idle, []
        for conn, _ in idle:
            await conn.disconnect()
