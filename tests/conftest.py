"""Fixtures: real Redis, PostgreSQL and a Cosmos DB endpoint, isolated per test.

Each test gets its own Redis key prefix, its own PostgreSQL schema, its own
SQLite file and its own Cosmos database. A missing server fails the run with
the command that starts it: these tests exist to exercise real servers, so
they never skip.

Cosmos DB: `COSMOS_ENDPOINT` and `COSMOS_KEY` (default: the local stand-in
that `.ci/cosmos/start.sh` starts, which accepts any key), so the same tests
run against a real account.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager, nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import psycopg
import pytest

from langgraph_hybrid_saver import AsyncHybridSaver
from scripts.servers import PostgresCluster, TLSFiles, make_tls

ROOT = Path(__file__).resolve().parents[1]
THROWAWAY_APP_PASSWORD = "app-s3cret-pw"
REDIS_URL = os.environ.get("HYBRID_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_BASE = os.environ.get("HYBRID_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
# The well-known key of the Microsoft emulator; the stand-in accepts any key.
EMULATOR_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)
COSMOS_ENDPOINT = os.environ.get("COSMOS_ENDPOINT", "https://127.0.0.1:8081")
os.environ.setdefault("COSMOS_KEY", EMULATOR_KEY)  # the backend reads it from here


def start_reconciler(
    redis_url: str, durable_url: str, *options: str, stderr: int | None = subprocess.PIPE
) -> subprocess.Popen[str]:
    """A `python -m langgraph_hybrid_saver reconcile` worker process (text
    stdout piped; stderr piped unless told otherwise, None: inherited)."""
    cmd = [sys.executable, "-m", "langgraph_hybrid_saver", "reconcile"]
    cmd += ["--redis", redis_url, "--durable", durable_url, *options]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)


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


@pytest.fixture(scope="session")
def cosmos_endpoint() -> str:
    parts = urlsplit(COSMOS_ENDPOINT)
    _require(
        parts.hostname or "127.0.0.1",
        parts.port or 443,
        f"Cosmos DB ({COSMOS_ENDPOINT})",
        ".ci/cosmos/start.sh (or set COSMOS_ENDPOINT and COSMOS_KEY)",
    )
    return COSMOS_ENDPOINT


def _drop_cosmos_database(endpoint: str, name: str) -> None:
    """Delete a database with the async client, on a loop of its own (a
    thread: the caller may be a fixture finalizer next to pytest's loop)."""
    from azure.cosmos.aio import CosmosClient
    from azure.cosmos.exceptions import CosmosResourceNotFoundError

    local = urlsplit(endpoint).hostname in ("127.0.0.1", "localhost", "::1")

    async def drop() -> None:
        async with CosmosClient(
            endpoint,
            credential=os.environ["COSMOS_KEY"],
            connection_verify=not local,
            enable_endpoint_discovery=not local,
        ) as admin:
            try:
                await admin.delete_database(name)
            except CosmosResourceNotFoundError:
                pass

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, drop()).result()


@contextmanager
def cosmos_database(endpoint: str) -> Iterator[str]:
    """A fresh database (the backend's setup creates it); dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    try:
        yield f"cosmos+{endpoint.rstrip('/')}/?database={name}"
    finally:
        _drop_cosmos_database(endpoint, name)


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


def _cosmos_durable(request: pytest.FixtureRequest) -> AbstractContextManager[str]:
    return cosmos_database(request.getfixturevalue("cosmos_endpoint"))


DURABLE_BACKENDS: dict[str, Callable[[pytest.FixtureRequest], AbstractContextManager[str]]] = {
    "pg": _pg_durable,
    "sqlite": _sqlite_durable,
    "cosmos": _cosmos_durable,
}


@pytest.fixture(params=sorted(DURABLE_BACKENDS))
def durable_url(request: pytest.FixtureRequest) -> Iterator[str]:
    with DURABLE_BACKENDS[request.param](request) as url:
        yield url


@asynccontextmanager
async def hybrid_saver(
    redis_url: str, durable_url: str, key_prefix: str, **options: Any
) -> AsyncIterator[AsyncHybridSaver]:
    """A saver whose Redis keys are deleted when it closes; its thread index
    is built before the test begins (no background work in what it counts)."""
    async with AsyncHybridSaver.from_conn_string(
        redis_url, durable_url, key_prefix=key_prefix, **options
    ) as s:
        if s.index is not None and s.index.task is not None:
            await s.index.task
        yield s
        keys = [k async for k in s.hot.redis.scan_iter(f"{key_prefix}:*")]
        if keys:
            await s.hot.redis.delete(*keys)


@pytest.fixture
async def saver(
    redis_url: str, durable_url: str, key_prefix: str
) -> AsyncIterator[AsyncHybridSaver]:
    async with hybrid_saver(redis_url, durable_url, key_prefix) as s:
        yield s


@pytest.fixture
async def external(
    redis_url: str, durable_url: str, key_prefix: str
) -> AsyncIterator[AsyncHybridSaver]:
    """A saver whose reconciler is 'external' (none runs unless a test starts one)."""
    async with hybrid_saver(
        redis_url, durable_url, key_prefix, reconciler="external", flush_timeout=5
    ) as s:
        yield s


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


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < 55000:
            try:
                with socket.socket() as bus:
                    bus.bind(("127.0.0.1", port + 10000))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port pair for a cluster node")


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[str]:
    """Three masters on 127.0.0.1, joined with redis-cli --cluster create."""
    nodes = []
    for _ in range(3):
        node = PrivateRedis(
            tmp_path, None, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"
        )
        node.port = cluster_port()
        node.start()
        nodes.append(node)
    try:
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *[f"127.0.0.1:{n.port}" for n in nodes],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            info = subprocess.run(
                ["redis-cli", "-p", str(nodes[0].port), "cluster", "info"],
                capture_output=True,
                text=True,
            ).stdout
            if "cluster_state:ok" in info:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the test cluster did not reach cluster_state:ok")
        yield f"redis://127.0.0.1:{nodes[0].port}/0"
    finally:
        for n in nodes:
            n.stop()


# Destructive and security tests: servers of our own (scripts/servers.py).
@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A throwaway CA with a server and a client certificate (openssl)."""
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def throwaway_pg(tls_files: TLSFiles) -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of our own (initdb + postgres on a free port, ssl
    on, roles postgres/app/tls_only), removed by PID at the end of the session."""
    cluster = PostgresCluster(app_password=THROWAWAY_APP_PASSWORD, ssl=tls_files)
    try:
        cluster.init()
        yield cluster
    finally:
        cluster.remove()
