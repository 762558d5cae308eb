"""Bad inputs and hostile conditions: each gets a typed error.

The table in docs/RELIABILITY.md ("Bad inputs") lists every row with the test
that checks it; rows already covered by test_errors.py, test_invariants.py
and test_durability_modes.py are tested there. `test_table_names_real_tests`
keeps the table and the tests in step. A row whose library behaviour is not a
typed error yet is xfail(strict=True), its reason naming what is missing.
"""

from __future__ import annotations

import ast
import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)

from langgraph_hybrid_saver import (
    AsyncHybridSaver,
    ConfigError,
    CorruptDataError,
    HotTierFullError,
    HybridSaverError,
    SerializationError,
    ServerUnreachableError,
)
from langgraph_hybrid_saver.outbox.reconciler import Reconciler
from scripts.servers import PostgresCluster, RedisServer

from .conftest import THROWAWAY_APP_PASSWORD
from .helpers import noise

ROOT = Path(__file__).resolve().parents[1]
REDIS_PASSWORD = "redis-s3cret-pw"


def one_put(step: int = 1, value: Any = None) -> tuple[Any, ...]:
    cp = generate_checkpoint(
        channel_values={"messages": ["hi"] if value is None else value},
        channel_versions={"messages": str(step)},
    )
    return cp, generate_metadata(step=step), {"messages": str(step)}


@pytest.fixture
def redis_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A private redis-server; `@pytest.mark.parametrize("redis_server", [args],
    indirect=True)` passes extra server arguments."""
    extra = tuple(getattr(request, "param", ()))
    server = RedisServer(tmp_path, extra=extra)
    server.start()
    yield server
    server.kill()


@pytest.fixture
async def external(redis_server: RedisServer, pg_url: str) -> AsyncIterator[AsyncHybridSaver]:
    async with AsyncHybridSaver.from_conn_string(
        redis_server.url(), pg_url, reconciler="external", flush_timeout=1
    ) as saver:
        yield saver


def test_table_names_real_tests() -> None:
    """Every row of the report's bad-input table names a test that exists."""
    text = (ROOT / "docs" / "RELIABILITY.md").read_text()
    table = text.split("## Bad inputs", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"`(tests/test_\w+\.py)::(\w+)`", table)
    assert len({row for row in table.splitlines() if row.startswith("| ") and "`" in row}) >= 12
    for path, name in names:
        tree = ast.parse((ROOT / path).read_text())
        defined = {
            n.name for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef | ast.FunctionDef)
        }
        assert name in defined, f"{path}::{name} is named in RELIABILITY.md but does not exist"


# --- ids and configs ------------------------------------------------------------------


@pytest.mark.parametrize("bad", [1.5, ["t"], {"id": 1}], ids=["float", "list", "dict"])
async def test_non_string_thread_id(external: AsyncHybridSaver, bad: Any) -> None:
    from langgraph_hybrid_saver import ConfigError

    with pytest.raises(ConfigError, match="thread_id must be"):
        await external.aget_tuple({"configurable": {"thread_id": bad}})
    with pytest.raises(ConfigError, match="thread_id"):
        await external.adelete_thread(bad)


async def test_non_string_namespace_and_checkpoint_id(external: AsyncHybridSaver) -> None:
    from langgraph_hybrid_saver import ConfigError

    with pytest.raises(ConfigError, match="checkpoint_ns must be a str, got 5"):
        await external.aget_tuple({"configurable": {"thread_id": "t", "checkpoint_ns": 5}})
    with pytest.raises(ConfigError, match="checkpoint_id must be a str"):
        await external.aget_tuple({"configurable": {"thread_id": "t", "checkpoint_id": 7}})


async def test_put_writes_without_checkpoint_id(external: AsyncHybridSaver) -> None:
    from langgraph_hybrid_saver import ConfigError

    with pytest.raises(ConfigError, match="checkpoint_id"):
        await external.aput_writes(generate_config("t"), [("messages", 1)], "task")


# --- credentials and servers ---------------------------------------------------------------


async def test_wrong_postgres_password(
    throwaway_pg: PostgresCluster, redis_server: RedisServer
) -> None:
    url = throwaway_pg.url(user="app", password="not-the-password", sslmode="disable")
    with pytest.raises(ConfigError, match=f"127.0.0.1:{throwaway_pg.port}") as err:
        async with AsyncHybridSaver.from_conn_string(redis_server.url(), url):
            pass
    assert "not-the-password" not in str(err.value) + repr(err.value)
    # ... and the right one works.
    good = throwaway_pg.url(
        user="app", password=THROWAWAY_APP_PASSWORD, sslmode="disable", options="-csearch_path=app"
    )
    async with AsyncHybridSaver.from_conn_string(redis_server.url(), good) as saver:
        assert await saver.aget_tuple(generate_config("t")) is None


