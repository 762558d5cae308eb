"""The local cache (hot/local_cache.py) on real Redis servers: two processes
taking turns on one thread never read a stale checkpoint; what another
connection writes, deletes or flushes is never served from memory; losing
the invalidation connection or the lane turns the cache off until tracking is
back; the bound in bytes holds; a caller cannot change what is cached.
"""

from __future__ import annotations

import asyncio
import json
import operator
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from redis.asyncio import Redis
from typing_extensions import TypedDict

from langgraph_hybrid_saver import AsyncHybridSaver, HybridSaver
from langgraph_hybrid_saver.errors import ConfigError

from .conftest import ROOT, PrivateRedis, hybrid_saver
from .helpers import chat_graph, put_chain


def latest_id(t: Any) -> str | None:
    return t.config["configurable"]["checkpoint_id"] if t else None


def put_chain_sync(saver: HybridSaver, thread_id: str, parent: Any) -> list[str]:
    """One checkpoint on top of `parent`, through the sync API (blocking)."""
    cp = empty_checkpoint()
    stored = saver.put(parent, cp, {"source": "loop", "step": 1}, {})
    return [stored["configurable"]["checkpoint_id"]]


def config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


async def until(condition: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def pair(
    private_redis: PrivateRedis, pg_url: str, key_prefix: str
) -> AsyncIterator[tuple[AsyncHybridSaver, AsyncHybridSaver]]:
    """Two savers of one key prefix (two connections to Redis, as two processes)."""
    async with (
        hybrid_saver(private_redis.url, pg_url, key_prefix) as a,
        hybrid_saver(private_redis.url, pg_url, key_prefix) as b,
    ):
        await until(lambda: a.hot.local.ready and b.hot.local.ready)  # type: ignore[union-attr]
        yield a, b


async def test_two_processes_taking_turns_on_one_thread_read_every_turn(
    redis_url: str, pg_url: str, key_prefix: str
) -> None:
    thread = "chat-two-processes"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.chat_child", redis_url, pg_url, key_prefix, thread],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        async with hybrid_saver(redis_url, pg_url, key_prefix) as saver:
            graph = chat_graph().compile(checkpointer=saver)
            cfg = {"configurable": {"thread_id": thread}}
            expected: list[str] = []
            for n in range(40):
                if n % 2 == 0:  # our turn: a stale read would drop the child's last turn
                    out = await graph.ainvoke({"messages": [f"parent-{n}"]}, cfg)
                    messages = out["messages"]
                    expected += [f"parent-{n}", f"reply-{len(expected) + 1}"]
                else:
                    child.stdin.write(f"turn {n}\n")
                    child.stdin.flush()
                    line = await asyncio.get_running_loop().run_in_executor(
                        None, child.stdout.readline
                    )
                    messages = json.loads(line)
                    expected += [f"child-{n}", f"reply-{len(expected) + 1}"]
                assert messages == expected, f"turn {n}"
                state = await graph.aget_state(cfg)
                assert state.values["messages"] == expected, f"read after turn {n}"
            stats = (await saver.astats())["local_cache"]
            # Each of our turns reads what the child wrote (a miss, then cached);
            # the read after it is ours (a hit).
            assert stats["hits"] >= 19 and stats["invalidations"] >= 19, stats
    finally:
        if child.stdin is not None:
            child.stdin.write("quit\n")
            child.stdin.close()
        assert child.wait(timeout=30) == 0


async def test_a_returning_thread_is_served_from_memory_until_another_connection_writes(
    pair: tuple[AsyncHybridSaver, AsyncHybridSaver],
) -> None:
    a, b = pair
    [first] = await put_chain(a, "t", 1)
    assert latest_id(await a.aget_tuple(config("t"))) == first["configurable"]["checkpoint_id"]
    hits = a.hot.local.hits  # type: ignore[union-attr]
    for _ in range(5):
        assert latest_id(await a.aget_tuple(config("t"))) == first["configurable"]["checkpoint_id"]
    assert a.hot.local.hits == hits + 5  # type: ignore[union-attr]
    # b writes; a's next read (no sleep) is b's checkpoint
    [second] = await put_chain(b, "t", 1, parent=first["configurable"]["checkpoint_id"])
    assert latest_id(await a.aget_tuple(config("t"))) == second["configurable"]["checkpoint_id"]
    # b's pending writes reach a too
    await b.aput_writes(second, [("messages", "from-b")], "task-b")
    got = await a.aget_tuple(config("t"))
    assert got is not None and ("task-b", "messages", "from-b") in got.pending_writes
    # our own writes keep the entry current (no round trip for the next read)
    await a.aput_writes(second, [("messages", "from-a")], "task-a")
    hits = a.hot.local.hits  # type: ignore[union-attr]
    got = await a.aget_tuple(config("t"))
    assert got is not None and a.hot.local.hits == hits + 1  # type: ignore[union-attr]
    assert got == await b.aget_tuple(config("t"))
    # b deletes the thread: a reads nothing
    await b.adelete_thread("t")
    assert await a.aget_tuple(config("t")) is None


async def test_own_puts_update_the_entry(pair: tuple[AsyncHybridSaver, AsyncHybridSaver]) -> None:
    a, b = pair
    configs = await put_chain(a, "mine", 1)
    await a.aget_tuple(config("mine"))  # cached
    configs += await put_chain(a, "mine", 3, parent=configs[-1]["configurable"]["checkpoint_id"])
    hits = a.hot.local.hits  # type: ignore[union-attr]
    got = await a.aget_tuple(config("mine"))
    assert a.hot.local.hits == hits + 1, "the latest put was served from memory"  # type: ignore[union-attr]
    # the same tuple as a Redis read (b has no entry for the thread)
    assert got == await b.aget_tuple(config("mine"))
    assert latest_id(got) == configs[-1]["configurable"]["checkpoint_id"]


async def test_flush_and_lost_connections_turn_the_cache_off_until_tracking_is_back(
    pair: tuple[AsyncHybridSaver, AsyncHybridSaver], private_redis: PrivateRedis
) -> None:
    a, b = pair
    local = a.hot.local
    assert local is not None and a.hot.tracking is not None
    [first] = await put_chain(a, "f", 1)
    await a.aget_tuple(config("f"))
    assert local.entries
    admin = Redis.from_url(private_redis.url)
    try:
        await admin.flushdb()  # Redis says "everything changed"
        await until(lambda: not local.entries)
        # the invalidation connection is killed: off, then back by itself
        await admin.client_kill_filter(_id=a.hot.tracking.client_id)
        await until(lambda: not local.ready)
        await until(lambda: local.ready, seconds=10)
        [again] = await put_chain(b, "f", 1)
        assert latest_id(await a.aget_tuple(config("f"))) == again["configurable"]["checkpoint_id"]
        # the lane is killed: the new one turns tracking on before it is used
        lane = a.hot.run.lanes
        assert lane is not None and lane.pipe is not None
        lane_id = int(await lane.call("CLIENT", "ID"))
        await admin.client_kill_filter(_id=lane_id)
        await until(lambda: lane.pipe is None or lane.pipe.broken is not None)
        await a.aget_tuple(config("f"))  # opens a new lane
        await until(lambda: local.ready)
        await a.aget_tuple(config("f"))
        [third] = await put_chain(b, "f", 1, parent=again["configurable"]["checkpoint_id"])
        assert latest_id(await a.aget_tuple(config("f"))) == third["configurable"]["checkpoint_id"]
    finally:
        await admin.aclose()
    assert first != again


async def test_the_bound_in_bytes_holds(redis_url: str, pg_url: str, key_prefix: str) -> None:
    async with hybrid_saver(redis_url, pg_url, key_prefix, local_cache_bytes=5000) as s:
        local = s.hot.local
        assert local is not None
        await until(lambda: local.ready)
        for i in range(20):
            await put_chain(s, f"b{i}", 1)
            await s.aget_tuple(config(f"b{i}"))
            assert local.bytes <= 5000
        assert 0 < len(local.entries) < 20
        assert ("b19", "") in local.entries  # the newest stay


async def test_a_caller_changing_its_tuple_does_not_change_the_cache(
    pair: tuple[AsyncHybridSaver, AsyncHybridSaver],
) -> None:
    a, _ = pair
    await put_chain(a, "m", 1)
    got = await a.aget_tuple(config("m"))
    assert got is not None
    got.checkpoint["channel_versions"]["messages"] = "tampered"
    got.checkpoint["channel_values"]["messages"].append("tampered")
    got.metadata["step"] = 99
    again = await a.aget_tuple(config("m"))
    assert again is not None and again != got
    assert "tampered" not in again.checkpoint["channel_values"]["messages"]


async def test_options(redis_url: str, pg_url: str, key_prefix: str) -> None:
    for bad in (-1, 1.5, "64MB", True):
        with pytest.raises(ConfigError, match="local_cache_bytes"):
            async with hybrid_saver(redis_url, pg_url, key_prefix, local_cache_bytes=bad):
                pass
    for off in (0, None):
        async with hybrid_saver(redis_url, pg_url, key_prefix, local_cache_bytes=off) as s:
            assert s.hot.local is None and "local_cache" not in await s.astats()


class Fanout(TypedDict):
    log: Annotated[list[str], operator.add]


@pytest.mark.parametrize("options", [{}, {"durability": "write_through"}])
async def test_a_finished_parallel_node_is_not_run_again_on_resume(
    redis_url: str, pg_url: str, key_prefix: str, options: dict[str, Any]
) -> None:
    """Two parallel nodes, one interrupts: the other's result is a pending
    write of the checkpoint, saved (durability "async") while that
    checkpoint's put waits; a cached thread must still hold it."""
    runs = {"w1": 0}

    def w1(state: Fanout) -> dict[str, Any]:
        runs["w1"] += 1
        return {"log": ["w1"]}

    def w2(state: Fanout) -> dict[str, Any]:
        return {"log": [f"w2:{interrupt('w2?')}"]}

    builder = StateGraph(Fanout)
    builder.add_node("start", lambda state: {"log": ["start"]})
    builder.add_node("w1", w1)
    builder.add_node("w2", w2)
    builder.add_edge(START, "start")
    builder.add_edge("start", "w1")
    builder.add_edge("start", "w2")
    builder.add_edge("w1", END)
    builder.add_edge("w2", END)
    async with hybrid_saver(redis_url, pg_url, key_prefix, **options) as saver:
        graph = builder.compile(checkpointer=saver)
        for i in range(5):
            cfg = {"configurable": {"thread_id": f"fanout-{i}"}}
            await graph.ainvoke({"log": []}, cfg, durability="async")
            await graph.ainvoke(Command(resume="first"), cfg, durability="async")  # cached now
            runs["w1"] = 0
            await graph.ainvoke({"log": []}, cfg, durability="async")
            state = await graph.aget_state(cfg)
            assert [i.value for i in state.interrupts] == ["w2?"], f"thread {i}"
            out = await graph.ainvoke(Command(resume="ok"), cfg, durability="async")
            assert runs["w1"] == 1, f"thread {i}: w1 ran again on resume"
            assert out["log"].count("w1") == 2


async def test_an_invalidation_waiting_in_the_socket_is_read_before_a_hit(
    pair: tuple[AsyncHybridSaver, AsyncHybridSaver],
    private_redis: PrivateRedis,
    pg_url: str,
    key_prefix: str,
) -> None:
    """Another process's write returns while this loop does not run (a
    blocking call here): its invalidation sits unread in our socket; the next
    read must not be a hit."""
    a, _ = pair
    other = await asyncio.to_thread(
        HybridSaver, private_redis.url, pg_url, key_prefix=key_prefix, local_cache_bytes=0
    )
    try:
        [first] = await put_chain(a, "w", 1)
        for i in range(20):
            assert latest_id(await a.aget_tuple(config("w"))) == latest_id(
                await asyncio.to_thread(other.get_tuple, config("w"))
            )
            parent = other.get_tuple(config("w"))  # blocking: this loop stands still
            assert parent is not None
            [written] = put_chain_sync(other, "w", parent.config)
            assert latest_id(await a.aget_tuple(config("w"))) == written, f"write {i}"
    finally:
        await asyncio.to_thread(other.close)
    assert first is not None
