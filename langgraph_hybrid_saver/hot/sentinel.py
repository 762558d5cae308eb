"""Redis behind Sentinel: the `redis+sentinel://` URL and its client.

    redis+sentinel://[user:password@]host1:port1[,host2:port2,...]/service_name[/db]
        [?sentinel_username=...&sentinel_password=...&ssl=true&ssl_ca_certs=...]

The user and password are the Redis servers'; `sentinel_username` and
`sentinel_password` are the sentinels' own (Sentinel's `requirepass`).
`rediss+sentinel://` (or `ssl=true`) speaks TLS to the servers and the
sentinels alike; `socket_timeout` and `socket_connect_timeout` apply to
both (a sentinel gets 1 s by default, then the next one is asked).

The client is redis-py's: its pool asks the sentinels for the primary's
address whenever it opens a connection, so after a failover
new connections (the saver's lane included) go to the promoted replica, and
a connection still on a demoted primary (READONLY) is closed and retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from langgraph_hybrid_saver.backends import redact
from langgraph_hybrid_saver.errors import ConfigError

SCHEMES = ("redis+sentinel://", "rediss+sentinel://")
EXAMPLE = "redis+sentinel://:password@127.0.0.1:26379,127.0.0.1:26380/mymaster/0"
DEFAULT_PORT = 26379
SENTINEL_TIMEOUT = 1.0  # seconds, per sentinel asked (unless the URL sets socket_timeout)
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
# Query options: the sentinels' credentials, and TLS (to servers and sentinels).
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
_TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
_FLOAT_OPTIONS = ("socket_timeout", "socket_connect_timeout")


@dataclass
class SentinelTarget:
    """What a `redis+sentinel://` URL names."""

    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_kwargs: dict[str, Any] = field(default_factory=dict)
    server_kwargs: dict[str, Any] = field(default_factory=dict)


def _bad(url: str, why: str) -> ConfigError:
    return ConfigError(
        f"redis_url {redact(url)!r} is not a Sentinel URL ({why}): use e.g. {EXAMPLE}"
    )


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The sentinels, service, db, credentials and options of `url`."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    sentinels = []
    for hostport in hosts.split(","):
        host, colon, port = hostport.strip().rpartition(":")
        if not colon:
            host, port = hostport.strip(), str(DEFAULT_PORT)
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise _bad(url, f"sentinel address {hostport!r} is not host:port")
        sentinels.append((host, int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise _bad(url, "the path must be /service_name or /service_name/db")
    if len(path) == 2 and not path[1].isdigit():
        raise _bad(url, f"db {path[1]!r} is not a number")
    target = SentinelTarget(
        sentinels,
        unquote(path[0]),
        int(path[1]) if len(path) == 2 else 0,
        unquote(user) or None,
        unquote(password) if userinfo else None,
    )
    tls = parts.scheme == "rediss+sentinel"
    known = (*_SENTINEL_OPTIONS, *_TLS_OPTIONS, *_FLOAT_OPTIONS, "ssl")
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in _SENTINEL_OPTIONS:
            target.sentinel_kwargs[name.removeprefix("sentinel_")] = value
        elif name == "ssl":
            if value.lower() not in (*_TRUE, *_FALSE):
                raise _bad(url, f"ssl={value!r} is not true or false")
            tls = value.lower() in _TRUE
        elif name in _TLS_OPTIONS:
            target.server_kwargs[name] = value
        elif name in _FLOAT_OPTIONS:
            try:
                target.server_kwargs[name] = float(value)
            except ValueError:
                raise _bad(url, f"{name}={value!r} is not a number of seconds") from None
        else:
            raise _bad(url, f"unknown option {name!r}; known: {', '.join(known)}")
    if tls:
        target.server_kwargs["ssl"] = True
    elif any(k in target.server_kwargs for k in _TLS_OPTIONS):
        raise _bad(url, "ssl_* options need rediss+sentinel:// or ssl=true")
    tls_kwargs = {k: v for k, v in target.server_kwargs.items() if k in (*_TLS_OPTIONS, "ssl")}
    timeouts = {k: v for k, v in target.server_kwargs.items() if k in _FLOAT_OPTIONS}
    target.sentinel_kwargs |= tls_kwargs | timeouts
    return target


class SentinelRedis(Redis):
    """A client of the primary a Sentinel group names; closing it also
    closes its connections to the sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        await super().aclose(close_connection_pool)
        for sentinel in getattr(manager, "sentinels", ()):
            await sentinel.aclose()


def open_sentinel(url: str, **kwargs: Any) -> SentinelRedis:
    """A bytes-mode client of the primary of the service `url` names (not
    connected yet: the first command asks the sentinels)."""
    target = parse_sentinel_url(url)
    # One try per sentinel and a short timeout: asking for the primary goes
    # on to the next sentinel, and the connection's own retry asks again.
    sentinel_kwargs: dict[str, Any] = {
        "decode_responses": False,
        "retry": Retry(NoBackoff(), 0),
        "socket_timeout": SENTINEL_TIMEOUT,
        "socket_connect_timeout": SENTINEL_TIMEOUT,
        **target.sentinel_kwargs,
    }
    sentinel: Any = Sentinel  # typed from redis-py 8.2 on, untyped before
    manager = sentinel(target.sentinels, sentinel_kwargs=sentinel_kwargs)
    client: SentinelRedis = manager.master_for(
        target.service,
        redis_class=SentinelRedis,
        db=target.db,
        username=target.username,
        password=target.password,
        decode_responses=False,
        **(target.server_kwargs | kwargs),
    )
    return client
