"""The hot path's own pipelined connection (lanes.py) against a real Redis: a
connection that breaks with calls in flight, a cancelled or timed-out call, a
server that forgot the scripts, many concurrent calls. In each case every call
must return its own thread's data (a reply handed to the wrong caller would
answer one thread with another's checkpoint). Tests that kill clients, flush
scripts or keep the server busy use a Redis of their own."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from redis.asyncio import Redis

from langgraph_hybrid_saver import AsyncHybridSaver, ServerUnreachableError

from .conftest import PrivateRedis, hybrid_saver
from .helpers import put_chain


@pytest.fixture
async def pg_saver(redis_url: str, pg_url: str, key_prefix: str) -> AsyncIterator[AsyncHybridSaver]:
    async with hybrid_saver(redis_url, pg_url, key_prefix, local_cache_bytes=0) as s:
        yield s


@pytest.fixture
async def own(
    private_redis: PrivateRedis, pg_url: str, key_prefix: str
) -> AsyncIterator[AsyncHybridSaver]:
    """A saver on a private Redis; every read goes to Redis (no local cache)."""
    async with hybrid_saver(private_redis.url, pg_url, key_prefix, local_cache_bytes=0) as s:
        yield s


# Keeps the server busy for ARGV[1] microseconds (DEBUG SLEEP is off by default).
BUSY = """
local t = redis.call('TIME')
local t0 = t[1] * 1000000 + t[2]
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - t0 > tonumber(ARGV[1])
"""


def busy(admin: Redis, seconds: float) -> asyncio.Task[object]:
    return asyncio.create_task(admin.eval(BUSY, 0, int(seconds * 1e6)))


async def latest(saver: AsyncHybridSaver, thread_id: str) -> str:
    tup = await saver.aget_tuple({"configurable": {"thread_id": thread_id}})
    assert tup is not None
    assert tup.config["configurable"]["thread_id"] == thread_id
    return str(tup.config["configurable"]["checkpoint_id"])


async def test_reads_and_writes_go_through_lanes(pg_saver: AsyncHybridSaver) -> None:
    lanes = pg_saver.hot.run.lanes
    assert lanes is not None
    [stored] = await put_chain(pg_saver, "t-lane", 1)
    assert lanes.pipe is not None and lanes.pipe.broken is None, "the write opened the pipe"
    assert await latest(pg_saver, "t-lane") == stored["configurable"]["checkpoint_id"]
    await pg_saver.aflush()  # the reconciler read the entry the lane wrote
    durable = await pg_saver.backend.get("t-lane", "", None)
    assert durable is not None and durable.checkpoint_id == stored["configurable"]["checkpoint_id"]


async def test_killed_lanes_are_replaced(
    own: AsyncHybridSaver, private_redis: PrivateRedis
) -> None:
    lanes = own.hot.run.lanes
    assert lanes is not None
    await put_chain(own, "t-kill", 2)
    before = lanes.pipe
    admin = Redis.from_url(private_redis.url)
    try:
        killed = await admin.client_kill_filter(_type="normal", skipme=True)
    finally:
        await admin.aclose()
    assert killed >= 1
    configs = await put_chain(own, "t-kill", 2)
    assert await latest(own, "t-kill") == configs[-1]["configurable"]["checkpoint_id"]
    assert lanes.pipe is not before and before is not None and before.broken, "reused a dead pipe"


async def test_scripts_are_reloaded_after_script_flush(own: AsyncHybridSaver) -> None:
    await put_chain(own, "t-flush", 1)
    await own.hot.redis.script_flush()  # what a restarted server knows
    [stored] = await put_chain(own, "t-flush2", 1)
    assert await latest(own, "t-flush2") == stored["configurable"]["checkpoint_id"]


async def test_a_cancelled_call_does_not_leave_its_reply_to_the_next(
    own: AsyncHybridSaver, private_redis: PrivateRedis
) -> None:
    a = (await put_chain(own, "t-a", 1))[0]["configurable"]["checkpoint_id"]
    b = (await put_chain(own, "t-b", 1))[0]["configurable"]["checkpoint_id"]
    assert await latest(own, "t-a") == a  # the get script is loaded: no NOSCRIPT below
    admin = Redis.from_url(private_redis.url)
    try:
        sleeper = busy(admin, 0.4)
        await asyncio.sleep(0.05)  # the server is busy: the next call waits for its reply
        reading = asyncio.create_task(latest(own, "t-a"))
        await asyncio.sleep(0.05)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        await sleeper
    finally:
        await admin.aclose()
    # t-a's reply arrives after the cancel; a reused lane would answer t-b with it.
    assert await latest(own, "t-b") == b
    assert await latest(own, "t-a") == a


async def test_a_timed_out_call_is_a_typed_error_and_the_next_call_is_clean(
    private_redis: PrivateRedis, pg_url: str, key_prefix: str
) -> None:
    redis_url = private_redis.url
    redis = Redis.from_url(redis_url, socket_timeout=0.15)
    from langgraph_hybrid_saver import open_backend

    backend = open_backend(pg_url)
    await backend.open()
    saver = AsyncHybridSaver(redis, backend, key_prefix=key_prefix, local_cache_bytes=0)
    admin = Redis.from_url(redis_url)
    try:
        await saver.setup()
        a = (await put_chain(saver, "t-slow-a", 1))[0]["configurable"]["checkpoint_id"]
        b = (await put_chain(saver, "t-slow-b", 1))[0]["configurable"]["checkpoint_id"]
        assert await latest(saver, "t-slow-a") == a  # the get script is loaded
        sleeper = busy(admin, 0.5)
        await asyncio.sleep(0.05)
        with pytest.raises(ServerUnreachableError, match="unreachable"):
            await latest(saver, "t-slow-a")
        await sleeper
        assert await latest(saver, "t-slow-b") == b
        assert await latest(saver, "t-slow-a") == a
    finally:
        await admin.aclose()
        await saver.aclose()
        await backend.close()
        await redis.aclose()


class CountingWrites:
    """A transport that counts the writes the pipe makes."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


