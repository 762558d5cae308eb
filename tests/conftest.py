"""Fixtures: real Redis and PostgreSQL on 127.0.0.1, isolated per test.

Each test gets its own Redis key prefix, its own PostgreSQL schema and its own
SQLite file. A
missing server fails the run with the command that starts it: these tests
exist to exercise real servers, so they never skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from langgraph_hybrid_saver import AsyncHybridSaver

REDIS_URL = os.environ.get("HYBRID_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_BASE = os.environ.get("HYBRID_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _require(host: str, port: int, what: str, start: str) -> None:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as e:
        pytest.fail(f"{what} is not reachable on {host}:{port} ({e}); start it: {start}")


@pytest.fixture(scope="session")
def redis_url() -> str:
    _require("127.0.0.1", 6379, "Redis", "redis-server --daemonize yes --port 6379 --save ''")
    return REDIS_URL


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    _require("127.0.0.1", 5432, "PostgreSQL", "pg_ctlcluster 15 main start")
    return PG_BASE


@pytest.fixture
def key_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def pg_schema(admin_url: str) -> Iterator[str]:
    """A fresh schema; the URL selects it through search_path."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema_url(admin_url, schema)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    with pg_schema(pg_admin_url) as url:
        yield url


# Durable backends every behavioural test runs on, by test id. A factory
# yields an isolated durable URL (own schema / file / database).
def _pg_durable(request: pytest.FixtureRequest) -> AbstractContextManager[str]:
    return pg_schema(request.getfixturevalue("pg_admin_url"))


def _sqlite_durable(request: pytest.FixtureRequest) -> AbstractContextManager[str]:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    return nullcontext(f"sqlite:///{tmp_path}/x.db")  # an absolute path: four slashes


DURABLE_BACKENDS: dict[str, Callable[[pytest.FixtureRequest], AbstractContextManager[str]]] = {
    "pg": _pg_durable,
    "sqlite": _sqlite_durable,
}


@pytest.fixture(params=sorted(DURABLE_BACKENDS))
def durable_url(request: pytest.FixtureRequest) -> Iterator[str]:
    with DURABLE_BACKENDS[request.param](request) as url:
        yield url


@pytest.fixture
async def saver(
    redis_url: str, durable_url: str, key_prefix: str
) -> AsyncIterator[AsyncHybridSaver]:
    async with AsyncHybridSaver.from_conn_string(
        redis_url, durable_url, key_prefix=key_prefix
    ) as s:
        yield s
        keys = [k async for k in s.hot.redis.scan_iter(f"{key_prefix}:*")]
        if keys:
            await s.hot.redis.delete(*keys)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not on PATH; install Redis >= 6")
    return exe


class PrivateRedis:
    """A Redis-protocol server of our own, for tests that wipe or restart it,
    run it in cluster mode or use another implementation (Valkey)."""

    def __init__(self, workdir: Path, exe: str | None = None, *extra: str) -> None:
        self.port = free_port()
        self.workdir = workdir / f"redis-{self.port}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.exe = exe or redis_server_binary()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"private {self.exe} on port {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()
