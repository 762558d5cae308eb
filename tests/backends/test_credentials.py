"""Credentials a server refuses are a `ConfigError` on every store, Redis
included: the server answered, and only a fix to the URL (or the key) helps,
so nothing retries it as an outage. The CLI therefore exits with one code
for it whichever server refused (2, as for every setting to fix), naming
the server and never the password.

Real servers, each checking credentials: a throwaway PostgreSQL cluster (the
`app` role has a scram password; 127.0.0.1:5432 trusts every password), a
private redis-server with `--requirepass`, and the Cosmos DB stand-in
started with `--key` (it then checks every request's signature, as Cosmos DB
does).
"""

from __future__ import annotations

import base64
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from langgraph_hybrid_saver import ConfigError
from langgraph_hybrid_saver.backends import open_backend
from langgraph_hybrid_saver.cli import cli, exit_code
from langgraph_hybrid_saver.hot.client import connect_redis
from scripts.servers import PostgresCluster, RedisServer, free_port

from ..conftest import THROWAWAY_APP_PASSWORD

ROOT = Path(__file__).resolve().parents[2]
STANDIN = ROOT / ".ci" / "cosmos"
COSMOS_KEY = base64.b64encode(b"the account key of this test's stand-in").decode()
WRONG_KEY = base64.b64encode(b"another account's key").decode()
REDIS_PASSWORD = "redis-pw-a81f"
WRONG = "wrong-pw-3f9c"


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, password=REDIS_PASSWORD)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def keyed_cosmos() -> Iterator[str]:
    """The stand-in on a free port, answering 401 to requests not signed
    with COSMOS_KEY; a durable URL of it."""
    port = free_port()
    proc = subprocess.Popen(
        ["node", "cosmos-standin.js", str(port), "--key", COSMOS_KEY],
        cwd=STANDIN,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the Cosmos DB stand-in did not start on port {port}")
                time.sleep(0.1)
        yield f"cosmos+https://127.0.0.1:{port}/?database=credentials"
    finally:
        proc.terminate()
        proc.wait(10)


def pg_url(cluster: PostgresCluster, password: str) -> str:
    return cluster.url(user="app", password=password, sslmode="disable")


async def test_postgres_refused_credentials_are_a_config_error(
    throwaway_pg: PostgresCluster,
) -> None:
    backend = open_backend(pg_url(throwaway_pg, WRONG))
    with pytest.raises(ConfigError, match="refused the credentials") as e:
        await backend.open()
    assert f"127.0.0.1:{throwaway_pg.port}" in str(e.value) and "'app'" in str(e.value)
    assert WRONG not in str(e.value) + repr(e.value)
    right = open_backend(pg_url(throwaway_pg, THROWAWAY_APP_PASSWORD))
    await right.open()  # the password was all that was wrong
    await right.close()


@pytest.mark.parametrize("password", [WRONG, None], ids=["wrong", "missing"])
async def test_redis_refused_credentials_are_a_config_error(
    redis_with_password: RedisServer, password: str | None
) -> None:
    with pytest.raises(ConfigError, match="refused the credentials") as e:
        await connect_redis(redis_with_password.url(password))
    assert f"127.0.0.1:{redis_with_password.port}" in str(e.value)
    assert WRONG not in str(e.value) + repr(e.value)
    right = await connect_redis(redis_with_password.url(REDIS_PASSWORD))
    await right.aclose()


async def test_cosmos_refused_credentials_are_a_config_error(keyed_cosmos: str) -> None:
    backend = open_backend(keyed_cosmos, credential=WRONG_KEY)
    with pytest.raises(ConfigError, match=r"refused the credentials \(401\)") as e:
        await backend.open()
    assert WRONG_KEY not in str(e.value) + repr(e.value)
    right = open_backend(keyed_cosmos, credential=COSMOS_KEY)
    await right.open()
    try:
        await right.setup()  # signed requests of every kind pass the check
    finally:
        await right.close()


def test_the_cli_exits_with_one_code_for_refused_credentials(
    throwaway_pg: PostgresCluster,
    redis_with_password: RedisServer,
    keyed_cosmos: str,
    redis_url: str,
) -> None:
    cases = {
        "redis": (["status", "--redis", redis_with_password.url(WRONG)], {}),
        "postgres": (["setup", "--redis", redis_url, "--durable", pg_url(throwaway_pg, WRONG)], {}),
        "cosmos": (
            ["setup", "--redis", redis_url, "--durable", keyed_cosmos],
            {"COSMOS_KEY": WRONG_KEY},
        ),
    }
    codes = {}
    for name, (args, env) in cases.items():
        result = CliRunner().invoke(cli, args, env=env)
        assert "refused the credentials" in result.stderr, (name, result.output)
        assert len(result.stderr.strip().splitlines()) == 1, (name, result.stderr)
        assert WRONG not in result.output and WRONG_KEY not in result.output
        codes[name] = result.exit_code
    assert codes == dict.fromkeys(cases, exit_code(ConfigError("")))
    assert exit_code(ConfigError("")) == 2
