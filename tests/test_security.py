"""Secure defaults: TLS to Redis and PostgreSQL, no secret in errors, reprs or
logs, encrypted checkpoints, the strict msgpack allowlist, tenant isolation.

TLS uses a CA made with openssl for the session (`tls_files`), a private
redis-server started with `--tls-port` and the throwaway PostgreSQL cluster
(ssl=on; its role `tls_only` is refused without TLS). Options for the Redis
TLS client go in the URL query, which redis-py turns into connection
arguments: `rediss://host:port/0?ssl_ca_certs=/ca.pem&ssl_certfile=...&
ssl_keyfile=...` (`connect_redis` takes no other way from a URL).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import subprocess
import sys
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from langgraph_hybrid_saver import AsyncHybridSaver, ConfigError, ServerUnreachableError
from scripts.servers import PostgresCluster, RedisServer, TLSFiles

from .conftest import THROWAWAY_APP_PASSWORD, pg_schema, start_reconciler

ROOT = Path(__file__).resolve().parents[1]
REDIS_PASSWORD = "redis-pw-9f3a1c"
SECRETS = (REDIS_PASSWORD, THROWAWAY_APP_PASSWORD, "wrong-pw-77d2")


@dataclasses.dataclass
class Point:
    x: int
    y: int


def one_put(values: dict[str, Any], step: int = 1) -> tuple[Any, ...]:
    versions = {k: str(step) for k in values}
    cp = generate_checkpoint(channel_values=values, channel_versions=versions)
    return cp, generate_metadata(step=step), versions


def no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a password leaked: ...{text[:300]}"


# --- TLS ----------------------------------------------------------------------------


@pytest.fixture
def tls_redis(tmp_path: Path, tls_files: TLSFiles) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, tls=tls_files)
    server.start()
    yield server
    server.kill()


async def test_rediss_with_the_ca_in_the_url(tls_redis: RedisServer, pg_url: str) -> None:
    url = tls_redis.url()
    assert url.startswith("rediss://") and "ssl_ca_certs=" in url
    async with AsyncHybridSaver.from_conn_string(url, pg_url) as saver:
        config = await saver.aput(generate_config("tls"), *one_put({"m": ["over tls"]}))
        await saver.aflush(timeout=10)
        got = await saver.aget_tuple(config)
        assert got is not None and got.checkpoint["channel_values"]["m"] == ["over tls"]
        # The scripts went over the saver's own pipelined connection, inside TLS.
        pipe = saver.hot.run.lanes.pipe if saver.hot.run.lanes is not None else None
        assert pipe is not None and pipe.broken is None
        assert pipe.transport.get_extra_info("ssl_object") is not None


async def test_rediss_refuses_an_unknown_ca(tls_redis: RedisServer, pg_url: str) -> None:
    url = f"rediss://127.0.0.1:{tls_redis.port}/0"  # the system CAs do not know ours
    with pytest.raises(ServerUnreachableError, match=f"127.0.0.1:{tls_redis.port}"):
        async with AsyncHybridSaver.from_conn_string(url, pg_url):
            pass


@pytest.fixture
def mtls_redis(tmp_path: Path, tls_files: TLSFiles) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, tls=tls_files, tls_auth_clients=True)
    server.start()
    yield server
    server.kill()


async def test_rediss_with_a_client_certificate(
    mtls_redis: RedisServer, tls_files: TLSFiles, pg_url: str
) -> None:
    with pytest.raises(ServerUnreachableError):
        async with AsyncHybridSaver.from_conn_string(mtls_redis.url(), pg_url):
            pass
    url = mtls_redis.url(
        ssl_certfile=str(tls_files.client_cert), ssl_keyfile=str(tls_files.client_key)
    )
    async with AsyncHybridSaver.from_conn_string(url, pg_url) as saver:
        assert await saver.aget_tuple(generate_config("mtls")) is None


async def test_reconciler_cli_over_rediss(
    tls_redis: RedisServer, pg_url: str, key_prefix: str
) -> None:
    async with AsyncHybridSaver.from_conn_string(
        tls_redis.url(), pg_url, key_prefix=key_prefix, reconciler="external", flush_timeout=60
    ) as saver:
        await saver.aput(generate_config("tls-cli"), *one_put({"m": [1]}))
        worker = start_reconciler(
            tls_redis.url(), pg_url, "--key-prefix", key_prefix, stderr=subprocess.STDOUT
        )
        try:
            await saver.aflush()
        finally:
            worker.terminate()
            out, _ = worker.communicate(timeout=30)
        assert worker.returncode == 0, out
        assert await saver.backend.get("tls-cli", "", None) is not None


def tls_only_url(cluster: PostgresCluster, schema: str, **query: str) -> str:
    cluster.schema_url(schema)  # creates it
    return cluster.url(user="tls_only", options=f"-csearch_path={schema}", **query)


async def test_postgres_sslmode_verify_full(
    throwaway_pg: PostgresCluster, tls_files: TLSFiles, redis_url: str
) -> None:
    url = tls_only_url(throwaway_pg, "tls_ok", sslmode="verify-full", sslrootcert=str(tls_files.ca))
    async with AsyncHybridSaver.from_conn_string(redis_url, url, key_prefix="tlspg") as saver:
        config = await saver.aput(generate_config(str(uuid.uuid4())), *one_put({"m": [1]}))
        await saver.aflush(timeout=10)
        assert await saver.backend.get(config["configurable"]["thread_id"], "", None)
    with psycopg.connect(url) as conn:  # the session really is encrypted
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert row == (True,)


async def test_postgres_without_tls_is_refused(
    throwaway_pg: PostgresCluster, redis_url: str
) -> None:
    url = tls_only_url(throwaway_pg, "tls_no", sslmode="disable")
    with pytest.raises(ServerUnreachableError, match=f"127.0.0.1:{throwaway_pg.port}"):
        async with AsyncHybridSaver.from_conn_string(redis_url, url):
            pass


# --- no secret in errors, reprs, logs ---------------------------------------------------


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, password=REDIS_PASSWORD)
    server.start()
    yield server
    server.kill()


def app_url(cluster: PostgresCluster, password: str = THROWAWAY_APP_PASSWORD) -> str:
    return cluster.url(
        user="app", password=password, sslmode="disable", options="-csearch_path=app"
    )


@pytest.mark.parametrize("which", ["redis", "postgres"])
async def test_failing_connect_leaks_no_password(
    redis_with_password: RedisServer,
    throwaway_pg: PostgresCluster,
    caplog: pytest.LogCaptureFixture,
    which: str,
) -> None:
    redis = redis_with_password.url("wrong-pw-77d2" if which == "redis" else REDIS_PASSWORD)
    durable = app_url(throwaway_pg, "wrong-pw-77d2" if which == "postgres" else None)  # type: ignore[arg-type]
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as err:
        async with AsyncHybridSaver.from_conn_string(redis, durable):
            pass
    no_secret("".join(traceback.format_exception(err.value)))  # the whole chain
    no_secret(repr(err.value))
    no_secret("\n".join(logging.Formatter().format(r) for r in caplog.records))


async def test_saver_reprs_leak_no_password(
    redis_with_password: RedisServer, throwaway_pg: PostgresCluster
) -> None:
    async with AsyncHybridSaver.from_conn_string(
        redis_with_password.url(REDIS_PASSWORD), app_url(throwaway_pg)
    ) as saver:
        for obj in (saver, saver.hot, saver.hot.redis, saver.backend, saver.reconciler):
            no_secret(repr(obj))
            no_secret(str(obj))
        no_secret(repr(getattr(saver.backend, "pool", "")))
        no_secret(str(await saver.astats()))


async def test_reconcile_errors_leak_no_password(
    redis_with_password: RedisServer,
    throwaway_pg: PostgresCluster,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The durable store refuses the reconciler's writes (its role lost the
    tables): what the in-process reconciler logs while retrying names no
    password."""
    caplog.set_level(logging.DEBUG)
    admin = throwaway_pg.url(sslmode="disable")
    async with AsyncHybridSaver.from_conn_string(
        redis_with_password.url(REDIS_PASSWORD), app_url(throwaway_pg), flush_timeout=60
    ) as saver:
        tid = str(uuid.uuid4())
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("ALTER TABLE app.checkpoints OWNER TO postgres")
        try:
            await saver.aput(generate_config(tid), *one_put({"m": [1]}))
            for _ in range(200):
                if (await saver.astats())["errors"]:
                    break
                await asyncio.sleep(0.05)
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("ALTER TABLE app.checkpoints OWNER TO app")
        await saver.aflush()
        assert (await saver.astats())["errors"] > 0
        no_secret(str(await saver.astats()))
    assert any("reconcile failed" in r.getMessage() for r in caplog.records)
    no_secret("\n".join(logging.Formatter().format(r) for r in caplog.records))


