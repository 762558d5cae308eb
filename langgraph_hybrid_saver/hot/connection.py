"""The Redis connection of the hot-path scripts, outside redis-py's command layer.

Every saver call is one EVALSHA. Through `redis.asyncio.Redis`, each one also
passes the client's per-command layers (retry wrapper, observability hooks,
the pool's lock and counters, a pure-Python command packer, a timeout
context per read); this connection skips them (measured in
benchmarks/results/experiments/lanes.md).

`Lanes` is one connection that redis-py opened (so TLS, AUTH, SELECT and
HELLO are redis-py's) carrying every call of the saver's event loop,
pipelined: a command is packed by hiredis (in C) and written at once when no
other call is waiting for its reply; else it waits for the end of the
loop's turn and goes out in one write with every other command of that
turn. Replies arrive in order, are parsed by a hiredis reader as they come
in (the connection's protocol: no reader task) and handed to their callers.
With many calls in flight they share writes, reads and the server's read
events, so Redis spends less CPU per call than with a connection per call in
flight, and a process holds one connection
(benchmarks/results/experiments/pipelining.md).

A cancelled caller keeps its place in the queue: its reply is read and
dropped. A reply later than `socket_timeout` (one timer per connection, on
the oldest reply outstanding, instead of a timer per call), a closed
connection or bytes that are not RESP close the connection and fail every
call waiting on it with `LaneBroken`; each caller runs its command again
through redis-py with its retry policy, as redis-py's own retry would have.
The next call opens a new connection. Opening is redis-py's `connect()`, with its retries: its
errors are redis-py's, raised as they are. A READONLY reply means a failover
demoted the server to a replica: the lane is closed the same way and the
call raises `LaneBroken`, so it runs again on a new connection, which the
pool opens to the new primary (by Sentinel, or by DNS on a managed service).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from redis._parsers.base import BaseParser
from redis.exceptions import ReadOnlyError

try:
    import hiredis
except ImportError:  # a core dependency; without it every call goes through redis-py
    hiredis = None  # type: ignore[assignment]


class LaneBroken(Exception):
    """The connection failed before the call's reply was read (it is closed);
    `unsupported`: this redis-py's connections cannot be used at all."""

    def __init__(self, message: str, *, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported


def raise_queued(replies: list[Any]) -> Any:
    """EXEC's reply, from the replies of MULTI, the queued commands and
    EXEC; the first error, if a command was refused when queued."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies[-1]


def _demoted(pipe: _Pipe) -> LaneBroken:
    """Close a lane whose server answered READONLY (a failover demoted it)."""
    reason = "READONLY: the server is a replica now (a failover demoted it)"
    pipe.close(reason)
    return LaneBroken(reason)


class _Pipe(asyncio.Protocol):
    """The protocol of an open connection: calls in order, replies in order."""

    def __init__(self, conn: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.conn = conn
        self.loop = loop
        self.transport = conn._writer.transport
        self.streams = self.transport.get_protocol()  # redis-py's; told when it closes
        self.reader = hiredis.Reader(replyError=BaseParser.parse_error)  # bytes (HotTier's check)
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()  # (reply, deadline)
        self.pending: list[bytes] | None = None  # written at the end of this turn
        self.broken: str | None = None
        self.on_close: Callable[[], None] | None = None  # told once when it breaks
        self.timeout: float | None = conn.socket_timeout
        self.timer: asyncio.TimerHandle | None = None
        leftover = bytes(getattr(conn._reader, "_buffer", b""))
        self.transport.set_protocol(self)
        if leftover:
            self.data_received(leftover)

    def send(self, command: bytes, replies: int = 1) -> list[asyncio.Future[Any]]:
        """Write `command` (packed; it may hold several commands, `replies`
        of them) and return a future for each of their replies."""
        if self.broken is not None:
            raise LaneBroken(self.broken)
        if self.pending is not None:
            self.pending.append(command)
        elif self.waiting:  # calls in flight: more may come this turn, write them together
            self.pending = [command]
            self.loop.call_soon(self._flush)
        else:  # nothing in flight: no wait
            self.transport.write(command)
        deadline = 0.0 if self.timeout is None else self.loop.time() + self.timeout
        if self.timeout is not None and self.timer is None:
            self.timer = self.loop.call_at(deadline, self._check_deadline)
        futures = [self.loop.create_future() for _ in range(replies)]
        self.waiting.extend((f, deadline) for f in futures)
        return futures

    def _check_deadline(self) -> None:
        """Close if the oldest reply outstanding is late, else look again
        when it will be (replies come in order: a late one holds up the rest)."""
        self.timer = None
        if self.waiting and self.broken is None:
            deadline = self.waiting[0][1]
            if self.loop.time() >= deadline:
                self.close(f"Timeout: no reply within socket_timeout={self.timeout}s")
            else:
                self.timer = self.loop.call_at(deadline, self._check_deadline)

    def _flush(self) -> None:
        pending, self.pending = self.pending, None
        if pending and self.broken is None:
            self.transport.write(b"".join(pending))

    def data_received(self, data: bytes) -> None:
        try:
            self.reader.feed(data)
            while (reply := self.reader.gets()) is not False:
                waiter, _ = self.waiting.popleft()  # IndexError: a reply nobody asked for
                if not waiter.done():  # else its caller was cancelled
                    waiter.set_result(reply)
        except Exception as e:  # hiredis.ProtocolError, IndexError
            self.close(f"unreadable reply from Redis: {type(e).__name__}: {e}")

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(f"Redis closed the connection ({exc or 'EOF'})")
        self.streams.connection_lost(exc)

    def close(self, reason: str) -> None:
        if self.broken is None:
            self.broken = reason
            self.transport.close()
            if self.on_close is not None:
                self.on_close()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        waiting, self.waiting = self.waiting, deque()
        for waiter, _ in waiting:
            if not waiter.done():
                waiter.set_exception(LaneBroken(reason))


class Lanes:
    """The pipelined connection of one `redis.asyncio.Redis` client's server."""

    def __init__(self, redis: Any) -> None:
        self.pool = redis.connection_pool
        self.pipe: _Pipe | None = None
        self._opening = asyncio.Lock()
        # Called with each new connection before any call uses it, and when
        # it breaks (the local cache turns client tracking on there).
        self.on_open: Callable[[_Pipe], None] | None = None
        self.on_close: Callable[[], None] | None = None

    @staticmethod
    def usable(redis: Any) -> bool:
        """Needs hiredis and a pooled, non-cluster client."""
        return (
            hiredis is not None
            and getattr(redis, "connection_pool", None) is not None
            and getattr(redis, "connection", None) is None
        )

    async def _open(self) -> _Pipe:
        async with self._opening:  # concurrent first calls share one connection
            if self.pipe is None or self.pipe.broken is not None:
                if self.pipe is not None:
                    await self.pipe.conn.disconnect(nowait=True)
                self.pipe = None
                conn = self.pool.make_connection()
                await conn.connect()
                if getattr(conn, "_reader", None) is None or getattr(conn, "_writer", None) is None:
                    await conn.disconnect()
                    raise LaneBroken("redis-py's connections expose no streams", unsupported=True)
                self.pipe = _Pipe(conn, asyncio.get_running_loop())
                self.pipe.on_close = self.on_close
                if self.on_open is not None:
                    self.on_open(self.pipe)
            return self.pipe

    async def connection(self) -> _Pipe:
        """The open connection (a new one when there is none or it broke)."""
        pipe = self.pipe
        if pipe is None or pipe.broken is not None:
            pipe = await self._open()
        return pipe

    async def call(self, *args: Any) -> Any:
        """One command's reply; an error reply is raised as redis-py raises it."""
        pipe = await self.connection()
        reply = await pipe.send(hiredis.pack_command(args))[0]
        if isinstance(reply, Exception):
            raise _demoted(pipe) if isinstance(reply, ReadOnlyError) else reply
        return reply

    async def send(
        self, commands: Sequence[Sequence[Any]], then: Sequence[Sequence[Any]] = ()
    ) -> list[Any]:
        """`commands` in one write, on one connection, in order: their
        replies, an error reply as an exception object in its place; then,
        once those replies are in, `then` on the same connection (a broken
        one raises `LaneBroken`, never a new connection)."""
        pipe = await self.connection()
        replies = await self._exchange(pipe, commands)
        if then:
            replies += await self._exchange(pipe, then)
        return replies

    async def _exchange(self, pipe: _Pipe, commands: Sequence[Sequence[Any]]) -> list[Any]:
        packed = b"".join(hiredis.pack_command(tuple(c)) for c in commands)
        replies: list[Any] = await asyncio.gather(
            *pipe.send(packed, len(commands)), return_exceptions=True
        )
        for reply in replies:  # LaneBroken first: the others are its echoes
            if isinstance(reply, LaneBroken):
                raise reply
        if any(isinstance(reply, ReadOnlyError) for reply in replies):
            raise _demoted(pipe)
        return replies

    async def aclose(self) -> None:
        pipe, self.pipe = self.pipe, None
        if pipe is not None:
            pipe.close("closed")
            await pipe.conn.disconnect()
