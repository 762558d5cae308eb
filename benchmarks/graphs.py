"""Graph-level workloads: the support graph and the multi-turn chat, through LangGraph.

Sequential: one invocation at a time. Concurrent: 16 asyncio workers on one
event loop (the way one API worker process serves requests). Every support
graph invocation is a new ticket (a new thread), so each starts with a read
of a thread the saver has never seen; the multi-turn chat invokes the same
threads turn after turn. Each LangGraph durability mode is measured.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from benchmarks.chat_graph import build_chat_graph, check_turn, user_turn
from benchmarks.harness import Batch
from benchmarks.support_graph import build_support_graph, check_result, ticket

MODES = ("sync", "async", "exit")
WORKERS = 16
RETURNING = 20  # threads of the "returning" scenario
CHAT_WARMUP = 1  # the chat's first turn (new threads) is not the returning case


class _CountingSaver(InMemorySaver):
    puts = 0

    async def aput(self, *args: Any, **kwargs: Any) -> Any:
        self.puts += 1
        return await super().aput(*args, **kwargs)


async def checkpoints_per_invocation(mode: str) -> float:
    """How many checkpoints LangGraph writes per invocation in this mode."""
    saver = _CountingSaver()
    graph = build_support_graph(saver)
    n = 4
    for i in range(n):
        cfg = {"configurable": {"thread_id": f"count-{mode}-{i}"}}
        await graph.ainvoke(ticket(i), cfg, durability=mode)
    return saver.puts / n


class GraphRunner:
    """Invokes one saver's compiled graph; counts threads so ids never repeat,
    or, with `returning`, cycles through that many threads (a conversation's
    next turn: the thread exists and is hot)."""

    def __init__(self, saver: Any, mode: str, tag: str, returning: int | None = None) -> None:
        self.graph = build_support_graph(saver)
        self.kwargs = {"durability": mode} if saver is not None else {}
        self.tag = tag
        self.counter = itertools.count()
        self.returning = returning

    async def invoke(self) -> None:
        i = next(self.counter)
        thread = i % self.returning if self.returning else i
        cfg = {"configurable": {"thread_id": f"{self.tag}-{thread}"}}
        check_result(await self.graph.ainvoke(ticket(i), cfg, **self.kwargs))

    def sequential(self, n: int, latencies: list[float], warmup: int) -> Batch:
        """A batch of `n` sequential invocations: one sample, seconds per
        invocation; per-invocation latencies of measured batches go to `latencies`."""
        batches = itertools.count()

        async def run() -> list[float]:
            keep = next(batches) >= warmup
            clock = time.perf_counter
            start = clock()
            for _ in range(n):
                t0 = clock()
                await self.invoke()
                if keep:
                    latencies.append(clock() - t0)
            return [(clock() - start) / n]

        return run

    def concurrent(self, per_worker: int, workers: int = WORKERS) -> Batch:
        """A batch of `workers` tasks doing `per_worker` invocations each."""

        async def worker() -> None:
            for _ in range(per_worker):
                await self.invoke()

        async def run() -> list[float]:
            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(workers)))
            return [(time.perf_counter() - start) / (workers * per_worker)]

        return run


class ChatRunner:
    """The multi-turn chat scenario on one saver: `threads` conversations; each
    batch is the next turn of every one of them (a new invocation on each
    thread), so the message list grows from batch to batch and every batch
    after the first reads threads this process wrote."""

    def __init__(self, saver: Any, mode: str, tag: str, threads: int) -> None:
        self.graph = build_chat_graph(saver)
        self.mode = mode
        self.tag = tag
        self.threads = threads
        self.turns = itertools.count()

    async def invoke(self, thread: int, turn: int) -> None:
        cfg = {"configurable": {"thread_id": f"{self.tag}-{thread}"}}
        out = await self.graph.ainvoke(user_turn(thread, turn), cfg, durability=self.mode)
        check_turn(out, turn)

    def sequential(self) -> Batch:
        """One turn of every thread, one invocation at a time: one sample,
        seconds per invocation."""

        async def run() -> list[float]:
            turn = next(self.turns)
            start = time.perf_counter()
            for thread in range(self.threads):
                await self.invoke(thread, turn)
            return [(time.perf_counter() - start) / self.threads]

        return run

    def concurrent(self, workers: int = WORKERS) -> Batch:
        """One turn of every thread, `workers` tasks taking the threads in
        turn (never two invocations of one thread at once)."""

        async def run() -> list[float]:
            turn = next(self.turns)
            todo = iter(range(self.threads))

            async def worker() -> None:
                for thread in todo:
                    await self.invoke(thread, turn)

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(workers)))
            return [(time.perf_counter() - start) / self.threads]

        return run


async def chat_checkpoints_per_invocation(mode: str) -> float:
    """How many checkpoints one chat turn writes in this mode."""
    saver = _CountingSaver()
    runner = ChatRunner(saver, mode, f"count-chat-{mode}", threads=1)
    n = 4
    for _ in range(n):
        await runner.sequential()()
    return saver.puts / n
