"""Opening the Redis client for a URL: standalone or cluster, checked, with
typed errors for a malformed URL, a missing database, refused credentials
and an unreachable server."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError as RedisAuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from langgraph_hybrid_saver.backends import redact
from langgraph_hybrid_saver.errors import ConfigError, ServerUnreachableError


async def connect_redis(url: str, **kwargs: Any) -> Redis | RedisCluster:
    """A bytes-mode asyncio client for `url`, checked with PING.

    A Redis Cluster node URL gives a cluster client (detected with INFO).
    """
    example = "redis://127.0.0.1:6379/0 (rediss:// for TLS, unix:///path/redis.sock?db=0)"
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
        shown = redact(url) if isinstance(url, str) else url
        raise ConfigError(f"redis_url {shown!r} is not a Redis URL: use e.g. {example}")
    # Retrying is safe: every script is idempotent on the hot tier, and an
    # outbox entry written twice is applied twice with the same result.
    kwargs.setdefault("retry", Retry(ExponentialBackoff(cap=1.0, base=0.05), 5))
    kwargs.setdefault("retry_on_error", [RedisConnectionError, RedisTimeoutError])
    try:
        client: Redis = Redis.from_url(url, decode_responses=False, **kwargs)
    except ValueError as e:  # a port or db that is not a number, an unknown option
        raise ConfigError(
            f"redis_url {redact(url)!r} is malformed ({e}): use e.g. {example}"
        ) from e
    try:
        info = await client.info("cluster")
    except ResponseError as e:
        await client.aclose()
        if "DB index is out of range" not in str(e):
            raise
        raise ConfigError(
            f"redis_url {redact(url)!r} names a database this server does not have ({e}): "
            f"use a db number below its `databases` setting (16 by default), e.g. {example}"
        ) from e
    except RedisAuthenticationError as e:
        await client.aclose()
        raise ServerUnreachableError(
            f"Redis at {redact(url)} refused the credentials ({type(e).__name__}): "
            "fix the password (or user) in redis_url"
        ) from e
    except (RedisConnectionError, RedisTimeoutError, OSError) as e:
        await client.aclose()
        raise ServerUnreachableError(
            f"Redis at {redact(url)} is unreachable ({type(e).__name__}): start it or fix redis_url"
        ) from e
    if not info.get("cluster_enabled"):
        return client
    await client.aclose()
    kwargs.pop("retry_on_error")
    cluster: RedisCluster = RedisCluster.from_url(url, decode_responses=False, **kwargs)
    await cluster.initialize()
    return cluster