async def test_concurrent_calls_share_one_connection_and_its_writes(
    pg_saver: AsyncHybridSaver,
) -> None:
    lanes = pg_saver.hot.run.lanes
    assert lanes is not None
    await put_chain(pg_saver, "t-conc-warm", 1)
    pipe = lanes.pipe
    assert pipe is not None
    counting = CountingWrites(pipe.transport)
    pipe.transport = counting
    threads = [f"t-conc-{uuid.uuid4().hex[:6]}" for _ in range(24)]
    chains = await asyncio.gather(*(put_chain(pg_saver, t, 3) for t in threads))
    heads = await asyncio.gather(*(latest(pg_saver, t) for t in threads))
    assert heads == [c[-1]["configurable"]["checkpoint_id"] for c in chains]
    assert lanes.pipe is pipe, "every call went through the one connection"
    # 24 x (3 puts + 3 put_writes + 1 read) calls; calls made in the same turn
    # of the loop share a write.
    assert counting.writes < 24 * 7 / 2, counting.writes


async def test_a_connection_that_breaks_fails_every_waiting_call_over_to_redis_py(
    own: AsyncHybridSaver, private_redis: PrivateRedis
) -> None:
    threads = [f"t-break-{i}" for i in range(6)]
    heads = [(await put_chain(own, t, 1))[0]["configurable"]["checkpoint_id"] for t in threads]
    lanes = own.hot.run.lanes
    assert lanes is not None and lanes.pipe is not None
    pipe = lanes.pipe
    admin = Redis.from_url(private_redis.url)
    try:
        sleeper = busy(admin, 0.3)
        await asyncio.sleep(0.05)  # the server is busy: the reads below wait in the pipe
        reads = [asyncio.create_task(latest(own, t)) for t in threads]
        await asyncio.sleep(0.05)
        assert len(pipe.waiting) == len(threads)
        pipe.transport.abort()  # the connection drops with six replies outstanding
        # Each one runs again through redis-py (a waiting call left unfailed would hang).
        assert await asyncio.wait_for(asyncio.gather(*reads), 10) == heads
        await sleeper
    finally:
        await admin.aclose()
    assert pipe.broken and not pipe.waiting
    assert await latest(own, threads[0]) == heads[0]
    assert lanes.pipe is not pipe, "the next call opened a new connection"


