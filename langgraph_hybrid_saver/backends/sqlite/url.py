"""`sqlite:///...` URLs: the database file they name, or a `ConfigError`
saying which form to use."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from langgraph_hybrid_saver.backends import redact
from langgraph_hybrid_saver.errors import ConfigError

URL_FORMS = "sqlite:///relative/path.db or sqlite:////absolute/path.db"


def path_from_url(url: str) -> str:
    """The absolute database path of a `sqlite:///...` URL.

    Raises:
        ConfigError: The URL has a host, a query, no file name, or names the
            in-memory database.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ConfigError(f"durable_url {redact(url)!r} is not a SQLite URL: use {URL_FORMS}")
    if parts.netloc:
        raise ConfigError(
            f"durable_url {redact(url)!r} names a host, but SQLite is a local file: use {URL_FORMS}"
        )
    if parts.query or parts.fragment:
        raise ConfigError(
            f"durable_url {url!r} has options ({parts.query or parts.fragment!r}), which the "
            f"SQLite backend does not take: use {URL_FORMS}"
        )
    path = unquote(parts.path)
    if not path.startswith("/") or path in ("/", "//") or path.endswith("/"):
        raise ConfigError(f"durable_url {url!r} names no database file: use {URL_FORMS}")
    path = path[1:]
    if path == ":memory:" or path.startswith("file:"):
        raise ConfigError(
            f"durable_url {url!r}: an in-memory SQLite database is private to one "
            "connection, but the saver and its reconciler must share the database: "
            f"use a file, {URL_FORMS}"
        )
    return os.path.abspath(path)
