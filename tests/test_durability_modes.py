"""Durability modes, the backlog bound and per-thread leases."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from langgraph.checkpoint.conformance.test_utils import generate_config

from langgraph_hybrid_saver import AsyncHybridSaver, BacklogError, ThreadBusyError
from langgraph_hybrid_saver.outbox.reconciler import Reconciler

from .helpers import durable_ids, put_chain


async def test_write_through_returns_after_the_durable_store_has_it(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    async with AsyncHybridSaver.from_conn_string(
        redis_url, durable_url, key_prefix=key_prefix, durability="write_through"
    ) as saver:
        tid = str(uuid.uuid4())
        for config in await put_chain(saver, tid, 3):
            cid = config["configurable"]["checkpoint_id"]
            stored = await saver.backend.get(tid, "", cid)
            assert stored is not None and len(stored.writes) == 1


async def test_backlog_bound_raise_refuses_writes_and_writes_nothing(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    async with AsyncHybridSaver.from_conn_string(
        redis_url,
        durable_url,
        key_prefix=key_prefix,
        reconciler="external",
        max_backlog=4,
        on_backlog="raise",
    ) as saver:
        tid = str(uuid.uuid4())
        await put_chain(saver, tid, 2)  # 4 entries: put + writes, twice
        await asyncio.sleep(0.3)  # the monitor notices
        assert (await saver.astats())["overloaded"] is True
        with pytest.raises(BacklogError, match="max_backlog=4"):
            await put_chain(saver, tid, 1)
        assert len([t async for t in saver.alist(generate_config(tid))]) == 2
        # Once a reconciler drains the outbox, writes are accepted again.
        worker = Reconciler(saver.hot, saver.backend)
        while await worker.step(None):
            pass
        await asyncio.sleep(0.3)
        await put_chain(saver, tid, 1)


async def test_backlog_bound_write_through_waits_for_the_durable_store(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    async with AsyncHybridSaver.from_conn_string(
        redis_url,
        durable_url,
        key_prefix=key_prefix,
        reconciler="external",
        max_backlog=4,
        flush_timeout=20,
    ) as saver:
        tid = str(uuid.uuid4())
        await put_chain(saver, tid, 2)
        await asyncio.sleep(0.3)
        assert saver.overloaded
        writer = asyncio.create_task(put_chain(saver, tid, 1))
        await asyncio.sleep(0.3)
        assert not writer.done()  # held back while the durable store is behind
        stop = asyncio.Event()
        worker = asyncio.create_task(Reconciler(saver.hot, saver.backend).run(stop))
        config = (await writer)[0]
        assert config["configurable"]["checkpoint_id"] in await durable_ids(saver, tid)
        stop.set()
        await worker


async def test_thread_lease_fences_a_second_writer(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    async with (
        AsyncHybridSaver.from_conn_string(redis_url, durable_url, key_prefix=key_prefix) as a,
        AsyncHybridSaver.from_conn_string(redis_url, durable_url, key_prefix=key_prefix) as b,
    ):
        tid = str(uuid.uuid4())
        async with a.alease(tid) as token:
            with pytest.raises(ThreadBusyError, match="already leased"):
                async with b.alease(tid):
                    pass
            with pytest.raises(ThreadBusyError, match="nothing was written"):
                await put_chain(b, tid, 1)
            await put_chain(a, tid, 2)
        assert await b.aget_tuple(generate_config(tid)) is not None
        async with b.alease(tid) as second:
            assert int(second) > int(token)  # fencing tokens only grow
            await put_chain(b, tid, 1)
        assert len([t async for t in b.alist(generate_config(tid))]) == 3


async def test_a_dead_holders_lease_expires_and_its_late_writes_are_refused(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    async with (
        AsyncHybridSaver.from_conn_string(redis_url, durable_url, key_prefix=key_prefix) as a,
        AsyncHybridSaver.from_conn_string(redis_url, durable_url, key_prefix=key_prefix) as b,
    ):
        tid = str(uuid.uuid4())
        await a._acquire(tid, ttl=0.5)
        a.writes._renewals.pop(tid).cancel()  # the holder stalls: no more renewals
        await asyncio.sleep(0.7)
        async with b.alease(tid):
            await put_chain(b, tid, 1)
            with pytest.raises(ThreadBusyError):
                await put_chain(a, tid, 1)  # the stale holder cannot write
        assert len([t async for t in b.alist(generate_config(tid))]) == 1
