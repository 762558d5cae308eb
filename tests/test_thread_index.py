"""The thread index in Redis: a read of a thread in neither tier costs no
durable read once the index is complete; a thread only the durable store
holds is never reported absent, also after Redis loses the index."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from langgraph_hybrid_saver import AsyncHybridSaver
from langgraph_hybrid_saver.hot.index import COMPLETE, build, complete_shards
from tests.conftest import hybrid_saver
from tests.helpers import put_chain, reconcile


def config(tid: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": tid, "checkpoint_ns": ""}}


async def indexed(saver: AsyncHybridSaver) -> None:
    """Wait for the background build the saver started at setup."""
    assert saver.index is not None
    if saver.index.task is not None:
        await saver.index.task
    assert all(await complete_shards(saver.hot))


def count_durable_reads(saver: AsyncHybridSaver, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    for name in ("get", "list", "get_blobs"):
        real = getattr(saver.backend, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kw)

        monkeypatch.setattr(saver.backend, name, counted)
    return calls


async def test_a_new_thread_costs_no_durable_read(
    saver: AsyncHybridSaver, monkeypatch: pytest.MonkeyPatch
) -> None:
    await indexed(saver)
    known = str(uuid.uuid4())
    await put_chain(saver, known, 2)
    calls = count_durable_reads(saver, monkeypatch)
    new = str(uuid.uuid4())
    assert await saver.aget_tuple(config(new)) is None
    assert [t async for t in saver.alist(config(new))] == []
    assert [t async for t in saver.alist({"configurable": {"thread_id": new}})] == []
    assert calls == []
    assert (await saver.aget_tuple(config(known))) is not None  # hot: no durable read either
    assert calls == []


async def test_a_deleted_thread_is_absent_without_a_durable_read(
    saver: AsyncHybridSaver, monkeypatch: pytest.MonkeyPatch
) -> None:
    await indexed(saver)
    tid = str(uuid.uuid4())
    await put_chain(saver, tid, 2)
    await saver.aflush()
    await saver.adelete_thread(tid)
    calls = count_durable_reads(saver, monkeypatch)
    assert await saver.aget_tuple(config(tid)) is None
    assert calls == []


async def test_a_durable_only_thread_is_read_through(
    saver: AsyncHybridSaver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread whose hot copy expired (or was evicted) is in the index: the
    read asks the durable store."""
    tid = str(uuid.uuid4())
    stored = await put_chain(saver, tid, 2)
    await saver.aflush()
    await indexed(saver)
    hot_keys = [k async for k in saver.hot.redis.scan_iter(f"{saver.hot.base(tid)}*")]
    await saver.hot.redis.delete(*hot_keys)
    calls = count_durable_reads(saver, monkeypatch)
    got = await saver.aget_tuple(config(tid))
    assert got is not None and got.config["configurable"]["checkpoint_id"] == (
        stored[-1]["configurable"]["checkpoint_id"]
    )
    assert calls == ["get"]


async def test_threads_the_official_saver_wrote_before_are_found(
    redis_url: str, pg_url: str, key_prefix: str
) -> None:
    """The hybrid saver put in front of a database the official saver wrote:
    the build loads its threads; until it completes, reads ask the store."""
    async with AsyncPostgresSaver.from_conn_string(pg_url) as official:
        await official.setup()
        tids = [f"old-{i}-{uuid.uuid4()}" for i in range(1500)]  # more than one page
        for tid in tids[:3]:
            cp = empty_checkpoint()
            await official.aput(config(tid), cp, {"source": "input", "step": -1}, {})
        async with official.conn.cursor() as cur:  # the rest without the checkpoint API's cost
            await cur.executemany(
                "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, checkpoint, "
                "metadata) SELECT %s, '', checkpoint_id, checkpoint, metadata FROM checkpoints "
                "WHERE thread_id = %s",
                [(tid, tids[0]) for tid in tids[3:]],
            )
    async with hybrid_saver(redis_url, pg_url, key_prefix) as saver:
        first = await saver.aget_tuple(config(tids[0]))  # perhaps before the build completes
        assert first is not None
        await indexed(saver)
        for tid in (tids[1], tids[2], tids[-1], tids[1000]):
            assert await saver.aget_tuple(config(tid)) is not None, tid
        assert await saver.aget_tuple(config(str(uuid.uuid4()))) is None


async def test_after_redis_loses_the_index_reads_ask_the_store_until_rebuilt(
    saver: AsyncHybridSaver,
) -> None:
    tid = str(uuid.uuid4())
    await put_chain(saver, tid, 2)
    await saver.aflush()
    await indexed(saver)
    # Redis restarts empty: every key of the prefix is gone.
    keys = [k async for k in saver.hot.redis.scan_iter(f"{saver.hot.keys.root}:*")]
    await saver.hot.redis.delete(*keys)
    assert not any(await complete_shards(saver.hot))
    assert saver.index is not None
    saver.index._asked = 0.0  # let the next incomplete read ask for a build at once
    assert await saver.aget_tuple(config(tid)) is not None  # from the durable store
    assert saver.index.task is not None
    await saver.index.task
    assert all(await complete_shards(saver.hot))
    keys = [k async for k in saver.hot.redis.scan_iter(f"{saver.hot.base(tid)}*")]
    await saver.hot.redis.delete(*keys)  # its hot copy expires: still known
    assert await saver.aget_tuple(config(tid)) is not None
    assert await saver.aget_tuple(config(str(uuid.uuid4()))) is None


async def test_a_build_interrupted_by_a_restart_does_not_complete(saver: AsyncHybridSaver) -> None:
    await indexed(saver)
    tid = str(uuid.uuid4())
    await put_chain(saver, tid, 1)
    await reconcile(saver)
    hot = saver.hot
    for key in hot.keys.thread_index:
        await hot.redis.delete(key)

    async def pages() -> Any:
        yield ["a-thread-loaded-before-the-restart"]
        for key in hot.keys.thread_index:  # Redis restarts mid-build
            await hot.redis.delete(key)
        yield [tid]

    assert await build(hot, pages)
    assert sum(await complete_shards(hot)) == 0
    assert not await hot.redis.sismember(hot.keys.thread_index[hot.shard(tid)], COMPLETE)


async def test_one_build_at_a_time(saver: AsyncHybridSaver) -> None:
    await indexed(saver)
    gate = asyncio.Event()

    async def slow() -> Any:
        await gate.wait()
        yield []

    first = asyncio.create_task(build(saver.hot, slow))
    await asyncio.sleep(0.05)
    assert await build(saver.hot, slow) is False  # the lease is held
    gate.set()
    assert await first


async def test_thread_index_off_always_asks_the_store(
    redis_url: str, durable_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_threads() -> Any:
        yield []

    async with hybrid_saver(redis_url, durable_url, key_prefix, thread_index=False) as saver:
        assert saver.index is None
        assert await build(saver.hot, no_threads)  # complete, and not trusted
        assert all(await complete_shards(saver.hot))
        calls = count_durable_reads(saver, monkeypatch)
        assert await saver.aget_tuple(config(str(uuid.uuid4()))) is None
        assert calls == ["get"]