async def test_wrong_postgres_password_says_authentication(
    throwaway_pg: PostgresCluster, redis_server: RedisServer
) -> None:
    url = throwaway_pg.url(user="app", password="not-the-password", sslmode="disable")
    with pytest.raises(HybridSaverError, match=r"(?i)authentication"):
        async with AsyncHybridSaver.from_conn_string(redis_server.url(), url):
            pass


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, password=REDIS_PASSWORD)
    server.start()
    yield server
    server.kill()


@pytest.mark.parametrize("password", ["wrong-pw", None], ids=["wrong", "missing"])
async def test_wrong_redis_password(
    redis_with_password: RedisServer, pg_url: str, password: str | None
) -> None:
    with pytest.raises(ConfigError, match=f"127.0.0.1:{redis_with_password.port}") as e:
        async with AsyncHybridSaver.from_conn_string(redis_with_password.url(password), pg_url):
            pass
    assert "wrong-pw" not in str(e.value) + repr(e.value)
    async with AsyncHybridSaver.from_conn_string(
        redis_with_password.url(REDIS_PASSWORD), pg_url
    ) as saver:
        assert await saver.aget_tuple(generate_config("t")) is None


async def test_wrong_redis_password_says_authentication(
    redis_with_password: RedisServer, pg_url: str
) -> None:
    with pytest.raises(HybridSaverError, match=r"(?i)password|credentials|authenticat.*fail"):
        async with AsyncHybridSaver.from_conn_string(redis_with_password.url("x"), pg_url):
            pass


async def test_redis_url_pointing_at_another_server(
    throwaway_pg: PostgresCluster, pg_url: str
) -> None:
    with pytest.raises(ServerUnreachableError, match=f"127.0.0.1:{throwaway_pg.port}"):
        async with AsyncHybridSaver.from_conn_string(
            f"redis://127.0.0.1:{throwaway_pg.port}/0", pg_url
        ):
            pass


async def test_a_redis_client_that_decodes_replies(redis_url: str, pg_url: str) -> None:
    from redis.asyncio import Redis

    from langgraph_hybrid_saver import ConfigError, open_backend

    with pytest.raises(ConfigError, match="decode_responses=False"):
        async with AsyncHybridSaver.from_conn_string(f"{redis_url}?decode_responses=true", pg_url):
            pass
    decoding = Redis.from_url(redis_url, decode_responses=True)
    try:
        with pytest.raises(ConfigError, match="decode_responses=True"):
            AsyncHybridSaver(decoding, open_backend(pg_url))
    finally:
        await decoding.aclose()


async def test_redis_down_during_a_put(
    redis_server: RedisServer, external: AsyncHybridSaver
) -> None:
    redis_server.kill()
    with pytest.raises(ServerUnreachableError, match=f"127.0.0.1:{redis_server.port}"):
        await external.aput(generate_config(str(uuid.uuid4())), *one_put())


# --- corrupt or unreadable stored data -----------------------------------------------------


async def _stored_blob(saver: AsyncHybridSaver) -> tuple[dict[str, Any], str, bytes, bytes]:
    config = await saver.aput(generate_config(str(uuid.uuid4())), *one_put())
    key = saver.hot.base(config["configurable"]["thread_id"]) + ":b:0:"
    field = (await saver.hot.redis.hkeys(key))[0]
    return config, key, field, await saver.hot.redis.hget(key, field)


async def test_truncated_hot_blob(external: AsyncHybridSaver) -> None:
    config, key, field, value = await _stored_blob(external)
    await external.hot.redis.hset(key, field, value[:-3])
    with pytest.raises(CorruptDataError, match="messages"):
        await external.aget_tuple(config)


async def test_unknown_blob_type(external: AsyncHybridSaver) -> None:
    config, key, field, _ = await _stored_blob(external)
    await external.hot.redis.hset(key, field, b"weird\x00abc")
    with pytest.raises(CorruptDataError, match="messages"):
        await external.aget_tuple(config)


async def test_wrong_encryption_key(redis_server: RedisServer, pg_url: str) -> None:
    from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

    prefix = f"enc{uuid.uuid4().hex[:8]}"
    right = EncryptedSerializer.from_pycryptodome_aes(key=b"0" * 32)
    wrong = EncryptedSerializer.from_pycryptodome_aes(key=b"1" * 32)
    async with AsyncHybridSaver.from_conn_string(
        redis_server.url(), pg_url, serde=right, key_prefix=prefix, reconciler="external"
    ) as writer:
        config = await writer.aput(generate_config("t"), *one_put())
    async with AsyncHybridSaver.from_conn_string(
        redis_server.url(), pg_url, serde=wrong, key_prefix=prefix, reconciler="external"
    ) as reader:
        with pytest.raises(CorruptDataError, match=r"(?i)decrypt"):
            await reader.aget_tuple(config)


