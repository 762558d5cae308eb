"""Large values are compressed in Redis, read back unchanged from either
tier, and reach the durable store as the serializer wrote them."""

from __future__ import annotations

import uuid
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from langgraph_hybrid_saver import AsyncHybridSaver
from tests.conftest import hybrid_saver
from tests.helpers import reconcile

MESSAGES = [
    m
    for i in range(100)
    for m in (
        HumanMessage(f"question {i}: where is my refund for order {i}?", id=f"h{i}"),
        AIMessage(f"answer {i}: " + "the refund was issued and takes 3-5 days. " * 20, id=f"a{i}"),
    )
]


async def put_messages(saver: Any, tid: str) -> dict[str, Any]:
    cp = empty_checkpoint()
    cp["channel_values"] = {"messages": MESSAGES}
    cp["channel_versions"] = {"messages": "1"}
    config = {"configurable": {"thread_id": tid, "checkpoint_ns": ""}}
    stored = await saver.aput(config, cp, {"source": "loop", "step": 1}, {"messages": "1"})
    await saver.aput_writes(stored, [("messages", MESSAGES[-40:])], "task-1", "~p")
    return stored  # type: ignore[no-any-return]


async def redis_bytes(saver: AsyncHybridSaver, tid: str) -> int:
    redis = saver.hot.redis
    keys = [k async for k in redis.scan_iter(f"{saver.hot.base(tid)}*")]
    return sum([await redis.memory_usage(k, samples=0) or 0 for k in keys])


async def test_compressed_in_redis_same_values_everywhere(
    redis_url: str, pg_url: str, key_prefix: str
) -> None:
    size = len(AsyncPostgresSaver(conn=None).serde.dumps_typed(MESSAGES)[1])  # type: ignore[arg-type]
    async with hybrid_saver(redis_url, pg_url, key_prefix, reconciler="external") as saver:
        tid = str(uuid.uuid4())
        stored = await put_messages(saver, tid)
        await reconcile(saver)  # the outbox entries leave Redis: the hot copy alone
        compressed = await redis_bytes(saver, tid)
        hot = await saver.aget_tuple(stored)
    async with hybrid_saver(
        redis_url, pg_url, f"{key_prefix}off", reconciler="external", compress_min_bytes=None
    ) as plain:
        tid2 = str(uuid.uuid4())
        await put_messages(plain, tid2)
        await reconcile(plain)
        uncompressed = await redis_bytes(plain, tid2)
    assert compressed * 2 < size < uncompressed  # the 2x target holds here with room
    assert hot is not None and hot.checkpoint["channel_values"]["messages"] == MESSAGES
    assert hot.pending_writes == [("task-1", "messages", MESSAGES[-40:])]
    async with AsyncPostgresSaver.from_conn_string(pg_url) as official:
        cold = await official.aget_tuple(stored)  # the serializer's bytes, not zstd
    assert cold is not None and cold.checkpoint["channel_values"]["messages"] == MESSAGES
    assert cold.pending_writes == [("task-1", "messages", MESSAGES[-40:])]


async def test_a_saver_without_compression_reads_compressed_values(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    async with hybrid_saver(redis_url, durable_url, key_prefix) as writer:
        tid = str(uuid.uuid4())
        stored = await put_messages(writer, tid)
        async with hybrid_saver(
            redis_url, durable_url, key_prefix, compress_min_bytes=None
        ) as reader:
            got = await reader.aget_tuple(stored)
            assert got is not None and got.checkpoint["channel_values"]["messages"] == MESSAGES
            await reader.aflush()
            keys = [k async for k in reader.hot.redis.scan_iter(f"{reader.hot.base(tid)}*")]
            await reader.hot.redis.delete(*keys)  # read through from the durable store
            got = await reader.aget_tuple(stored)
            assert got is not None and got.checkpoint["channel_values"]["messages"] == MESSAGES
            assert got.pending_writes == [("task-1", "messages", MESSAGES[-40:])]


async def test_bad_compress_min_bytes_is_a_config_error(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    import pytest

    from langgraph_hybrid_saver import ConfigError

    for bad in (0, -1, 1.5, True, "4096"):
        with pytest.raises(ConfigError, match="compress_min_bytes"):
            async with hybrid_saver(redis_url, durable_url, key_prefix, compress_min_bytes=bad):
                pass
