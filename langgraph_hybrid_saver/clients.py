"""Opening what a saver runs on: the Redis client and the durable backend
for two URLs, each closed again if the other fails to open."""

from __future__ import annotations

from langgraph.checkpoint.serde.base import SerializerProtocol
from redis.asyncio import Redis, RedisCluster

from langgraph_hybrid_saver.backends import DurableBackend, open_backend
from langgraph_hybrid_saver.hot.client import connect_redis


async def open_clients(
    redis_url: str, durable_url: str, serde: SerializerProtocol | None
) -> tuple[Redis | RedisCluster, DurableBackend]:
    """Connected clients for the URLs (closed again if either fails)."""
    backend = open_backend(durable_url, serde=serde)
    redis = await connect_redis(redis_url)
    try:
        await backend.open()
    except BaseException:
        await redis.aclose()
        raise
    return redis, backend
