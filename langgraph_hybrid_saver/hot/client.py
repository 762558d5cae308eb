"""Opening the Redis client for a URL: standalone, cluster or behind
Sentinel (hot/sentinel.py), checked, with typed errors for a malformed URL,
a missing database, refused credentials and an unreachable server."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError as RedisAuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from langgraph_hybrid_saver.backends import redact
from langgraph_hybrid_saver.errors import ConfigError, ServerUnreachableError
from langgraph_hybrid_saver.hot.sentinel import SCHEMES as SENTINEL_SCHEMES
from langgraph_hybrid_saver.hot.sentinel import open_sentinel


class HotCluster(RedisCluster):
    """redis-py's cluster client, but a command whose connection another task
    closed while it was being opened (redis-py drops a failed node's
    connections during a failover, in use or not) fails as a connection
    error, as the retry it is, not as the AttributeError redis-py raises."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except AttributeError as e:
            raise RedisConnectionError(
                f"a cluster connection was closed under {args[0]!r} ({e})"
            ) from e


async def connect_redis(url: str, **kwargs: Any) -> Redis | RedisCluster:
    """A bytes-mode asyncio client for `url`, checked with PING.

    A Redis Cluster node URL gives a cluster client (detected with INFO); a
    `redis+sentinel://` URL a client of the primary its sentinels name.
    """
    example = (
        "redis://127.0.0.1:6379/0 (rediss:// for TLS, unix:///path/redis.sock?db=0, "
        "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/0)"
    )
    schemes = ("redis://", "rediss://", "unix://", *SENTINEL_SCHEMES)
    if not isinstance(url, str) or not url.startswith(schemes):
        shown = redact(url) if isinstance(url, str) else url
        raise ConfigError(f"redis_url {shown!r} is not a Redis URL: use e.g. {example}")
    # Retrying is safe: every script is idempotent on the hot tier, and an
    # outbox entry written twice is applied twice with the same result. A
    # READONLY reply comes from a primary demoted by a failover: the retry
    # reconnects (by DNS or Sentinel) to the new one.
    kwargs.setdefault("retry", Retry(ExponentialBackoff(cap=1.0, base=0.05), 5))
    kwargs.setdefault("retry_on_error", [RedisConnectionError, RedisTimeoutError, ReadOnlyError])
    try:
        if url.startswith(SENTINEL_SCHEMES):
            client: Redis = open_sentinel(url, **kwargs)
        else:
            client = Redis.from_url(url, decode_responses=False, **kwargs)
    except ConfigError:  # a Sentinel URL's own check
        raise
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
    except RedisAuthenticationError as e:  # a setting to fix, not an outage
        await client.aclose()
        raise ConfigError(
            f"Redis at {redact(url)} refused the credentials ({type(e).__name__}): "
            "fix the password (or user) in redis_url"
        ) from e
    except MasterNotFoundError as e:
        await client.aclose()
        if "AuthenticationError" in str(e):  # a setting to fix, not an outage
            raise ConfigError(
                f"the sentinels of {redact(url)} refused the credentials: fix "
                "sentinel_password (or sentinel_username) in redis_url"
            ) from e
        raise ServerUnreachableError(
            f"no sentinel of {redact(url)} named a reachable primary ({e}): start the "
            "sentinels, check the service name, or fix redis_url"
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
    cluster: RedisCluster = HotCluster.from_url(url, decode_responses=False, **kwargs)
    await cluster.initialize()
    return cluster