async def test_corrupt_outbox_entry(external: AsyncHybridSaver) -> None:
    """An undecodable entry is moved, whole, to its shard's dead-letter stream
    with the reason; the entries around it are applied, the shard does not
    stall, and `astats` counts it (nothing dropped silently)."""
    hot = external.hot
    tids = [t for t in (f"dl-{i}" for i in range(200)) if hot.shard(t) == 0][:2]
    first = await external.aput(generate_config(tids[0]), *one_put())
    sid = (await hot.redis.xadd(hot.keys.outboxes[0], {"k": "p", "t": "x"})).decode()
    second = await external.aput(generate_config(tids[1]), *one_put())
    worker = Reconciler(hot, external.backend)
    while await worker.step():
        pass
    await worker.release_all()
    await external.aflush(timeout=2)
    for config in (first, second):
        tid = config["configurable"]["thread_id"]
        cid = config["configurable"]["checkpoint_id"]
        assert await external.backend.get(tid, "", cid) is not None
    [(_, fields)] = await hot.redis.xrange(hot.keys.dead[0])
    assert fields[b"outbox_id"].decode() == sid
    assert fields[b"entry:k"] == b"p" and fields[b"entry:t"] == b"x"
    assert sid in fields[b"reason"].decode() and b"cannot be decoded" in fields[b"reason"]
    assert await hot.redis.xlen(hot.keys.outboxes[0]) == 0
    assert (await external.astats())["dead_letters"] == 1


# --- values the stores cannot take ------------------------------------------------------


async def test_unencodable_channel_value_and_write(external: AsyncHybridSaver) -> None:
    tid = str(uuid.uuid4())
    with pytest.raises(SerializationError, match="'messages'"):
        await external.aput(generate_config(tid), *one_put(value=object()))
    assert await external.aget_tuple(generate_config(tid)) is None  # nothing half-written
    config = await external.aput(generate_config(tid), *one_put())
    with pytest.raises(SerializationError, match="task 'task-1'"):
        await external.aput_writes(config, [("messages", object())], "task-1")
    got = await external.aget_tuple(config)
    assert got is not None and got.pending_writes == []


@pytest.mark.parametrize("redis_server", [("--proto-max-bulk-len", "1mb")], indirect=True)
async def test_oversize_value(external: AsyncHybridSaver) -> None:
    """A value over the server's proto-max-bulk-len: SerializationError naming
    the channel and the limit, nothing written; the same for a pending write."""
    big = [noise(2 * 1024 * 1024)]  # random text: still over the limit once compressed
    tid = str(uuid.uuid4())
    with pytest.raises(SerializationError, match=r"channel 'messages' is [\d,]+ bytes.*1,048,576"):
        await external.aput(generate_config(tid), *one_put(value=big))
    assert await external.aget_tuple(generate_config(tid)) is None
    assert await external.outbox.backlog() == (0, None)
    config = await external.aput(generate_config(tid), *one_put())
    with pytest.raises(SerializationError, match="write 0 to channel 'messages'"):
        await external.aput_writes(config, [("messages", big)], "task-1")
    got = await external.aget_tuple(config)
    assert got is not None and got.pending_writes == []


@pytest.mark.parametrize(
    "redis_server", [("--maxmemory", "3mb", "--maxmemory-policy", "noeviction")], indirect=True
)
async def test_redis_out_of_memory(external: AsyncHybridSaver) -> None:
    tid = str(uuid.uuid4())
    with pytest.raises(HotTierFullError, match=r"(?i)memory"):
        for step in range(1, 20):
            await external.aput(generate_config(tid), *one_put(step, [noise(700_000, step)]))
    # A large value goes in a SET queued in the put's MULTI: refused there, nothing ran.
    assert [k async for k in external.hot.redis.scan_iter(f"{external.hot.prefix}:*:t:*")] == []
    puts = await external.hot.redis.xlen(external.hot.outbox(tid))
    assert (
        len([k async for k in external.hot.redis.scan_iter(f"{external.hot.prefix}:*:v:*")]) == puts
    )


# --- misuse -----------------------------------------------------------------------


async def test_sync_call_on_the_event_loop(external: AsyncHybridSaver) -> None:
    with pytest.raises(asyncio.InvalidStateError, match="async methods"):
        external.get_tuple(generate_config("t"))
    with pytest.raises(asyncio.InvalidStateError):
        external.put(generate_config("t"), *one_put())
