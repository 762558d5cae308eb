"""Durable stores behind the hot tier: `open_backend` picks one by URL, and
the helpers every backend and the reconciler share tell a refused entry
from an outage (`refused`, `unavailable`, `reason`) and keep passwords out
of messages (`redact`).

A backend stores and fetches rows; the LangGraph contract lives in
`langgraph_hybrid_saver.core`, the protocol in `backends/protocol.py`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from langgraph.checkpoint.serde.base import SerializerProtocol

from langgraph_hybrid_saver.backends.protocol import DurableBackend
from langgraph_hybrid_saver.errors import ConfigError, MissingExtraError

PRUNE_STRATEGIES = ("keep_latest", "delete")


# Driver errors that mean "this data cannot be stored" rather than "the store
# is unavailable", by class name along the exception's MRO: PostgreSQL's data
# and limit classes (SQLSTATE 22, 23, 54), sqlite3's, and Python's own encoding
# and range errors. Cosmos DB's are told by HTTP status (REFUSED_STATUS).
REFUSED_ERRORS = frozenset(
    {
        "DataError",  # psycopg (22xxx), sqlite3
        "IntegrityError",  # psycopg (23xxx), sqlite3
        "ProgramLimitExceeded",  # psycopg (54xxx): e.g. an index row too large
        "UnicodeError",
        "OverflowError",
        "SerializationError",  # this package: the backend cannot encode a value
        "CorruptDataError",  # this package: the backend cannot decode or assemble it
    }
)
REFUSED_STATUS = frozenset({400, 413})  # Cosmos DB: bad request, entity too large


def refused(exc: BaseException) -> bool:
    """Whether a failed apply was refused for its data (retrying cannot help:
    the entry is dead-lettered) rather than by an outage (retried)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if any(c.__name__ in REFUSED_ERRORS for c in type(e).__mro__):
            return True
        if getattr(e, "status_code", None) in REFUSED_STATUS:
            return True
        e = e.__cause__
    return False


# Errors that mean the store is unavailable (down, unreachable, overloaded).
UNAVAILABLE_ERRORS = frozenset(
    {
        "OperationalError",  # psycopg (incl. its pool's PoolTimeout), sqlite3
        "ServiceRequestError",  # azure-core: the request never got an answer
        "ServiceResponseError",
        "ClientError",  # aiohttp
    }
)


def unavailable(exc: BaseException) -> bool:
    """Whether an error says the durable store is down or unreachable."""
    if isinstance(exc, (OSError, TimeoutError)):
        return True
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and (status in (408, 429) or status >= 500):
        return True
    return any(c.__name__ in UNAVAILABLE_ERRORS for c in type(exc).__mro__)


def reason(exc: BaseException, limit: int = 500) -> str:
    """A one-line reason for a dead letter."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def redact(url: str) -> str:
    """scheme://host:port/path of a URL, never its user, password or query
    (which may hold one); a URL without
    a host (a file, a socket, not a URL at all) as given, credentials masked."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        shown = url.partition("?")[0] if parts.scheme else url
        return re.sub(r"[^/@]*@", "***@", shown)
    host = parts.hostname or "localhost"
    if ":" in host:  # IPv6
        host = f"[{host}]"
    hostport = parts.netloc.rpartition("@")[2]
    port = hostport.rpartition("]")[2].partition(":")[2]
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "") + parts.path


@contextmanager
def _extra(backend: str, packages: str, extra: str) -> Iterator[None]:
    """Imports of a backend's package: a missing dependency is a
    `MissingExtraError` naming the extra that installs it."""
    try:
        yield
    except ImportError as e:
        raise MissingExtraError(
            f"the {backend} backend needs {packages}: pip install 'langgraph-hybrid-saver[{extra}]'"
        ) from e


def open_backend(
    url: str, *, serde: SerializerProtocol | None = None, **options: Any
) -> DurableBackend:
    """A backend for a durable URL, chosen by its scheme.

    Args:
        url: `postgresql://user@host:5432/dbname`, `sqlite:///relative/file.db`,
            `sqlite:////absolute/file.db` or
            `cosmos+https://HOST:PORT/?database=NAME[&container=NAME][&verify=false]`
            (Cosmos key from `COSMOS_KEY` or `credential=`).
        serde: The saver's serializer. SQLite stores whole serialized
            checkpoints (as the official saver does) and needs it; PostgreSQL
            and Cosmos DB store the blobs as they come and do not.
        **options: Options of the backend's `from_url`.
    """
    scheme = urlsplit(url).scheme.lower() if isinstance(url, str) else ""
    if scheme in ("postgresql", "postgres"):
        with _extra("PostgreSQL", "psycopg", "postgres"):
            from langgraph_hybrid_saver.backends.postgres import PostgresBackend
        return PostgresBackend.from_url(url, **options)
    if scheme == "sqlite":
        with _extra("SQLite", "aiosqlite", "sqlite"):
            from langgraph_hybrid_saver.backends.sqlite import SqliteBackend
        return SqliteBackend.from_url(url, serde=serde, **options)
    if scheme == "cosmos+https":
        with _extra("Cosmos DB", "azure-cosmos and aiohttp", "cosmos"):
            from langgraph_hybrid_saver.backends.cosmos import CosmosBackend
        return CosmosBackend.from_url(url, **options)
    shown = redact(url) if isinstance(url, str) else repr(url)
    raise ConfigError(
        f"durable_url {shown!r} has an unsupported scheme {scheme!r}: use "
        "postgresql://user@host:5432/dbname, sqlite:///path/to/file.db or "
        "cosmos+https://HOST:PORT/?database=NAME"
    )


__all__ = [
    "PRUNE_STRATEGIES",
    "DurableBackend",
    "open_backend",
    "reason",
    "redact",
    "refused",
    "unavailable",
]
