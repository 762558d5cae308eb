"""DESIGN.md invariants 1-9 against real Redis and a real durable store."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)

from langgraph_hybrid_saver import AsyncHybridSaver
from langgraph_hybrid_saver.core import ListQuery

from .conftest import PrivateRedis
from .helpers import durable_ids, put_chain


async def test_put_is_one_round_trip_with_its_outbox_entry(
    external: AsyncHybridSaver, monkeypatch: pytest.MonkeyPatch
) -> None:
    tid = str(uuid.uuid4())
    warm = await put_chain(external, tid, 1)
    await external.aget_tuple(warm[0])  # every script is now in Redis' cache
    sent: list[str] = []

    def count(target: Any, name: str) -> None:  # redis-py's command path and the lanes'
        original = getattr(target, name)

        async def counting(*args: Any, **kwargs: Any) -> Any:
            sent.append(str(args[0]))
            return await original(*args, **kwargs)

        monkeypatch.setattr(target, name, counting)

    count(external.hot.redis, "execute_command")
    assert external.hot.run.lanes is not None
    count(external.hot.run.lanes, "call")
    lanes = external.hot.run.lanes
    send = lanes.send

    async def sending(commands: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(" ".join(str(c[0]) for c in commands))  # one network write
        return await send(commands, *args, **kwargs)

    monkeypatch.setattr(lanes, "send", sending)
    stored = await put_chain(external, str(uuid.uuid4()), 1)
    # put, put_writes: one script each, and the thread's stamp in the same write
    assert sent == ["EVALSHA SET", "EVALSHA SET"]
    sent.clear()
    assert await external.aget_tuple(stored[0]) is not None
    assert sent == ["EVALSHA"]  # get_tuple: one round trip
    monkeypatch.undo()
    # Each script wrote its outbox entry in the same atomic step.
    entries = await external.outbox.read(list(range(external.hot.shards)), 10, None)
    kinds = [(op.thread_id, type(op).__name__) for _, _, op in entries]
    assert kinds.count((tid, "PutOp")) == 1 and kinds.count((tid, "WritesOp")) == 1


async def test_read_your_writes_before_reconcile(
    external: AsyncHybridSaver, redis_url: str, durable_url: str, key_prefix: str
) -> None:
    tid = str(uuid.uuid4())
    configs = await put_chain(external, tid, 3)
    assert await durable_ids(external, tid) == []  # nothing reconciled yet
    async with AsyncHybridSaver.from_conn_string(
        redis_url, durable_url, key_prefix=key_prefix, reconciler="external"
    ) as other:  # another client, as another process would be
        latest = await other.aget_tuple(generate_config(tid))
        assert latest is not None
        assert latest.config == configs[-1]
        assert latest.pending_writes == [("task-2", "messages", "w2")]
        listed = [t.config async for t in other.alist(generate_config(tid))]
        assert listed == configs[::-1]


async def test_outbox_entry_applied_twice_changes_nothing(external: AsyncHybridSaver) -> None:
    tid = str(uuid.uuid4())
    await put_chain(external, tid, 3)
    entries = await external.outbox.read(list(range(external.hot.shards)), 100, None)
    ops = [op for _, _, op in entries]
    assert await external.backend.apply(ops) == 6
    first = await external.backend.list(ListQuery(tid, None, None, None, None, None))
    assert await external.backend.apply(ops) == 0  # all at or below the watermark
    assert await external.backend.apply(ops[2:]) == 0
    again = await external.backend.list(ListQuery(tid, None, None, None, None, None))
    assert again == first
    assert [len(s.writes) for s in again] == [1, 1, 1]


async def test_delete_is_never_undone_by_inflight_entries(external: AsyncHybridSaver) -> None:
    tid = str(uuid.uuid4())
    await put_chain(external, tid, 3)
    in_flight = await external.outbox.read(list(range(external.hot.shards)), 100, None)
    await external.adelete_thread(tid)
    # A reconciler that read the entries before the delete applies them late:
    assert await external.backend.apply([op for _, _, op in in_flight]) == 0
    assert await durable_ids(external, tid) == []
    # ... and the queued delete entry, drained normally, changes nothing either.
    reconciler_drain = await external.outbox.read(list(range(external.hot.shards)), 100, None)
    await external.backend.apply([op for _, _, op in reconciler_drain])
    assert await durable_ids(external, tid) == []
    assert await external.aget_tuple(generate_config(tid)) is None
    # The thread id can be reused afterwards.
    await put_chain(external, tid, 1)
    drain = await external.outbox.read(list(range(external.hot.shards)), 100, None)
    assert await external.backend.apply([op for _, _, op in drain]) == 2
    assert len(await durable_ids(external, tid)) == 1


async def test_flush_puts_everything_in_the_durable_store(saver: AsyncHybridSaver) -> None:
    tid = str(uuid.uuid4())
    configs = await put_chain(saver, tid, 5)
    await saver.aflush(timeout=10)
    assert (
        await durable_ids(saver, tid) == [c["configurable"]["checkpoint_id"] for c in configs][::-1]
    )
    assert (await saver.astats())["backlog"] == 0


async def test_flush_times_out_clearly_without_a_reconciler(external: AsyncHybridSaver) -> None:
    from langgraph_hybrid_saver import FlushTimeoutError

    await put_chain(external, str(uuid.uuid4()), 1)
    with pytest.raises(FlushTimeoutError, match="reconcile") as raised:
        await external.aflush(timeout=0.3)
    # the command it suggests drains this saver's outbox: it names its key prefix
    assert f"--key-prefix {external.hot.prefix}`" in str(raised.value)


async def test_redis_wiped_after_flush_loses_nothing(
    private_redis: PrivateRedis, durable_url: str
) -> None:
    tid = str(uuid.uuid4())
    async with AsyncHybridSaver.from_conn_string(private_redis.url, durable_url) as s:
        configs = await put_chain(s, tid, 4)
        await put_chain(s, tid, 2, ns="child:1")
        await s.aflush(timeout=10)
        before = [t async for t in s.alist({"configurable": {"thread_id": tid}})]
        await s.hot.redis.flushall()
        latest = await s.aget_tuple(generate_config(tid))
        assert latest is not None and latest.config == configs[-1]
        assert latest.pending_writes == [("task-3", "messages", "w3")]
        assert latest.checkpoint["channel_values"]["messages"] == ["m0", "m1", "m2", "m3"]
        after = [t async for t in s.alist({"configurable": {"thread_id": tid}})]
        assert after == before
        # read-through repopulated Redis: the next read is served hot
        assert (await s.hot.get(tid, "", None)).stored is not None


async def test_redis_restarted_empty_then_writes_continue(
    private_redis: PrivateRedis, durable_url: str
) -> None:
    tid = str(uuid.uuid4())
    async with AsyncHybridSaver.from_conn_string(private_redis.url, durable_url) as s:
        configs = await put_chain(s, tid, 2)
        await s.aflush(timeout=10)
        private_redis.stop()
        private_redis.start()
        await s.hot.check_layout()
        # The next step continues the thread from the durable copy.
        nxt = generate_config(tid)
        nxt["configurable"]["checkpoint_id"] = configs[-1]["configurable"]["checkpoint_id"]
        cp = generate_checkpoint(channel_values={"step": 9}, channel_versions={"step": "9"})
        stored = await s.aput(nxt, cp, generate_metadata(step=9), {"step": "9"})
        await s.aflush(timeout=10)
        ids = [
            t.config["configurable"]["checkpoint_id"] async for t in s.alist(generate_config(tid))
        ]
        assert ids == [stored["configurable"]["checkpoint_id"]] + [
            c["configurable"]["checkpoint_id"] for c in configs[::-1]
        ]


async def test_official_postgres_saver_reads_what_we_reconciled_and_vice_versa(
    redis_url: str, pg_url: str, key_prefix: str
) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    tid, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    async with AsyncHybridSaver.from_conn_string(
        redis_url, pg_url, key_prefix=key_prefix, thread_index=False
    ) as s:
        await put_chain(s, tid, 3)
        await s.aflush(timeout=10)
        ours = [t async for t in s.alist(generate_config(tid))]
        async with AsyncPostgresSaver.from_conn_string(pg_url) as official:
            assert [t async for t in official.alist(generate_config(tid))] == ours
            await put_chain(official, theirs, 3)  # type: ignore[arg-type]
            expected = [t async for t in official.alist(generate_config(theirs))]
        assert [t async for t in s.alist(generate_config(theirs))] == expected
        assert await s.aget_tuple(generate_config(theirs)) == expected[0]


async def test_corrupt_hot_record_is_a_typed_error(saver: AsyncHybridSaver) -> None:
    from langgraph_hybrid_saver import CorruptDataError

    tid = str(uuid.uuid4())
    await put_chain(saver, tid, 1)
    key = saver.hot.base(tid) + ":c:0:"
    cid = (await saver.hot.redis.hkeys(key))[0]
    await saver.hot.redis.hset(key, cid, b"\xc1not msgpack")
    with pytest.raises(CorruptDataError, match="delete that key"):
        await saver.aget_tuple(generate_config(tid))


async def test_copy_thread_is_one_atomic_write(
    saver: AsyncHybridSaver, redis_url: str, durable_url: str, key_prefix: str
) -> None:
    from langgraph_hybrid_saver import ThreadBusyError

    src, dst = str(uuid.uuid4()), str(uuid.uuid4())
    await put_chain(saver, src, 4)
    await put_chain(saver, src, 2, ns="child:1")
    async with AsyncHybridSaver.from_conn_string(
        redis_url, durable_url, key_prefix=key_prefix
    ) as other:
        async with other.alease(dst):  # the target is busy: the copy is refused whole
            with pytest.raises(ThreadBusyError):
                await saver.acopy_thread(src, dst)
    assert [t async for t in saver.alist({"configurable": {"thread_id": dst}})] == []
    backlog, _ = await saver.outbox.backlog()
    await saver.acopy_thread(src, dst)
    assert (await saver.outbox.backlog())[0] - backlog <= 12  # 6 puts + 6 writes, queued at once
    ours = [t async for t in saver.alist({"configurable": {"thread_id": dst}})]
    theirs = [t async for t in saver.alist({"configurable": {"thread_id": src}})]
    assert [(t.checkpoint, t.metadata, t.pending_writes) for t in ours] == [
        (t.checkpoint, t.metadata, t.pending_writes) for t in theirs
    ]
    await saver.aflush(timeout=10)
    assert len(await durable_ids(saver, dst)) == 6


async def test_late_write_with_a_pre_delete_config_cannot_resurrect(
    saver: AsyncHybridSaver,
) -> None:
    from langgraph_hybrid_saver import ThreadDeletedError

    tid = str(uuid.uuid4())
    first = (await put_chain(saver, tid, 2))[-1]
    await saver.adelete_thread(tid)
    with pytest.raises(ThreadDeletedError, match="deleted"):
        await put_chain(saver, tid, 1, parent=first["configurable"]["checkpoint_id"])
    with pytest.raises(ThreadDeletedError):
        await saver.aput_writes(first, [("messages", "late")], "late-task")
    await saver.aflush(timeout=10)
    assert await saver.aget_tuple(generate_config(tid)) is None
    assert await durable_ids(saver, tid) == []
    # A new run on the same thread id starts cleanly.
    again = await put_chain(saver, tid, 2)
    assert (await saver.aget_tuple(generate_config(tid))).config == again[-1]  # type: ignore[union-attr]
