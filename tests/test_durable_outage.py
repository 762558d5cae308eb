"""A durable-store outage: hot threads keep working; a read that needs the
store fails within `durable_timeout` with `ServerUnreachableError`."""

from __future__ import annotations

import time
import uuid

import pytest
from langgraph.checkpoint.conformance.test_utils import generate_config

from langgraph_hybrid_saver import ServerUnreachableError
from langgraph_hybrid_saver.core import ListQuery
from scripts.servers import PostgresCluster

from .conftest import hybrid_saver
from .helpers import put_chain


async def test_a_read_that_needs_a_stopped_store_fails_fast_hot_threads_go_on(
    throwaway_pg: PostgresCluster, redis_url: str, key_prefix: str
) -> None:
    url = throwaway_pg.schema_url(f"s_{uuid.uuid4().hex[:8]}")
    async with hybrid_saver(redis_url, url, key_prefix, durable_timeout=2.0) as saver:
        hot_tid, cold_tid, new_tid = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
        hot = await put_chain(saver, hot_tid, 2)
        cold = await put_chain(saver, cold_tid, 1)
        await saver.aflush(timeout=10)
        # The cold thread's hot copy expires: only the durable store has it.
        keys = [k async for k in saver.hot.redis.scan_iter(f"{saver.hot.base(cold_tid)}*")]
        await saver.hot.redis.delete(*keys)
        throwaway_pg.stop()
        try:
            # Hot in Redis: reads and writes need nothing from the store.
            latest = await saver.aget_tuple(generate_config(hot_tid))
            assert latest is not None and latest.config == hot[-1]
            await put_chain(saver, hot_tid, 1)
            # A thread Redis does not hold needs the store: a typed error, soon.
            started = time.monotonic()
            with pytest.raises(ServerUnreachableError) as raised:
                await saver.aget_tuple(generate_config(cold_tid))
            took = time.monotonic() - started
            assert took < 4.0, f"the read took {took:.1f}s with durable_timeout=2"
            message = str(raised.value)
            assert f"127.0.0.1:{throwaway_pg.port}" in message
            assert "durable_timeout=2.0" in message or "OperationalError" in message
            with pytest.raises(ServerUnreachableError):
                [t async for t in saver.alist(generate_config(cold_tid))]
            # A thread in neither tier: the thread index answers, not the store.
            assert await saver.aget_tuple(generate_config(new_tid)) is None
        finally:
            throwaway_pg.start()
        # Back: the backlog drains and the cold thread reads through.
        await saver.aflush(timeout=30)
        got = await saver.aget_tuple(generate_config(cold_tid))
        assert got is not None and got.config == cold[-1]
        assert len(await saver.backend.list(ListQuery(hot_tid, None, None, None, None, None))) == 3