async def test_a_redis_py_without_streams_turns_lanes_off(
    pg_saver: AsyncHybridSaver, monkeypatch: pytest.MonkeyPatch
) -> None:
    class NoStreams:  # a connection class of some other redis-py version
        async def connect(self) -> None: ...
        async def disconnect(self, nowait: bool = False) -> None: ...

    hot = pg_saver.hot
    assert hot.run.lanes is not None
    hot.run.lanes.pipe = None
    monkeypatch.setattr(hot.run.lanes, "pool", SimpleNamespace(make_connection=NoStreams))
    [stored] = await put_chain(pg_saver, "t-nostreams", 1)
    assert hot.run.lanes is None, "lanes stay off instead of failing on every call"
    assert await latest(pg_saver, "t-nostreams") == stored["configurable"]["checkpoint_id"]


async def test_a_redis_restart_is_one_typed_error_then_reads_go_on(
    pg_url: str, key_prefix: str, private_redis: PrivateRedis
) -> None:
    saver = await AsyncHybridSaver.open(private_redis.url, pg_url, key_prefix=key_prefix)
    try:
        [stored] = await put_chain(saver, "t-down", 1)
        await saver.aflush()  # durable: the restarted (empty) Redis reads it through
        assert saver.hot.run.lanes is not None and saver.hot.run.lanes.pipe is not None
        private_redis.stop()
        with pytest.raises(ServerUnreachableError, match="unreachable"):
            await latest(saver, "t-down")
        private_redis.start()
        assert await latest(saver, "t-down") == stored["configurable"]["checkpoint_id"]
    finally:
        await saver.aclose()


async def test_a_resp3_client_reads_the_same(redis_url: str, pg_url: str, key_prefix: str) -> None:
    async with hybrid_saver(f"{redis_url}?protocol=3", pg_url, key_prefix) as saver:
        assert saver.hot.run.lanes is not None
        configs = await put_chain(saver, "t-resp", 3)
        assert await latest(saver, "t-resp") == configs[-1]["configurable"]["checkpoint_id"]
        listed = [t.config async for t in saver.alist({"configurable": {"thread_id": "t-resp"}})]
        assert [c["configurable"]["checkpoint_id"] for c in listed] == [
            c["configurable"]["checkpoint_id"] for c in configs[::-1]
        ]


async def test_a_unix_socket_server_gets_the_same_pipelined_connection(
    tmp_path: Path, pg_url: str, key_prefix: str
) -> None:
    sock_dir = Path(tempfile.mkdtemp(prefix="lhs-", dir="/tmp"))  # sun_path holds 107 bytes
    sock = sock_dir / "redis.sock"
    server = PrivateRedis(tmp_path, None, "--unixsocket", str(sock), "--unixsocketperm", "700")
    server.start()
    try:
        async with hybrid_saver(f"unix://{sock}?db=0", pg_url, key_prefix) as saver:
            lanes = saver.hot.run.lanes
            assert lanes is not None
            threads = [f"t-unix-{i}" for i in range(8)]
            chains = await asyncio.gather(*(put_chain(saver, t, 2) for t in threads))
            heads = await asyncio.gather(*(latest(saver, t) for t in threads))
            assert heads == [c[-1]["configurable"]["checkpoint_id"] for c in chains]
            assert lanes.pipe is not None and lanes.pipe.broken is None
            assert lanes.pipe.transport.get_extra_info("peername") == str(sock)
            await saver.aflush()
            durable = await saver.backend.get(threads[0], "", None)
            assert durable is not None and durable.checkpoint_id == heads[0]
    finally:
        server.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)
