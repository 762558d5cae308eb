"""The hot tier's lifecycle: TTL, read-through, the bounded hot window, and
DeltaChannel history across both tiers."""

from __future__ import annotations

import asyncio
import operator
import uuid
from collections.abc import Sequence
from typing import Annotated, Any

import pytest
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.conformance.test_utils import generate_config
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from langgraph_hybrid_saver import AsyncHybridSaver

from .helpers import put_chain


async def hot_memory(saver: AsyncHybridSaver, thread_id: str) -> int:
    """Bytes Redis uses for one thread (MEMORY USAGE of each of its keys)."""
    base = saver.hot.base(thread_id)
    keys = [f"{base}:n"] + [f"{base}:{k}:0:" for k in "icbwz"]
    return sum([await saver.hot.redis.memory_usage(k) or 0 for k in keys])


async def test_expired_thread_is_read_through_and_rewarmed(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    async with AsyncHybridSaver.from_conn_string(
        redis_url, durable_url, key_prefix=key_prefix, ttl=0.5
    ) as saver:
        tid = str(uuid.uuid4())
        await put_chain(saver, tid, 3)
        before = [t async for t in saver.alist(generate_config(tid))]
        await saver.aflush(timeout=10)
        # The TTL starts once the thread's last entry is durable.
        ttl_ms = await saver.hot.redis.pttl(saver.hot.base(tid) + ":c:0:")
        assert 0 < ttl_ms <= 500
        await asyncio.sleep(0.7)
        assert (await saver.hot.get(tid, "", None)).checkpoint_id is None  # expired
        assert await saver.aget_tuple(generate_config(tid)) == before[0]
        assert [t async for t in saver.alist(generate_config(tid))] == before
        assert (await saver.hot.get(tid, "", None)).stored is not None  # hot again


@pytest.mark.parametrize("refresh", [True, False], ids=["refresh-on-read", "write-only"])
async def test_ttl_refresh_on_read(
    redis_url: str, durable_url: str, key_prefix: str, refresh: bool
) -> None:
    async with AsyncHybridSaver.from_conn_string(
        redis_url, durable_url, key_prefix=key_prefix, ttl=1.0, refresh_ttl_on_read=refresh
    ) as saver:
        tid = str(uuid.uuid4())
        await put_chain(saver, tid, 1)
        await asyncio.sleep(0.7)
        await saver.aget_tuple(generate_config(tid))
        await asyncio.sleep(0.6)  # 1.3 s after the write
        still_hot = (await saver.hot.get(tid, "", None)).stored is not None
        assert still_hot is refresh


async def test_hot_window_bounds_redis_memory_per_thread(
    redis_url: str, durable_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    steps = 1000
    usage = {}
    for window in (None, 20):
        async with AsyncHybridSaver.from_conn_string(
            redis_url, durable_url, key_prefix=f"{key_prefix}w{window}", hot_window=window
        ) as saver:
            tid = str(uuid.uuid4())
            configs = await put_chain(saver, tid, steps, rolling=20)
            await saver.aflush(timeout=60)  # the window trims only what is durable
            usage[window] = await hot_memory(saver, tid)
            hot_ids = await saver.hot.redis.zrange(saver.hot.base(tid) + ":i:0:", 0, -1)
            assert len(hot_ids) == (window or steps)
            # every checkpoint is still readable: old ones from the durable store
            oldest = await saver.aget_tuple(configs[0])
            assert oldest is not None and oldest.pending_writes == [("task-0", "messages", "w0")]
            listed = [t.config async for t in saver.alist(generate_config(tid))]
            assert listed == configs[::-1]
    with capsys.disabled():
        print(
            f"\nRedis memory for one {steps}-step thread: unbounded {usage[None] / 1024:.0f} KiB,"
            f" hot_window=20 {usage[20] / 1024:.0f} KiB"
        )
    assert usage[20] * 10 < usage[None]


# --- DeltaChannel -----------------------------------------------------------


def concat(state: list[str] | None, writes: Sequence[list[str]]) -> list[str]:
    out = list(state or [])
    for w in writes:
        out.extend(w)
    return out


class DeltaState(TypedDict):
    log: Annotated[list[str], DeltaChannel(concat, snapshot_frequency=3)]
    n: Annotated[int, operator.add]


def delta_graph(checkpointer: Any) -> Any:
    g = StateGraph(DeltaState)
    g.add_node("step", lambda s: {"log": [f"e{s['n']}"], "n": 1})
    g.add_edge(START, "step")
    g.add_edge("step", END)
    return g.compile(checkpointer=checkpointer)


async def test_delta_channel_history_matches_the_reference_walk(saver: AsyncHybridSaver) -> None:
    graph, reference = delta_graph(saver), delta_graph(InMemorySaver())
    cfg = {"configurable": {"thread_id": f"delta-{uuid.uuid4()}"}}
    for _ in range(8):
        ours = await graph.ainvoke({"log": [], "n": 0}, cfg)
        theirs = await reference.ainvoke({"log": [], "n": 0}, cfg)
        assert ours == theirs
    history = [s async for s in graph.aget_state_history(cfg)]
    for snapshot in history[:6]:
        fast = await saver.aget_delta_channel_history(config=snapshot.config, channels=["log"])
        slow = await BaseCheckpointSaver.aget_delta_channel_history(
            saver, config=snapshot.config, channels=["log"]
        )
        assert fast == slow
    # Also when the history lives only in the durable store.
    await saver.aflush(timeout=10)
    await saver.hot.drop_thread(cfg["configurable"]["thread_id"], queue=False)
    assert (await graph.aget_state(cfg)).values == ours


async def test_list_skips_the_durable_store_only_while_redis_holds_the_whole_thread(
    saver: AsyncHybridSaver, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    original = saver.backend.list

    async def counting(query: Any) -> Any:
        calls.append(query)
        return await original(query)

    monkeypatch.setattr(saver.backend, "list", counting)
    tid = str(uuid.uuid4())
    configs = await put_chain(saver, tid, 5)
    child = await put_chain(saver, tid, 2, ns="child:1")
    listed = [t.config async for t in saver.alist({"configurable": {"thread_id": tid}}, limit=3)]
    assert listed == [child[1], child[0], configs[-1]]  # newest first across namespaces
    assert calls == []  # both namespaces started in Redis: nothing else exists
    # Once Redis no longer holds the thread whole, the durable store is asked.
    await saver.aflush(timeout=10)
    await saver.hot.drop_thread(tid, queue=False)
    await saver.aget_tuple(configs[-1])  # read through: Redis holds one checkpoint again
    again = [t.config async for t in saver.alist(generate_config(tid))]
    assert again == configs[::-1]
    assert len(calls) == 1


async def test_list_by_checkpoint_id_with_a_limit_finds_an_older_checkpoint(
    saver: AsyncHybridSaver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`list(config with checkpoint_id, limit=1)` returns that checkpoint even
    when it is not among the newest `limit` (it once returned nothing while
    Redis held the whole thread), in one round trip, as PostgresSaver does."""
    tid = str(uuid.uuid4())
    configs = await put_chain(saver, tid, 4)
    calls: list[object] = []
    original = saver.hot.get_many

    async def spy(keys: Any) -> Any:
        if keys:
            calls.append(keys)
        return await original(keys)

    monkeypatch.setattr(saver.hot, "get_many", spy)
    for wanted in configs:
        listed = [t async for t in saver.alist(wanted, limit=1)]
        assert [t.config for t in listed] == [wanted]
        assert listed[0].pending_writes and listed[0].checkpoint["channel_values"]["messages"]
    before = [t.config async for t in saver.alist(configs[1], before=configs[1])]
    assert before == []  # before excludes the only candidate
    assert calls == []  # served whole by the list script
