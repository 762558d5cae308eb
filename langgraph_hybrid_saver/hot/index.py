"""Building the thread index: the set per shard of every thread this key
prefix knows (keys.py `threads`). The write scripts add each thread they
write; a build adds every thread of the durable store and then marks the
index complete, so that a read of a thread that is in neither tier costs one
Redis round trip and no durable read (scripts/prelude.lua `index_state`).

A build first adds its own marker to every shard's set and completes a
shard only if the marker is still there at the end: if Redis restarted or
evicted the set meanwhile, what was loaded before is gone with the marker,
and the shard stays incomplete (reads ask the durable store) until the next
build. One build at a time per prefix (a lease key); reads that find an
incomplete index ask for one (`IndexBuilder.request`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from langgraph_hybrid_saver.hot.lua import source
from langgraph_hybrid_saver.hot.store import HotTier

logger = logging.getLogger("langgraph_hybrid_saver.hot")

COMPLETE = b"\x00complete"
LEASE_MS = 30_000
RETRY_SECONDS = 10.0  # a read of an incomplete index asks for a build at most this often

ThreadPages = Callable[[], AsyncIterator[list[str]]]


async def complete_shards(hot: HotTier) -> list[bool]:
    """Whether each shard's index is complete."""
    async with hot.redis.pipeline(transaction=False) as pipe:
        for key in hot.keys.thread_index:
            pipe.sismember(key, COMPLETE)
        return [bool(r) for r in await pipe.execute()]


async def build(hot: HotTier, pages: ThreadPages) -> bool:
    """Load every thread `pages` yields into the index and mark it complete.
    Returns False when another process holds the build lease."""
    token = secrets.token_hex(8)
    lease = hot.keys.index_build
    if not await hot.redis.set(lease, token, nx=True, px=LEASE_MS):
        return False
    marker = f"\x00building:{token}"
    try:
        await _sadd(hot, {s: [marker] for s in range(hot.shards)})
        loaded = 0
        async for page in pages():
            by_shard: dict[int, list[str]] = {}
            for thread_id in page:
                by_shard.setdefault(hot.shard(thread_id), []).append(thread_id)
            await _sadd(hot, by_shard)
            loaded += len(page)
            await hot.redis.pexpire(lease, LEASE_MS)
        done = hot.redis.register_script(source("index_done"))
        completed = 0
        for key in hot.keys.thread_index:
            completed += int(await done(keys=[key], args=[marker]))
        logger.info(
            "thread index built: %d durable threads, %d of %d shards complete",
            loaded, completed, hot.shards,
        )  # fmt: skip
        return True
    finally:
        if await hot.redis.get(lease) == token.encode():
            await hot.redis.delete(lease)


async def _sadd(hot: HotTier, by_shard: dict[int, list[str]]) -> None:
    if not by_shard:
        return
    if hot.cluster:  # one slot per shard
        await asyncio.gather(
            *(hot.redis.sadd(hot.keys.thread_index[s], *ids) for s, ids in by_shard.items())
        )
        return
    async with hot.redis.pipeline(transaction=False) as pipe:
        for s, ids in by_shard.items():
            pipe.sadd(hot.keys.thread_index[s], *ids)
        await pipe.execute()


class IndexBuilder:
    """Runs builds in the background of one saver: at setup when the index
    is incomplete, and again when a read finds it incomplete (a Redis restart
    or eviction), at most every RETRY_SECONDS."""

    def __init__(self, hot: HotTier, pages: ThreadPages) -> None:
        self.hot = hot
        self.pages = pages
        self.task: asyncio.Task[Any] | None = None
        self._asked = 0.0

    def request(self) -> None:
        now = time.monotonic()
        if (self.task is not None and not self.task.done()) or now - self._asked < RETRY_SECONDS:
            return
        self._asked = now
        self.task = asyncio.get_running_loop().create_task(self._run(), name="hybrid-saver-index")

    async def _run(self) -> None:
        try:
            if not all(await complete_shards(self.hot)):
                await build(self.hot, self.pages)
        except Exception as e:  # reads keep asking the durable store meanwhile
            logger.warning("thread index build failed: %s", e)

    async def aclose(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
