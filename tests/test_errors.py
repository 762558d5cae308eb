"""Invariant 9: bad input gets a typed error that names the value and the fix."""

from __future__ import annotations

import re

import pytest
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)

from langgraph_hybrid_saver import (
    AsyncHybridSaver,
    ConfigError,
    HybridSaverError,
    SaverClosedError,
    SerializationError,
    ServerUnreachableError,
)

from .conftest import free_port


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"configurable": {}},
        {"configurable": {"thread_id": ""}},
        {"configurable": {"thread_id": None}},
        {"configurable": {"thread_id": b"x"}},
    ],
    ids=["no-configurable", "no-thread", "empty", "none", "bytes"],
)
async def test_missing_or_bad_thread_id(saver: AsyncHybridSaver, config: dict) -> None:
    with pytest.raises(ConfigError, match="thread_id") as err:
        await saver.aget_tuple(config)  # type: ignore[arg-type]
    assert isinstance(err.value, ValueError) and isinstance(err.value, HybridSaverError)
    with pytest.raises(ConfigError, match="thread_id"):
        await saver.aput(config, generate_checkpoint(), generate_metadata(), {})  # type: ignore[arg-type]


async def test_int_thread_ids_are_accepted_as_strings(saver: AsyncHybridSaver) -> None:
    stored = await saver.aput(
        {"configurable": {"thread_id": 42, "checkpoint_ns": ""}},
        generate_checkpoint(),
        generate_metadata(),
        {},
    )
    assert stored["configurable"]["thread_id"] == "42"
    assert await saver.aget_tuple({"configurable": {"thread_id": "42"}}) is not None


async def test_unknown_durable_scheme(redis_url: str) -> None:
    with pytest.raises(ConfigError, match="'mysql'") as err:
        async with AsyncHybridSaver.from_conn_string(redis_url, "mysql://u:s3cret@db:3306/x"):
            pass
    assert "s3cret" not in str(err.value)


async def test_bad_redis_url(pg_url: str) -> None:
    with pytest.raises(ConfigError, match=re.escape("redis://127.0.0.1:6379/0")):
        async with AsyncHybridSaver.from_conn_string("http://127.0.0.1:6379", pg_url):
            pass


async def test_unreachable_redis_names_host_port_not_password(pg_url: str) -> None:
    port = free_port()
    with pytest.raises(ServerUnreachableError, match=f"127.0.0.1:{port}") as err:
        async with AsyncHybridSaver.from_conn_string(
            f"redis://:hunter2@127.0.0.1:{port}/0", pg_url
        ):
            pass
    assert "hunter2" not in str(err.value) and "hunter2" not in repr(err.value)
    assert isinstance(err.value, ConnectionError)


async def test_unreachable_postgres_names_host_port_not_password(redis_url: str) -> None:
    port = free_port()
    url = f"postgresql://postgres:hunter2@127.0.0.1:{port}/test?connect_timeout=1"
    with pytest.raises(ServerUnreachableError, match=f"127.0.0.1:{port}") as err:
        async with AsyncHybridSaver.from_conn_string(redis_url, url):
            pass
    assert "hunter2" not in str(err.value)


async def test_unserializable_metadata(saver: AsyncHybridSaver) -> None:
    with pytest.raises(SerializationError, match="metadata"):
        await saver.aput(
            generate_config("t-bad-md"),
            generate_checkpoint(),
            generate_metadata(extra=object()),
            {},
        )
    assert await saver.aget_tuple(generate_config("t-bad-md")) is None  # nothing half-written


async def test_channel_value_without_version(saver: AsyncHybridSaver) -> None:
    cp = generate_checkpoint(channel_values={"messages": ["hi"]})
    with pytest.raises(SerializationError, match="'messages'"):
        await saver.aput(generate_config("t-nover"), cp, generate_metadata(), {})


async def test_bad_list_arguments(saver: AsyncHybridSaver) -> None:
    with pytest.raises(ConfigError, match="filter"):
        [t async for t in saver.alist(None, filter={"x": object()})]
    with pytest.raises(ConfigError, match="limit"):
        [t async for t in saver.alist(None, limit="10")]  # type: ignore[arg-type]


async def test_bad_prune_arguments(saver: AsyncHybridSaver) -> None:
    with pytest.raises(ConfigError, match="not a str") as raised:
        await saver.aprune("thread-1")
    assert isinstance(raised.value, TypeError)  # as the official savers raise
    with pytest.raises(TypeError, match="not a str"):
        await saver.adelete_for_runs("run-1")
    with pytest.raises(ConfigError, match="'oldest'"):
        await saver.aprune(["thread-1"], strategy="oldest")


async def test_options_are_checked(redis_url: str, pg_url: str) -> None:
    for options, match in (
        ({"reconciler": "thread"}, "reconciler"),
        ({"durability": "eventually"}, "durability"),
        ({"key_prefix": "a{b}"}, "key_prefix"),
        ({"ttl": -1}, "ttl"),
        ({"shards": 0}, "shards"),
        ({"reconcile_linger_ms": -5}, "reconcile_linger_ms=-5"),
        ({"reconcile_linger_ms": 0.5}, "reconcile_linger_ms"),
    ):
        with pytest.raises(ConfigError, match=match):
            async with AsyncHybridSaver.from_conn_string(redis_url, pg_url, **options):
                pass


async def test_shard_count_must_match_other_processes(
    redis_url: str, pg_url: str, key_prefix: str
) -> None:
    async with AsyncHybridSaver.from_conn_string(redis_url, pg_url, key_prefix=key_prefix):
        with pytest.raises(ConfigError, match="shards=16"):
            async with AsyncHybridSaver.from_conn_string(
                redis_url, pg_url, key_prefix=key_prefix, shards=4
            ):
                pass


async def test_closed_saver(redis_url: str, pg_url: str) -> None:
    async with AsyncHybridSaver.from_conn_string(redis_url, pg_url) as saver:
        pass
    with pytest.raises(SaverClosedError, match="closed"):
        await saver.aget_tuple(generate_config("t"))
