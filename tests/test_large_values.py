"""Large blob values (PIN_MIN_BYTES and more) go beside the put script in the
same MULTI, never through Lua: real Redis, every durable store. What must
hold: a large value reads back whole from Redis and from the durable store,
Redis holds it once (its `v` key, which the outbox entry reads), it stays
until the durable store has it (through a delete of the thread too), and
nothing is left behind by a refused put, a pruned or deleted thread or an
applied entry."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)

from langgraph_hybrid_saver import AsyncHybridSaver, ThreadBusyError
from langgraph_hybrid_saver.errors import CorruptDataError
from langgraph_hybrid_saver.hot import PIN_MIN_BYTES
from langgraph_hybrid_saver.ops import collect_status, open_target
from langgraph_hybrid_saver.outbox.codec import decode_entry

from .conftest import PrivateRedis, hybrid_saver
from .helpers import BIG, reconcile


async def put_steps(
    saver: AsyncHybridSaver, tid: str, n: int, *, grow: bool = True, start: int = 0
) -> list[Any]:
    """n checkpoints: a large `messages` channel (a new version each step when
    `grow`, else only the first) and a small `step` channel."""
    config: Any = generate_config(tid)
    configs = []
    latest = await saver.aget_tuple(config)
    if latest is not None:
        config = latest.config
    for i in range(start, start + n):
        version = str(i + 1)
        messages_version = version if grow else "1"
        values = {"messages": [*BIG, f"step {i}"] if grow else BIG, "step": i}
        cp = generate_checkpoint(
            channel_values=values,
            channel_versions={"messages": messages_version, "step": version},
        )
        changed = {"step": version}
        if grow or i == 0:
            changed["messages"] = messages_version
        config = await saver.aput(config, cp, generate_metadata(step=i), changed)
        configs.append(config)
    return configs


async def keys_of(saver: AsyncHybridSaver, kind: str) -> list[bytes]:
    """The saver's Redis keys of one kind: 't' temporary, 'p' an outbox
    entry's large value (older layouts), 'v' a large value."""
    return [k async for k in saver.hot.redis.scan_iter(f"{saver.hot.prefix}:*:{kind}:*")]


async def test_a_large_value_goes_beside_the_script_and_reaches_the_durable_store(
    external: AsyncHybridSaver,
) -> None:
    assert external.hot.pin_min == PIN_MIN_BYTES  # setup found COPY
    tid = str(uuid.uuid4())
    configs = await put_steps(external, tid, 2)
    redis, base = external.hot.redis, external.hot.base(tid)
    assert await keys_of(external, "t") == []
    values = await keys_of(external, "v")
    assert len(values) == 2  # one per version of `messages`
    assert await keys_of(external, "p") == []  # the entries read the `v` keys
    # The hash and the entry hold a marker, not the value; the entry names its
    # record 'V'. Redis holds each value once: no other key is that large.
    fields = await redis.hgetall(f"{base}:b:0:")
    large = [f for f, v in fields.items() if f.startswith(b"messages")]
    assert len(large) == 2 and all(fields[f] == b"" for f in large)
    assert all(fields[f] for f in fields if f.startswith(b"step"))
    entries = await redis.xrange(external.hot.outbox(tid))
    assert [b"V" in f and b"r" not in f for _, f in entries] == [True, True]
    assert all(f[m] == b"" for _, f in entries for m in f if m.startswith(b"messages"))
    sizes = {
        k: await redis.strlen(k)
        async for k in redis.scan_iter(f"{external.hot.prefix}:*")
        if await redis.type(k) == b"string"
    }
    assert sorted(k for k, n in sizes.items() if n >= PIN_MIN_BYTES) == sorted(values)
    assert [await redis.pttl(k) for k in values] == [-1, -1]  # pending: no TTL

    hot = await external.aget_tuple(configs[0])
    assert hot is not None and hot.checkpoint["channel_values"]["messages"][:-1] == BIG

    assert await reconcile(external) == 2
    assert sorted(await keys_of(external, "v")) == sorted(values)  # still the hot copy
    assert all(0 < t <= external.hot.ttl_ms for t in [await redis.pttl(k) for k in values])
    durable = await external.backend.get(tid, "", configs[1]["configurable"]["checkpoint_id"])
    assert durable is not None
    blobs = {ch: len(blob or b"") for ch, (_, blob) in durable.blobs.items()}
    assert blobs["messages"] > PIN_MIN_BYTES
    latest = await external.aget_tuple(generate_config(tid))
    assert latest is not None and latest.checkpoint["channel_values"]["messages"][-1] == "step 1"


