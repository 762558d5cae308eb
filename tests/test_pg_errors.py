"""PostgreSQL refusing a connection says why: a database or role that does not
exist is a ConfigError naming it and the fix (CLI exit code 2), a server that
does not answer stays ServerUnreachableError (exit code 3), wrong credentials
are a ConfigError naming the user (tests/backends/test_credentials.py: on a
real server, like Redis and Cosmos DB). Against the real server on 5432;
never a password in the message."""

from __future__ import annotations

import subprocess
import sys
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from langgraph_hybrid_saver import AsyncHybridSaver, ConfigError, ServerUnreachableError
from langgraph_hybrid_saver.backends.postgres import PostgresBackend
from langgraph_hybrid_saver.backends.postgres.refusals import refusal
from tests.conftest import ROOT, free_port

SECRET = "pw-never-shown-5f1c"


def _with(url: str, *, user: str | None = None, password: str | None = None, db: str | None = None,
          port: int | None = None) -> str:  # fmt: skip
    parts = urlsplit(url)
    user = user or parts.username or "postgres"
    cred = user + (f":{password}" if password else "")
    host = f"{parts.hostname}:{port or parts.port or 5432}"
    path = f"/{db}" if db is not None else parts.path
    return urlunsplit((parts.scheme, f"{cred}@{host}", path, parts.query, ""))


def _where(url: str, db: str | None = None) -> str:
    """How the message names the server: scheme://host:port/database."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 5432}" + (
        f"/{db}" if db is not None else parts.path
    )


def _absent_database(admin_url: str) -> str:
    name = f"lhs_absent_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert row is None
    return name


def _absent_role(admin_url: str) -> str:
    name = f"lhs_nobody_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    assert row is None
    return name


async def _open(url: str) -> None:
    backend = PostgresBackend.from_url(url)
    try:
        await backend.open()
    finally:
        await backend.close()


async def test_missing_database_is_a_config_error_naming_it(pg_admin_url: str) -> None:
    db = _absent_database(pg_admin_url)
    with pytest.raises(ConfigError) as err:
        await _open(_with(pg_admin_url, db=db, password=SECRET))
    message = str(err.value)
    assert not isinstance(err.value, ServerUnreachableError)
    assert f"database '{db}' does not exist: create it (createdb {db}) or fix durable_url" in (
        message
    )
    assert f"PostgreSQL at {_where(pg_admin_url, db)}: database" in message  # no user@
    assert "unreachable" not in message
    assert SECRET not in message and SECRET not in repr(err.value)


async def test_missing_role_is_a_config_error_naming_it(pg_admin_url: str) -> None:
    role = _absent_role(pg_admin_url)
    with pytest.raises(ConfigError) as err:
        await _open(_with(pg_admin_url, user=role, password=SECRET))
    message = str(err.value)
    assert f"role '{role}' does not exist: create it (createuser {role}) or fix the user" in (
        message
    )
    assert "durable_url" in message and "unreachable" not in message
    assert SECRET not in message and SECRET not in repr(err.value)
    assert f"PostgreSQL at {_where(pg_admin_url)}: role" in message  # no user@


async def test_from_conn_string_reports_the_missing_database(
    redis_url: str, pg_admin_url: str
) -> None:
    db = _absent_database(pg_admin_url)
    with pytest.raises(ConfigError, match=f"database '{db}' does not exist"):
        async with AsyncHybridSaver.from_conn_string(redis_url, _with(pg_admin_url, db=db)):
            pass


async def test_a_server_that_does_not_answer_stays_unreachable(pg_admin_url: str) -> None:
    port = free_port()
    with pytest.raises(ServerUnreachableError) as err:
        await _open(_with(pg_admin_url, port=port, password=SECRET))
    assert not isinstance(err.value, ConfigError)
    assert f"127.0.0.1:{port}" in str(err.value) and "is unreachable" in str(err.value)
    assert SECRET not in str(err.value)


def test_cli_exit_code_2_and_one_line_for_a_missing_database(
    redis_url: str, pg_admin_url: str
) -> None:
    db = _absent_database(pg_admin_url)
    run = subprocess.run(
        [sys.executable, "-m", "langgraph_hybrid_saver", "setup", "--redis", redis_url,
         "--durable", _with(pg_admin_url, db=db, password=SECRET)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert f"database '{db}' does not exist: create it (createdb {db})" in run.stderr
    assert run.stderr.strip().count("\n") == 0 and "Traceback" not in run.stderr
    assert SECRET not in run.stdout + run.stderr


def _err(message: str, sqlstate: str | None = None) -> Exception:
    e = psycopg.OperationalError(message)
    if sqlstate:
        # what a psycopg error with a server result reports
        e.sqlstate = sqlstate
    return e


@pytest.mark.parametrize(
    ("server_says", "sqlstate", "expected"),
    [
        (  # password auth does not tell a missing role from a wrong password
            'FATAL:  password authentication failed for user "app"',
            None,
            "refused the credentials: password authentication failed for user 'app': fix the "
            "user/password in durable_url",
        ),
        (
            'FATAL:  no pg_hba.conf entry for host "10.1.2.3", user "app", database "x", '
            "no encryption",
            None,
            "has no pg_hba.conf entry that lets user 'app' connect from this host",
        ),
        (
            'FATAL:  Peer authentication failed for user "app"',
            None,
            "Peer authentication failed for user 'app'",
        ),
        (
            'FATAL:  permission denied for database "x"\nDETAIL:  User does not have CONNECT '
            "privilege.",
            None,
            "may not connect to database 'x' (no CONNECT privilege)",
        ),
        (  # psycopg's message for several addresses (localhost: ::1 and 127.0.0.1)
            "Multiple connection attempts failed. All failures were:\n- host: 'localhost', "
            "port: '5432', hostaddr: '::1': connection failed: Connection refused\n- host: "
            "'localhost', port: '5432', hostaddr: '127.0.0.1': connection failed: FATAL:  "
            'database "my db" does not exist',
            None,
            "database 'my db' does not exist: create it (createdb 'my db') or fix durable_url",
        ),
        ("FATAL:  la base de données « x » n'existe pas", "3D000",
         "the database in durable_url does not exist"),
        ("FATAL:  l'authentification a échoué", "28P01",
         "refused the credentials (password authentication failed)"),
        ("FATAL:  le rôle « y » n'existe pas", "28000",
         "refused the user in durable_url"),
    ],
)  # fmt: skip
def test_refusals_by_message_or_sqlstate(
    server_says: str, sqlstate: str | None, expected: str
) -> None:
    message = refusal(_err(server_says, sqlstate), "postgresql://db:5432/x")
    assert message is not None
    assert message.startswith("PostgreSQL at postgresql://db:5432/x")
    assert expected in message


def test_an_outage_is_no_refusal() -> None:
    assert refusal(_err("connection failed: Connection refused"), "postgresql://db/x") is None
    assert refusal(TimeoutError("timed out"), "postgresql://db/x") is None
