"""The saver for LangGraph Agent Server, configured from the environment.

`langgraph.json`::

    "checkpointer": {"path": "langgraph_hybrid_saver.agent_server.checkpointer"}

The server imports `checkpointer` (a dotted path: the server splits it at the
last dot), calls it with no arguments and enters the async context manager it
returns once per event loop; the saver is opened, set up and, on shutdown,
drained and closed. Every setting comes from a `HYBRID_SAVER_*` variable
(`VARIABLES`); a missing or bad one raises `ConfigError` naming it before any
connection is made. An empty variable counts as unset, as in the CLI.

Inside the server the saver serializes with the server's own `Serializer`, so
`langgraph.json`'s `checkpointer.serde` (`allowed_json_modules`,
`pickle_fallback`) applies to it as to the built-in checkpointer.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from langgraph.checkpoint.serde.base import SerializerProtocol

from langgraph_hybrid_saver.errors import ConfigError
from langgraph_hybrid_saver.saver import AsyncHybridSaver

__all__ = ["VARIABLES", "checkpointer", "options_from_env"]

ENV_REDIS = "HYBRID_SAVER_REDIS_URL"
ENV_DURABLE = "HYBRID_SAVER_DURABLE_URL"
ENV_PREFIX = "HYBRID_SAVER_KEY_PREFIX"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_NONE = "none"

Parser = Callable[[str, str], Any]


def _bad(name: str, raw: str, want: str) -> ConfigError:
    return ConfigError(f"{name}={raw!r}: {want}; fix or unset the variable")


def _text(name: str, raw: str) -> str:
    return raw


def _bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise _bad(name, raw, f"use one of {', '.join(_TRUE + _FALSE)}")


def _int(least: int, nullable: bool = False) -> Parser:
    def parse(name: str, raw: str) -> int | None:
        text = raw.strip()
        if nullable and text.lower() == _NONE:
            return None
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            none = " or 'none'" if nullable else ""
            raise _bad(name, raw, f"use a whole number >= {least}{none}")
        return value

    return parse


def _seconds(nullable: bool) -> Parser:
    def parse(name: str, raw: str) -> float | None:
        text = raw.strip()
        if nullable and text.lower() == _NONE:
            return None
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            none = " or 'none'" if nullable else ""
            raise _bad(name, raw, f"use a number of seconds > 0{none}")
        return value

    return parse


def _choice(*allowed: str) -> Parser:
    def parse(name: str, raw: str) -> str:
        value = raw.strip()
        if value not in allowed:
            raise _bad(name, raw, f"use one of {', '.join(allowed)}")
        return value

    return parse


# Variable -> (option of AsyncHybridSaver, parser). Unset variables leave the
# saver's own default; tests/test_agent_server.py checks that every option of
# `AsyncHybridSaver.__init__` but the objects (redis, backend, serde, loop) is here.
VARIABLES: dict[str, tuple[str, Parser]] = {
    ENV_PREFIX: ("key_prefix", _text),
    "HYBRID_SAVER_TTL": ("ttl", _seconds(nullable=True)),
    "HYBRID_SAVER_REFRESH_TTL_ON_READ": ("refresh_ttl_on_read", _bool),
    "HYBRID_SAVER_SHARDS": ("shards", _int(1)),
    "HYBRID_SAVER_RECONCILER": ("reconciler", _choice("in_process", "external")),
    "HYBRID_SAVER_RECONCILE_LINGER_MS": ("reconcile_linger_ms", _int(0)),
    "HYBRID_SAVER_DURABILITY": ("durability", _choice("write_behind", "write_through")),
    "HYBRID_SAVER_HOT_WINDOW": ("hot_window", _int(1, nullable=True)),
    "HYBRID_SAVER_MAX_BACKLOG": ("max_backlog", _int(1, nullable=True)),
    "HYBRID_SAVER_MAX_LAG_SECONDS": ("max_lag_seconds", _seconds(nullable=True)),
    "HYBRID_SAVER_ON_BACKLOG": ("on_backlog", _choice("write_through", "raise")),
    "HYBRID_SAVER_FLUSH_TIMEOUT": ("flush_timeout", _seconds(nullable=False)),
    "HYBRID_SAVER_DURABLE_TIMEOUT": ("durable_timeout", _seconds(nullable=False)),
    "HYBRID_SAVER_THREAD_INDEX": ("thread_index", _bool),
    "HYBRID_SAVER_REPLICAS_ACK": ("replicas_ack", _int(1, nullable=True)),
    "HYBRID_SAVER_REPLICAS_ACK_TIMEOUT": ("replicas_ack_timeout", _seconds(nullable=False)),
    "HYBRID_SAVER_REPLICAS_ACK_FSYNC": ("replicas_ack_fsync", _bool),
    "HYBRID_SAVER_COMPRESS_MIN_BYTES": ("compress_min_bytes", _int(1, nullable=True)),
    "HYBRID_SAVER_LOCAL_CACHE_BYTES": ("local_cache_bytes", _int(0, nullable=True)),
}


def options_from_env(environ: Mapping[str, str] | None = None) -> tuple[str, str, dict[str, Any]]:
    """Read the saver's settings from the environment.

    Args:
        environ: The variables to read (default `os.environ`).

    Returns:
        The Redis URL, the durable-store URL and the constructor options set.

    Raises:
        ConfigError: A URL variable is missing, or a variable holds a value
            its option does not take; the message names the variable.
    """
    env = os.environ if environ is None else environ
    urls = []
    for name, example in (
        (ENV_REDIS, "redis://127.0.0.1:6379/0"),
        (ENV_DURABLE, "postgresql://user@host:5432/db"),
    ):
        url = env.get(name, "").strip()
        if not url:
            raise ConfigError(
                f"{name} is not set: the hybrid saver needs it (e.g. {name}={example}); "
                "set it in the server's environment or in langgraph.json's \"env\" file"
            )
        urls.append(url)
    options = {}
    for name, (option, parse) in VARIABLES.items():
        raw = env.get(name, "")
        if raw.strip():
            options[option] = parse(name, raw)
    return urls[0], urls[1], options


def _server_serde() -> SerializerProtocol | None:
    """The Agent Server's serializer (it reads langgraph.json's `serde`) when
    the server has loaded us, else None: the saver keeps its default."""
    if "langgraph_api" not in sys.modules:
        return None
    serde: SerializerProtocol = importlib.import_module("langgraph_api.serde").Serializer()
    return serde


@asynccontextmanager
async def checkpointer() -> AsyncIterator[AsyncHybridSaver]:
    """Open an `AsyncHybridSaver` configured from `HYBRID_SAVER_*` variables,
    set it up, and drain and close it on exit.

    Raises:
        ConfigError: A missing or bad variable (named), before any connection.
    """
    redis_url, durable_url, options = options_from_env()
    serde = _server_serde()
    if serde is not None:
        options["serde"] = serde
    async with AsyncHybridSaver.from_conn_string(redis_url, durable_url, **options) as saver:
        yield saver
