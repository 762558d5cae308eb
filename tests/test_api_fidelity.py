"""Behaving like the official savers where a user can tell: the sync class's
lifecycle, calls from other loops and threads, copy_thread's metadata,
`before` without `configurable`, Redis URL errors."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any, Literal

import pytest
from langgraph.checkpoint.conformance.test_utils import generate_config
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.types import Command

from langgraph_hybrid_saver import (
    AsyncHybridSaver,
    ConfigError,
    HybridSaver,
    SaverClosedError,
)

from .conftest import hybrid_saver, pg_schema
from .helpers import build, put_chain


def test_sync_saver_has_the_async_surface_and_setup(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    with HybridSaver.from_conn_string(redis_url, durable_url, key_prefix=key_prefix) as saver:
        saver.setup()  # as PostgresSaver users call it; idempotent
        saver.setup()
        tid = str(uuid.uuid4())

        async def from_a_loop() -> dict[str, Any]:
            await put_chain(saver, tid, 2)
            async with saver.alease(tid) as token:
                assert token
            await saver.aflush(timeout=10)
            return await saver.astats()

        stats = asyncio.run(from_a_loop())
        assert stats["backlog"] == 0 and stats["dead_letters"] == 0
        assert saver.get_tuple(generate_config(tid)) is not None
        asyncio.run(saver.aclose())
        with pytest.raises(SaverClosedError):
            saver.get_tuple(generate_config(tid))


async def _alist(saver: Any, config: Any) -> list[Any]:
    return [t async for t in saver.alist(config)]


def test_every_call_after_close_raises_at_once(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    saver = HybridSaver(redis_url, durable_url, key_prefix=key_prefix)
    saver.close()
    saver.close()  # idempotent
    config = generate_config(str(uuid.uuid4()))
    calls = [
        lambda: saver.get_tuple(config),
        lambda: list(saver.list(config)),
        lambda: saver.flush(),
        lambda: asyncio.run(saver.aget_tuple(config)),
        lambda: asyncio.run(saver.aflush()),
        lambda: asyncio.run(_alist(saver, config)),
    ]
    for call in calls:
        started = time.monotonic()
        box: list[BaseException] = []

        def run(call: Any = call, box: list[BaseException] = box) -> None:
            try:
                call()
            except BaseException as e:
                box.append(e)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(timeout=5)
        assert not worker.is_alive(), "a call after close blocked"
        assert box and isinstance(box[0], SaverClosedError), box
        assert time.monotonic() - started < 5


async def test_a_saver_used_from_another_loop_closes_cleanly(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    saver = await AsyncHybridSaver.open(redis_url, durable_url, key_prefix=key_prefix)
    tid = str(uuid.uuid4())
    try:
        await put_chain(saver, tid, 1)

        def other_loop() -> Any:
            async def read() -> Any:
                await put_chain(saver, tid, 1)
                assert len(await _alist(saver, generate_config(tid))) == 2
                return await saver.aget_tuple(generate_config(tid))

            return asyncio.run(read())

        assert await asyncio.to_thread(other_loop) is not None
    finally:
        await saver.aclose()  # its connections all live on this loop
    with pytest.raises(SaverClosedError):
        await saver.aget_tuple(generate_config(tid))


async def test_aclose_honours_its_drain_timeout(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    saver = await AsyncHybridSaver.open(redis_url, durable_url, key_prefix=key_prefix)
    tid = str(uuid.uuid4())
    await put_chain(saver, tid, 2)

    async def hang(ops: Any) -> int:  # a durable store that never answers
        await asyncio.sleep(3600)
        return 0

    saver.backend.apply = hang  # type: ignore[method-assign]
    await put_chain(saver, tid, 1)
    started = time.monotonic()
    await saver.aclose(drain_timeout=1)
    assert time.monotonic() - started < 3.5


async def test_copied_checkpoints_name_their_new_thread(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    async with hybrid_saver(redis_url, durable_url, key_prefix) as saver:
        src, dst = str(uuid.uuid4()), str(uuid.uuid4())
        await put_chain(saver, src, 3)
        # one checkpoint whose metadata names its thread, as the Agent Server's do
        tup = await saver.aget_tuple(generate_config(src))
        assert tup is not None
        await saver.aput(
            tup.config, tup.checkpoint | {"id": str(uuid.uuid4())}, {"thread_id": src}, {}
        )
        await saver.acopy_thread(src, dst)
        copied = [t async for t in saver.alist(generate_config(dst), filter={"thread_id": dst})]
        assert len(copied) == 1
        assert [t async for t in saver.alist(generate_config(dst), filter={"thread_id": src})] == []
        await saver.aflush(timeout=10)
        durable = [t async for t in saver.alist(None, filter={"thread_id": dst})]
        assert len(durable) == 1


async def test_before_without_configurable_is_honoured(saver: AsyncHybridSaver) -> None:
    tid = str(uuid.uuid4())
    configs = await put_chain(saver, tid, 4)
    middle = configs[2]["configurable"]["checkpoint_id"]
    for before in ({"configurable": {"checkpoint_id": middle}}, {"checkpoint_id": middle}):
        listed = [t.config async for t in saver.alist(generate_config(tid), before=before)]
        assert listed == configs[:2][::-1]
    with pytest.raises(ConfigError, match="before"):
        [t async for t in saver.alist(generate_config(tid), before={"configurable": {}})]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:abc/0", "redis://127.0.0.1:abc/0"),
        ("redis://127.0.0.1:6379/99", "redis://127.0.0.1:6379/99"),
        ("127.0.0.1:6379", "127.0.0.1:6379"),
        ("/tmp/x.db", "/tmp/x.db"),
        ("", "''"),
    ],
    ids=["port", "db-index", "no-scheme", "a-path", "empty"],
)
async def test_bad_redis_urls_are_config_errors_quoting_the_input(
    redis_url: str, url: str, shown: str
) -> None:
    with pytest.raises(ConfigError) as err:
        async with AsyncHybridSaver.from_conn_string(url, "sqlite:////tmp/unused.db"):
            pass
    message = str(err.value)
    assert shown in message and "redis://127.0.0.1:6379/0" in message
    assert "localhost" not in message


@pytest.mark.parametrize("store", ["pg", "sqlite"])
async def test_the_saver_draws_nothing_from_uuid4(
    redis_url: str,
    pg_url: str,
    tmp_path: Any,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    store: str,
) -> None:
    """LangGraph's own tests patch uuid4 with a fixed sequence: a checkpointer
    that draws from it shifts their ids. The saver's owner names and
    temporary keys come from `secrets` instead. (Cosmos DB's SDK draws
    request ids from uuid4 itself.)"""
    durable_url = pg_url if store == "pg" else f"sqlite:///{tmp_path}/u.db"
    from langgraph.checkpoint.memory import InMemorySaver

    from .helpers import build

    drawn: list[str] = []
    real = uuid.uuid4

    def counting() -> uuid.UUID:
        value = real()
        drawn.append(str(value))
        return value

    async def uuid4_calls(checkpointer: Any) -> int:
        graph = build(checkpointer)
        config = {"configurable": {"thread_id": f"u-{real()}"}}
        drawn.clear()
        monkeypatch.setattr(uuid, "uuid4", counting)
        try:
            big = "x" * 40_000  # a large value: the temporary-key path
            await graph.ainvoke({"steps": [], "approved": None, "detail": big}, config)
        finally:
            monkeypatch.setattr(uuid, "uuid4", real)
        return len(drawn)

    reference = await uuid4_calls(InMemorySaver())
    monkeypatch.setattr(uuid, "uuid4", counting)
    try:
        saver = await AsyncHybridSaver.open(redis_url, durable_url, key_prefix=key_prefix)
    finally:
        monkeypatch.setattr(uuid, "uuid4", real)
    try:
        assert drawn == []  # opening (the reconciler's owner name) draws nothing
        assert await uuid4_calls(saver) == reference
    finally:
        await saver.aclose()


def shape(t: Any) -> tuple[Any, ...]:
    """A listed checkpoint without its ids (each saver makes its own)."""
    ns = t.config["configurable"]["checkpoint_ns"]
    return (
        ns.partition(":")[0],
        t.metadata["step"],
        t.metadata["source"],
        t.parent_config is not None,
        sorted(t.checkpoint["channel_values"]),
        sorted(channel for _, channel, _ in t.pending_writes),
    )


@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
async def test_prune_keeps_what_async_postgres_saver_keeps(
    redis_url: str,
    durable_url: str,
    pg_admin_url: str,
    key_prefix: str,
    durability: Literal["sync", "async", "exit"],
) -> None:
    """A graph with a subgraph node (its namespace is a call: `details:<task
    id>`) and an interrupt, run twice on a thread, then pruned by each saver:
    the same checkpoints remain, the subgraph's calls going with their root
    checkpoints, and the graph resumes the same."""
    thread = {"configurable": {"thread_id": f"prune-{uuid.uuid4().hex[:8]}"}}
    start = {"steps": [], "approved": None, "detail": ""}
    shapes = []
    with pg_schema(pg_admin_url) as ref_url:
        async with (
            AsyncPostgresSaver.from_conn_string(ref_url) as official,
            hybrid_saver(redis_url, durable_url, key_prefix) as saver,
        ):
            await official.setup()
            for checkpointer in (official, saver):
                graph = build(checkpointer)
                for _ in range(2):
                    await graph.ainvoke(start, thread, durability=durability)
                    await graph.ainvoke(Command(resume="yes"), thread, durability=durability)
                before = [shape(t) async for t in checkpointer.alist(thread)]
                # "exit" saves the root graph's last checkpoint of each run only
                assert any(s[0] == "details" for s in before) == (durability != "exit")
                await checkpointer.aprune([thread["configurable"]["thread_id"]])
                after = [shape(t) async for t in checkpointer.alist(thread)]
                if checkpointer is saver:  # a namespace Redis keeps nothing of leaves its set
                    base = saver.hot.base(thread["configurable"]["thread_id"])
                    for ns in await saver.hot.redis.smembers(base + ":n"):
                        held = [f"{base}:{k}:{len(ns)}:{ns.decode()}" for k in "ciwbV"]
                        assert await saver.hot.redis.exists(*held), ns
                await graph.ainvoke(start, thread, durability=durability)
                resumed = await graph.ainvoke(Command(resume="no"), thread, durability=durability)
                shapes.append((before, after, resumed))
    assert shapes[1] == shapes[0]
    assert len(shapes[0][1]) < len(shapes[0][0])