def test_reconciler_cli_error_leaks_no_password(
    redis_with_password: RedisServer, throwaway_pg: PostgresCluster
) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "langgraph_hybrid_saver",
            "reconcile",
            "--redis",
            redis_with_password.url(REDIS_PASSWORD),
            "--durable",
            app_url(throwaway_pg, "wrong-pw-77d2"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "refused the credentials" in run.stderr
    no_secret(run.stdout + run.stderr)


def test_reconciler_cli_takes_urls_from_the_environment(
    redis_with_password: RedisServer, throwaway_pg: PostgresCluster
) -> None:
    """Passwords stay out of the process list (/proc/PID/cmdline)."""
    env = dict(
        os.environ,
        HYBRID_SAVER_REDIS_URL=redis_with_password.url(REDIS_PASSWORD),
        HYBRID_SAVER_DURABLE_URL=app_url(throwaway_pg),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "langgraph_hybrid_saver", "reconcile"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "started" in proc.stdout.readline()
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


# --- serialization ---------------------------------------------------------------------


async def hot_bytes(saver: AsyncHybridSaver, prefix: str) -> bytes:
    """Every key, field, value and stream entry under `prefix`, concatenated."""
    redis, out = saver.hot.redis, []
    async for key in redis.scan_iter(f"{prefix}:*"):
        kind = (await redis.type(key)).decode()
        if kind == "hash":
            out += [k + v for k, v in (await redis.hgetall(key)).items()]
        elif kind == "stream":
            out += [k + v for _, f in await redis.xrange(key) for k, v in f.items()]
        elif kind == "string":
            out.append(await redis.get(key))
        elif kind in ("zset", "set"):
            out += [str(await redis.dump(key)).encode()]
    return b"\n".join(out)


def durable_bytes(url: str) -> bytes:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT checkpoint::text, metadata::text FROM checkpoints UNION ALL "
            "SELECT encode(blob, 'escape'), type FROM checkpoint_blobs UNION ALL "
            "SELECT encode(blob, 'escape'), type FROM checkpoint_writes"
        ).fetchall()
    return "\n".join(a or "" for row in rows for a in row).encode()


ENCRYPTED_VALUES = {"messages": ["TOPSECRET-message"], "profile": {"ssn": "TOPSECRET-ssn"}}


async def test_encrypted_serializer_passes_through(
    redis_url: str, pg_url: str, key_prefix: str
) -> None:
    serde = EncryptedSerializer.from_pycryptodome_aes(key=b"k" * 32)
    async with AsyncHybridSaver.from_conn_string(
        redis_url, pg_url, key_prefix=key_prefix, serde=serde, reconciler="external"
    ) as saver:
        config = await saver.aput(generate_config("enc"), *one_put(ENCRYPTED_VALUES))
        await saver.aput_writes(config, [("messages", "TOPSECRET-write")], "task-1")
        hot = await hot_bytes(saver, key_prefix)  # records, blobs and the outbox
        assert b"TOPSECRET" not in hot and len(hot) > 0
        got = await saver.aget_tuple(config)
        assert got is not None
        assert {k: got.checkpoint["channel_values"][k] for k in ENCRYPTED_VALUES} == (
            ENCRYPTED_VALUES
        )
        assert got.pending_writes == [("task-1", "messages", "TOPSECRET-write")]
    async with AsyncHybridSaver.from_conn_string(
        redis_url, pg_url, key_prefix=key_prefix, serde=serde
    ) as saver:
        await saver.aflush(timeout=10)
        stored = durable_bytes(pg_url)
        assert b"TOPSECRET" not in stored and b"msgpack+aes" in stored
        await saver.hot.redis.delete(
            *[k async for k in saver.hot.redis.scan_iter(f"{key_prefix}:*")]
        )
        got = await saver.aget_tuple(config)  # read through from PostgreSQL
        assert got is not None and got.checkpoint["channel_values"]["messages"] == [
            "TOPSECRET-message"
        ]
        assert got.pending_writes == [("task-1", "messages", "TOPSECRET-write")]


async def test_encrypted_serializer_hides_string_channel_values(
    redis_url: str, pg_url: str, key_prefix: str
) -> None:
    serde = EncryptedSerializer.from_pycryptodome_aes(key=b"k" * 32)
    async with AsyncHybridSaver.from_conn_string(
        redis_url, pg_url, key_prefix=key_prefix, serde=serde
    ) as saver:
        await saver.aput(generate_config("enc-str"), *one_put({"note": "TOPSECRET-note"}))
        assert b"TOPSECRET" not in await hot_bytes(saver, key_prefix)
        await saver.aflush(timeout=10)
        assert b"TOPSECRET" not in durable_bytes(pg_url)
        # Readable again, from PostgreSQL, by us and by the official saver.
        await saver.hot.redis.delete(
            *[k async for k in saver.hot.redis.scan_iter(f"{key_prefix}:*")]
        )
        got = await saver.aget_tuple(generate_config("enc-str"))
        assert got is not None and got.checkpoint["channel_values"]["note"] == "TOPSECRET-note"
    async with AsyncPostgresSaver.from_conn_string(pg_url, serde=serde) as official:
        got = await official.aget_tuple(generate_config("enc-str"))
        assert got is not None and got.checkpoint["channel_values"]["note"] == "TOPSECRET-note"


async def test_strict_msgpack_allowlist(redis_url: str, pg_url: str, key_prefix: str) -> None:
    strict = JsonPlusSerializer(allowed_msgpack_modules=None)  # only LangGraph's safe types
    async with AsyncHybridSaver.from_conn_string(
        redis_url, pg_url, key_prefix=key_prefix, serde=strict
    ) as saver:
        config = await saver.aput(generate_config("allow"), *one_put({"p": Point(1, 2)}))
        blocked = await saver.aget_tuple(config)
        assert blocked is not None and blocked.checkpoint["channel_values"]["p"] == {"x": 1, "y": 2}
        allowed = saver.with_allowlist([(Point.__module__, "Point")])
        assert allowed is not saver
        got = await allowed.aget_tuple(config)
        assert got is not None and got.checkpoint["channel_values"]["p"] == Point(1, 2)
        await saver.aflush(timeout=10)
        await saver.hot.redis.delete(
            *[k async for k in saver.hot.redis.scan_iter(f"{key_prefix}:*")]
        )
        got = await allowed.aget_tuple(config)  # from PostgreSQL
        assert got is not None and got.checkpoint["channel_values"]["p"] == Point(1, 2)


# --- tenants -------------------------------------------------------------------------


async def test_key_prefix_and_schema_per_tenant_isolate(redis_url: str, pg_admin_url: str) -> None:
    tid = "same-thread-id"
    with pg_schema(pg_admin_url) as url_a, pg_schema(pg_admin_url) as url_b:
        prefix_a, prefix_b = f"ta{uuid.uuid4().hex[:8]}", f"tb{uuid.uuid4().hex[:8]}"
        async with (
            AsyncHybridSaver.from_conn_string(redis_url, url_a, key_prefix=prefix_a) as a,
            AsyncHybridSaver.from_conn_string(redis_url, url_b, key_prefix=prefix_b) as b,
        ):
            await a.aput(generate_config(tid), *one_put({"m": ["tenant a"]}))
            assert await b.aget_tuple(generate_config(tid)) is None
            assert [t async for t in b.alist(None)] == []
            await b.aput(generate_config(tid), *one_put({"m": ["tenant b"]}))
            await a.aflush(timeout=10)
            await b.aflush(timeout=10)
            got_a, got_b = (
                await a.aget_tuple(generate_config(tid)),
                await b.aget_tuple(generate_config(tid)),
            )
            assert got_a and got_a.checkpoint["channel_values"]["m"] == ["tenant a"]
            assert got_b and got_b.checkpoint["channel_values"]["m"] == ["tenant b"]
            assert len([t async for t in a.alist(None)]) == 1
            await b.adelete_thread(tid)
            assert await b.aget_tuple(generate_config(tid)) is None
            assert await a.aget_tuple(generate_config(tid)) is not None
            for saver, prefix in ((a, prefix_a), (b, prefix_b)):
                async for key in saver.hot.redis.scan_iter(f"*{tid}*"):
                    assert key.decode().startswith((prefix_a, prefix_b))
                await saver.hot.redis.delete(
                    *[k async for k in saver.hot.redis.scan_iter(f"{prefix}:*")] or ["-"]
                )
        with psycopg.connect(url_a) as conn:
            assert conn.execute("SELECT count(*) FROM checkpoints").fetchone() == (1,)
        with psycopg.connect(url_b) as conn:
            assert conn.execute("SELECT count(*) FROM checkpoints").fetchone() == (0,)