async def test_an_unchanged_large_value_is_kept_and_read_through_when_gone(
    external: AsyncHybridSaver,
) -> None:
    tid = str(uuid.uuid4())
    await put_steps(external, tid, 2, grow=False)  # the second refers to the first's value
    [large] = await keys_of(external, "v")
    assert await external.hot.redis.pttl(large) == -1  # no TTL while not durable
    await reconcile(external)
    assert 0 < await external.hot.redis.pttl(large) <= external.hot.ttl_ms
    # Gone from Redis (an eviction): the read takes it from the durable store ...
    await external.hot.redis.delete(large)
    latest = await external.aget_tuple(generate_config(tid))
    assert latest is not None and latest.checkpoint["channel_values"]["messages"] == BIG
    # ... and the next put that keeps it stores it again instead of referring to nothing.
    await put_steps(external, tid, 1, grow=False, start=2)
    assert await external.hot.redis.exists(large) == 1
    again = await external.aget_tuple(generate_config(tid))
    assert again is not None and again.checkpoint["channel_values"]["messages"] == BIG


async def test_status_counts_the_large_values_the_outbox_holds(
    external: AsyncHybridSaver, redis_url: str, key_prefix: str
) -> None:
    await put_steps(external, str(uuid.uuid4()), 2)
    async with open_target(redis_url, None, prefix=key_prefix) as target:
        before = await collect_status(target)
        unscanned = await collect_status(target, scan=False)
        await reconcile(external)
        after = await collect_status(target)
    assert before.hot_threads == 1 and before.backlog == 2
    assert before.outbox_large_values is not None
    assert before.outbox_large_values > 2 * PIN_MIN_BYTES  # two pinned values
    assert unscanned.outbox_large_values is None
    assert after.outbox_large_values == 0 and after.backlog == 0


async def test_a_refused_put_leaves_no_value_behind(external: AsyncHybridSaver) -> None:
    tid = str(uuid.uuid4())
    await external.hot.acquire_thread(tid, "someone-else", 60_000)
    with pytest.raises(ThreadBusyError):
        await put_steps(external, tid, 1)
    await external.hot.redis.script_flush()  # again through redis-py's transaction
    with pytest.raises(ThreadBusyError):
        await put_steps(external, tid, 1)
    for kind in "tpv":
        assert await keys_of(external, kind) == [], kind
    assert await external.hot.redis.xlen(external.hot.outbox(tid)) == 0


