"""How a failed apply is classified (`backends.refused`: dead-letter the data;
`backends.unavailable`: the store is down, retry) and how a URL is shown in
messages (`backends.redact`: never a password). No server: the drivers'
exception classes are raised by hand."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from psycopg import errors as pg
from psycopg_pool import PoolTimeout

from langgraph_hybrid_saver import CorruptDataError, DurableStoreError, SerializationError
from langgraph_hybrid_saver.backends import redact, refused, unavailable


class HttpError(Exception):
    """An azure-core style error: the HTTP status in `status_code`."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"status {status_code}")
        self.status_code = status_code


def named(name: str) -> type[Exception]:
    """An exception class told by its name only, as for drivers not installed."""
    return type(name, (Exception,), {})


def caused_by(cause: BaseException) -> Exception:
    """A wrapper raised `from` the cause, as the backends raise them."""
    try:
        try:
            raise cause
        except BaseException as e:
            raise DurableStoreError("apply failed") from e
    except DurableStoreError as wrapped:
        return wrapped


REFUSED = [
    pg.UniqueViolation(),  # 23505, an IntegrityError
    pg.NumericValueOutOfRange(),  # 22003, a DataError
    pg.UntranslatableCharacter(),  # 22P05: \u0000 in jsonb
    pg.ProgramLimitExceeded(),  # 54000: an index row too large
    sqlite3.IntegrityError("NOT NULL constraint failed"),
    sqlite3.DataError("too big"),
    UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
    OverflowError("int too big to convert"),
    SerializationError("cannot encode"),
    CorruptDataError("cannot decode"),
    HttpError(400),  # Cosmos DB: bad request
    HttpError(413),  # Cosmos DB: entity too large
]
UNAVAILABLE = [
    psycopg.OperationalError("connection failed"),
    pg.AdminShutdown(),  # 57P01, an OperationalError
    pg.SerializationFailure(),  # 40001: retried
    PoolTimeout("couldn't get a connection"),
    sqlite3.OperationalError("database is locked"),
    ConnectionRefusedError(111, "refused"),
    OSError("network unreachable"),
    TimeoutError(),
    named("ServiceRequestError")("no answer"),  # azure-core
    named("ServiceResponseError")("connection reset"),
    named("ClientError")("aiohttp"),
    HttpError(408),
    HttpError(429),  # Cosmos DB throttling
    HttpError(500),
    HttpError(503),
]
NEITHER = [
    ValueError("a bug"),
    KeyError("k"),
    pg.UndefinedTable(),  # 42P01: a schema problem, not the data's
    HttpError(404),
    HttpError(409),
    HttpError(412),
]


@pytest.mark.parametrize("exc", REFUSED, ids=repr)
def test_refused_data(exc: BaseException) -> None:
    assert refused(exc)
    assert refused(caused_by(exc))  # found along the cause chain


@pytest.mark.parametrize("exc", UNAVAILABLE, ids=repr)
def test_unavailable_store(exc: BaseException) -> None:
    assert unavailable(exc)
    assert not refused(exc)  # an outage is retried, never dead-lettered


@pytest.mark.parametrize("exc", NEITHER, ids=repr)
def test_neither_refused_nor_unavailable(exc: BaseException) -> None:
    assert not refused(exc) and not refused(caused_by(exc))
    assert not unavailable(exc)


def test_refused_stops_at_a_cause_cycle() -> None:
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert not refused(a)


# --- redact -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://app:s3cret@db.example:5432/app?sslmode=require&password=s3cret",
            "postgresql://db.example:5432/app",
        ),
        ("postgresql://app:p@ss@db:5432/app", "postgresql://db:5432/app"),  # '@' in it
        ("postgresql://db/app", "postgresql://db/app"),
        ("postgresql://app@/app?host=/var/run/postgresql", "postgresql://localhost/app"),
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("rediss://default:s3cret@cache.example:6380", "rediss://cache.example:6380"),
        (
            "cosmos+https://acct.documents.azure.com:443/?database=d&key=s3cret",
            "cosmos+https://acct.documents.azure.com:443/",
        ),
        ("sqlite:///relative/x.db", "sqlite:///relative/x.db"),  # no host: as given
        ("sqlite:////abs/x.db", "sqlite:////abs/x.db"),
        ("sqlite:///app:s3cret@x.db", "sqlite:///***@x.db"),  # credentials masked
        ("app:s3cret@db/app", "***@db/app"),  # not a URL at all
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert "s3cret" not in redact(url)


def test_redact_a_unix_socket_url_with_a_password_in_its_query() -> None:
    assert "s3cret" not in redact("unix:///tmp/redis.sock?db=0&password=s3cret")


def test_redact_an_ipv6_host() -> None:
    assert redact("postgresql://app:s3cret@[::1]:5432/app") == "postgresql://[::1]:5432/app"
