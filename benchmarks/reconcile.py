"""Reconciler measurements: drain throughput, reconcile lag, Redis memory.

* Drain: N checkpoints are written with `reconciler="external"` (nothing
  drains them), then one `Reconciler` is started and timed until the outbox
  is empty; the durable store is then read back.
* Lag: while 16 workers invoke the support graph, the time from each outbox
  entry's creation (its stream id, Redis clock in ms) to the durable commit
  of its batch (the reconciler's `on_applied` hook) is recorded for every entry;
  `astats()['lag_seconds']` is sampled alongside.
* Memory: MEMORY USAGE of a thread's keys after 1,000 steps, of the Redis
  keys that hold one 140 KB state (against its serialized size), and of a
  chat thread after 200 turns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks.competitors import Env, hybrid_factory
from benchmarks.graphs import WORKERS, ChatRunner, GraphRunner
from benchmarks.harness import summarize
from benchmarks.ops import BIG, Chain, small_values, step_update, three_writes
from benchmarks.worker import read_lags
from langgraph_hybrid_saver import Reconciler
from langgraph_hybrid_saver.core import ListQuery


async def drain(
    env: Env, backend: str, n: int, threads: int = 50, repeats: int = 1
) -> dict[str, Any]:
    """Write `n` checkpoints (2 KB, 10 channels) to an idle outbox, then time one
    Reconciler draining them into `backend`; `repeats` times, the median reported
    (one drain is one sample: a server's checkpoint or autovacuum moves it)."""
    prefix = f"bench{env.run_id}drain{backend}"
    factory = hybrid_factory(backend, reconciler="external", key_prefix=prefix)
    reps: list[dict[str, Any]] = []
    async with factory(env) as saver:
        for rep in range(repeats):
            reps.append(await _drain_once(env, saver, n, threads, f"{rep}"))
    seconds = sorted(r["seconds"] for r in reps)
    mid = next(r for r in reps if r["seconds"] == seconds[len(seconds) // 2])
    problems = [r["readback"] for r in reps if r["readback"] != "ok"]
    return {
        **mid,
        "seconds_all": seconds,
        "rate": mid["checkpoints"] / mid["seconds"] if mid["seconds"] else float("nan"),
        "readback": "ok" if not problems else "; ".join(problems),
    }


async def _drain_once(env: Env, saver: Any, n: int, threads: int, tag: str) -> dict[str, Any]:
    chains = [Chain(saver, f"{env.run_id}-drain{tag}-{t}") for t in range(threads)]
    per = max(n // threads, 1)

    async def fill(chain: Chain) -> None:
        for step in range(per):
            await chain.put(small_values(step))

    t0 = time.perf_counter()
    sem = asyncio.Semaphore(WORKERS)

    async def bounded(chain: Chain) -> None:
        async with sem:
            await fill(chain)

    await asyncio.gather(*(bounded(c) for c in chains))
    write_s = time.perf_counter() - t0
    backlog, _ = await saver.outbox.backlog()
    worker = Reconciler(saver.hot, saver.backend)
    batches: list[int] = []
    t0 = time.perf_counter()
    while (k := await worker.step(None)) > 0:
        batches.append(k)
    seconds = time.perf_counter() - t0
    await worker.release_all()
    left, _ = await saver.outbox.backlog()
    # Read back from the durable store alone: every chain's latest and count.
    problems = 0
    for chain in chains[:: max(threads // 5, 1)]:
        latest = await saver.backend.get(chain.thread_id, "", None)
        rows = await saver.backend.list(ListQuery(chain.thread_id, "", None, None, None, None))
        if latest is None or latest.checkpoint_id != chain.ids[-1] or len(rows) != per:
            problems += 1
    total = per * threads
    return {
        "checkpoints": total,
        "backlog_before": backlog,
        "backlog_after": left,
        "seconds": seconds,
        "write_rate_16": total / write_s,
        "batches": len(batches),
        "batch_p50": summarize([float(b) for b in batches])["p50"] if batches else 0,
        "batch_max": max(batches, default=0),
        "readback": "ok" if problems == 0 and left == 0 else f"{problems} threads wrong",
    }


DRAIN_TIMEOUT_S = 300.0  # a slow store may drain the load's backlog for minutes


async def lag_under_load(
    saver: Any,
    tag: str,
    per_worker: int,
    mode: str = "async",
    sample_every: float = 0.1,
    lag_file: Path | None = None,
) -> dict[str, Any]:
    """Reconcile lag while 16 workers invoke the support graph on `saver`.

    In-process reconciler: its `on_applied` hook (called right after each
    durable commit) records them. External reconciler: the worker process
    logs the same numbers to `lag_file`.
    """
    entry_lag_ms: list[float] = []

    def committed(applied: Any) -> None:
        now_ms = time.time() * 1000
        entry_lag_ms.extend(now_ms - int(sid.split("-")[0]) for _, sid in applied)

    sampled: list[float] = []
    backlogs: list[int] = []
    stop = asyncio.Event()

    async def sampler() -> None:
        # Sparse on purpose: each astats() is a 33-command pipeline on this loop.
        while not stop.is_set():
            st = await saver.astats()
            sampled.append(float(st["lag_seconds"]) * 1000)
            backlogs.append(int(st["backlog"]))
            try:
                await asyncio.wait_for(stop.wait(), sample_every)
            except asyncio.TimeoutError:
                pass

    await saver.aflush()
    in_process = saver.reconciler is not None
    if in_process:
        saver.reconciler.on_applied = committed
    runner = GraphRunner(saver, mode, f"{tag}-lag")
    since_ms = time.time() * 1000
    try:
        sampling = asyncio.create_task(sampler())
        t0 = time.perf_counter()
        await runner.concurrent(per_worker)()
        load_s = time.perf_counter() - t0
        stop.set()
        await sampling
        t0 = time.perf_counter()
        await saver.aflush(timeout=DRAIN_TIMEOUT_S)
        drain_after_s = time.perf_counter() - t0
    finally:
        if in_process:
            saver.reconciler.on_applied = None
    if not in_process:
        if lag_file is None:
            raise ValueError("an external reconciler needs the lag file of its worker")
        entry_lag_ms = read_lags(lag_file, since_ms, time.time() * 1000 + 1)
    e = summarize(entry_lag_ms)
    s = summarize(sampled)
    return {
        "mode": mode,
        "reconciler": "in-process" if in_process else "worker process",
        "invocations": WORKERS * per_worker,
        "invocations_per_s": WORKERS * per_worker / load_s,
        "entries": len(entry_lag_ms),
        "entry_p50_ms": e["p50"],
        "entry_p99_ms": e["p99"],
        "entry_max_ms": max(entry_lag_ms, default=float("nan")),
        "sampled_p50_ms": s["p50"],
        "sampled_p99_ms": s["p99"],
        "sampled_max_ms": max(sampled, default=float("nan")),
        "backlog_max": max(backlogs, default=0),
        "drain_after_load_s": drain_after_s,
        "entry_lag_ms": entry_lag_ms,
    }


async def memory_usage(redis: Any, pattern: str) -> tuple[int, int]:
    """(bytes, keys) of every key matching `pattern`, by MEMORY USAGE SAMPLES 0."""
    total = keys = 0
    async for key in redis.scan_iter(match=pattern, count=1000):
        total += int(await redis.memory_usage(key, samples=0) or 0)
        keys += 1
    return total, keys


async def run_steps(saver: Any, thread_id: str, steps: int) -> Chain:
    """`steps` graph-like steps: a checkpoint (2 of 10 channels changed) and 3 writes."""
    chain = Chain(saver, thread_id)
    for step in range(steps):
        config = await chain.put(step_update(step, all_channels=step == 0))
        await saver.aput_writes(config, three_writes(step), f"task-{step}")
    return chain


async def hybrid_memory(env: Env, backend: str, steps: int) -> dict[str, Any]:
    """Redis bytes of one hybrid thread after `steps` steps, before and after
    the reconciler empties the outbox."""
    prefix = f"bench{env.run_id}mem{backend}"
    factory = hybrid_factory(backend, reconciler="external", key_prefix=prefix)
    async with factory(env) as saver:
        redis = saver.hot.redis
        thread_id = f"{env.run_id}-mem"
        await run_steps(saver, thread_id, steps)
        base = saver.hot.base(thread_id)
        thread_bytes, keys = await memory_usage(redis, f"{base}*")
        outbox_bytes, _ = await memory_usage(redis, f"{prefix}:*:outbox")
        worker = Reconciler(saver.hot, saver.backend)
        while await worker.step(None) > 0:
            pass
        await worker.release_all()
        after_bytes, _ = await memory_usage(redis, f"{base}*")
        outbox_after, _ = await memory_usage(redis, f"{prefix}:*:outbox")
        return {
            "steps": steps,
            "thread_keys": keys,
            "thread_bytes": thread_bytes,
            "outbox_bytes_before_drain": outbox_bytes,
            "thread_bytes_after_drain": after_bytes,
            "outbox_bytes_after_drain": outbox_after,
            "bytes_per_step": thread_bytes / steps,
        }


async def official_redis_memory(saver: Any, run_id: str, steps: int) -> dict[str, Any]:
    """The same for AsyncRedisSaver (its keys carry the thread id)."""
    thread_id = f"{run_id}-mem"
    await run_steps(saver, thread_id, steps)
    total, keys = await memory_usage(saver._redis, f"*{thread_id}*")
    return {
        "steps": steps,
        "thread_keys": keys,
        "thread_bytes": total,
        "bytes_per_step": total / steps,
    }


def big_state_bytes(saver: Any) -> int:
    """The 140 KB state's size as the saver's serializer writes it, uncompressed."""
    return len(saver.serde.dumps_typed(BIG)[1])


async def _hybrid_bytes(
    env: Env, backend: str, label: str, write: Callable[[Any], Awaitable[Any]]
) -> tuple[Any, dict[str, Any]]:
    """Redis bytes of every key of a fresh key prefix after `write(saver)`:
    before the reconciler has applied what it wrote (hot copies and outbox
    entries) and after. Returns (what write returned, the figures)."""
    prefix = f"bench{env.run_id}{label}{backend}"
    factory = hybrid_factory(backend, reconciler="external", key_prefix=prefix)
    async with factory(env) as saver:
        redis = saver.hot.redis
        written = await write(saver)
        before, keys = await memory_usage(redis, f"{prefix}:*")
        worker = Reconciler(saver.hot, saver.backend)
        while await worker.step(None) > 0:
            pass
        await worker.release_all()
        after, _ = await memory_usage(redis, f"{prefix}:*")
        return written, {"keys": keys, "redis_bytes": before, "redis_bytes_after_drain": after}


async def hybrid_big_memory(env: Env, backend: str) -> dict[str, Any]:
    """Redis bytes of one checkpoint of the 140 KB state, before and after the
    reconciler applies it."""

    async def write(saver: Any) -> int:
        await Chain(saver, f"{env.run_id}-big140").put({"messages": BIG, "turn": 1})
        return big_state_bytes(saver)

    state_bytes, figures = await _hybrid_bytes(env, backend, "big", write)
    return {"state_bytes": state_bytes, **figures}


async def chat_turns(saver: Any, tag: str, turns: int) -> None:
    """`turns` turns of one chat thread (`{tag}-0`), LangGraph's default durability."""
    runner = ChatRunner(saver, "async", tag, threads=1)
    turn = runner.sequential()
    for _ in range(turns):
        await turn()


async def hybrid_chat_memory(env: Env, backend: str, turns: int) -> dict[str, Any]:
    """Redis bytes of one chat thread after `turns` turns, before and after the
    reconciler applies them."""
    _, figures = await _hybrid_bytes(
        env, backend, "chat", lambda saver: chat_turns(saver, f"{env.run_id}-chatmem", turns)
    )
    return {"turns": turns, **figures}


async def valkey_chat_memory(saver: Any, run_id: str, turns: int) -> dict[str, Any]:
    """The same chat thread on AsyncValkeySaver."""
    tag = f"{run_id}-vchatmem"
    await chat_turns(saver, tag, turns)
    total, keys = await memory_usage(saver.client, f"*{{{tag}-0}}*")
    return {"turns": turns, "keys": keys, "redis_bytes": total}


async def valkey_memory(saver: Any, run_id: str, steps: int) -> dict[str, Any]:
    """The 1,000-step thread on AsyncValkeySaver (its keys hold the thread id
    as a `{...}` hash tag, no prefix)."""
    thread_id = f"{run_id}-vmem"
    await run_steps(saver, thread_id, steps)
    total, keys = await memory_usage(saver.client, f"*{{{thread_id}}}*")
    return {
        "steps": steps,
        "thread_keys": keys,
        "thread_bytes": total,
        "bytes_per_step": total / steps,
    }


async def valkey_big_memory(saver: Any, run_id: str) -> dict[str, Any]:
    """The 140 KB state on AsyncValkeySaver."""
    thread_id = f"{run_id}-vbig140"
    await Chain(saver, thread_id).put({"messages": BIG, "turn": 1})
    total, keys = await memory_usage(saver.client, f"*{{{thread_id}}}*")
    return {"state_bytes": big_state_bytes(saver), "keys": keys, "redis_bytes": total}