async def test_pruning_and_deleting_drop_large_values(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    async with hybrid_saver(
        redis_url, durable_url, key_prefix, reconciler="external", hot_window=1
    ) as saver:
        tid = str(uuid.uuid4())
        await put_steps(saver, tid, 3)
        assert len(await keys_of(saver, "v")) == 3  # the window waits for the durable store
        assert await reconcile(saver) == 3
        assert len(await keys_of(saver, "v")) == 1  # the newest checkpoint's only
        await put_steps(saver, tid, 1, start=3)
        held = await keys_of(saver, "v")
        await saver.adelete_thread(tid)
        # The put's value stays (no TTL, held by the thread) until the
        # reconciler applied its entry; delete_thread applied its own.
        assert await keys_of(saver, "v") == [k for k in held if k.endswith(b"\x004")]
        assert await saver.hot.redis.smembers(f"{saver.hot.base(tid)}:h") != set()
        assert await reconcile(saver) == 1
        assert await keys_of(saver, "v") == []
        assert await saver.hot.redis.exists(f"{saver.hot.base(tid)}:h") == 0
        assert await saver.backend.get(tid, "", None) is None


async def test_a_lost_outbox_value_is_dead_lettered_not_applied_without_it(
    external: AsyncHybridSaver,
) -> None:
    tid = str(uuid.uuid4())
    [config] = await put_steps(external, tid, 1)
    [pinned] = await keys_of(external, "v")
    [(sid, fields)] = await external.hot.redis.xrange(external.hot.outbox(tid))
    with pytest.raises(CorruptDataError, match="not read"):
        decode_entry(sid.decode(), fields)  # a reader that did not fetch the value
    await external.hot.redis.delete(pinned)
    assert await reconcile(external) == 0
    assert await external.outbox.dead_letters() == 1
    assert await external.backend.get(tid, "", config["configurable"]["checkpoint_id"]) is None


async def test_unknown_script_and_redis_py_path(external: AsyncHybridSaver) -> None:
    tid = str(uuid.uuid4())
    await external.hot.redis.script_flush()  # the MULTI's EVALSHA fails: NOSCRIPT
    await put_steps(external, tid, 1)
    external.hot.run.lanes = None  # redis-py's transaction pipeline
    await put_steps(external, tid, 1, start=1)
    assert await keys_of(external, "t") == []
    assert len(await keys_of(external, "v")) == 2
    assert await reconcile(external) == 2
    latest = await external.aget_tuple(generate_config(tid))
    assert latest is not None and latest.checkpoint["channel_values"]["messages"][-1] == "step 1"


async def test_a_server_without_copy_stores_large_values_once(
    tmp_path: Path, durable_url: str
) -> None:
    """Redis 6.0 has no COPY; storing a large value needs only RENAME."""
    server = PrivateRedis(tmp_path, None, "--rename-command", "COPY", "")
    server.start()
    try:
        async with AsyncHybridSaver.from_conn_string(
            server.url, durable_url, reconciler="external"
        ) as saver:
            assert saver.hot.pin_min == PIN_MIN_BYTES
            tid = str(uuid.uuid4())
            await put_steps(saver, tid, 1)
            assert await keys_of(saver, "p") == [] and len(await keys_of(saver, "v")) == 1
            assert await reconcile(saver) == 1
            latest = await saver.aget_tuple(generate_config(tid))
            assert (
                latest is not None and latest.checkpoint["channel_values"]["messages"][:-1] == BIG
            )
    finally:
        server.stop()


async def test_a_drop_of_the_thread_keeps_what_its_pending_entries_read(
    external: AsyncHybridSaver,
) -> None:
    """Pruning and delete_for_runs drop a thread from Redis (to re-read it from
    the durable store); entries not applied yet still read their values."""
    tid = str(uuid.uuid4())
    configs = await put_steps(external, tid, 2)
    values = await keys_of(external, "v")
    await external.hot.drop_thread(tid, queue=False)
    assert sorted(await keys_of(external, "v")) == sorted(values)
    assert await reconcile(external) == 2
    assert await external.outbox.dead_letters() == 0
    assert await keys_of(external, "v") == []  # deleted once the thread settled
    stored = await external.backend.get(tid, "", configs[1]["configurable"]["checkpoint_id"])
    assert stored is not None and len(stored.blobs["messages"][1] or b"") > PIN_MIN_BYTES
    latest = await external.aget_tuple(generate_config(tid))  # read through
    assert latest is not None and latest.checkpoint["channel_values"]["messages"][-1] == "step 1"


async def test_a_value_written_again_after_a_delete_outlives_the_held_one(
    external: AsyncHybridSaver,
) -> None:
    tid = str(uuid.uuid4())
    await put_steps(external, tid, 1)
    [value] = await keys_of(external, "v")
    await external.adelete_thread(tid)  # the put's entry still pending: held
    [config] = await put_steps(external, tid, 1)  # the same field, the same key
    assert await keys_of(external, "v") == [value]
    assert await external.hot.redis.smembers(f"{external.hot.base(tid)}:h") == set()
    assert await reconcile(external) == 2
    assert await keys_of(external, "v") == [value]  # the new checkpoint's hot copy
    assert await external.hot.redis.pttl(value) > 0
    stored = await external.backend.get(tid, "", config["configurable"]["checkpoint_id"])
    assert stored is not None and len(stored.blobs["messages"][1] or b"") > PIN_MIN_BYTES


async def test_an_entry_of_the_older_layout_reads_its_own_key(
    external: AsyncHybridSaver,
) -> None:
    """Entries written before values were stored once (record 'R', the value in
    `base:p:<entry id>:<field>`) are applied from that key, which goes with them."""
    tid = str(uuid.uuid4())
    [config] = await put_steps(external, tid, 1)
    redis, outbox = external.hot.redis, external.hot.outbox(tid)
    [value] = await keys_of(external, "v")
    [(sid, fields)] = await redis.xrange(outbox)
    old = {(b"R" if k == b"V" else k): v for k, v in fields.items()}
    await redis.xdel(outbox, sid)
    new_sid = (await redis.xadd(outbox, old)).decode()
    [field] = [f for f in fields if f.startswith(b"messages")]
    pinned = f"{external.hot.base(tid)}:p:{new_sid}:".encode() + field
    await redis.copy(value, pinned)
    await redis.delete(value)  # the entry must not need the hot copy
    assert await reconcile(external) == 1
    assert await keys_of(external, "p") == []  # deleted with its entry
    stored = await external.backend.get(tid, "", config["configurable"]["checkpoint_id"])
    assert stored is not None and len(stored.blobs["messages"][1] or b"") > PIN_MIN_BYTES
