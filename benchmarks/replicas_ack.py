"""What `replicas_ack` costs per put.

    python -m benchmarks.replicas_ack [--puts 2000] [--rounds 5]

A private Redis primary with two replicas on 127.0.0.1 (scripts/ha.py's
launcher, no sentinels: the cost is the WAIT), SQLite as the durable store
and no reconciler (the outbox just grows), so a put is Redis work only. Each
round runs every setting in turn: `--puts` sequential `aput` calls (latency),
then as many spread over 16 concurrent tasks (throughput). Prints the median
over rounds of each figure and its ratio to `replicas_ack=None`. On one
host the replicas answer in microseconds: across hosts add a network round
trip to each acknowledged put.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import empty_checkpoint

from langgraph_hybrid_saver import AsyncHybridSaver
from scripts.ha import SentinelGroup

SETTINGS: list[dict[str, Any]] = [{}, {"replicas_ack": 1}, {"replicas_ack": 2}]
CONCURRENCY = 16


def label(options: dict[str, Any]) -> str:
    return f"replicas_ack={options.get('replicas_ack')}"


async def put_many(saver: AsyncHybridSaver, thread: str, n: int, latencies: list[float]) -> None:
    config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    for i in range(n):
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"step": i}
        checkpoint["channel_versions"] = {"step": i + 1}
        t0 = time.perf_counter()
        config = await saver.aput(config, checkpoint, {"step": i}, {"step": i + 1})
        latencies.append(time.perf_counter() - t0)


async def measure(
    url: str, durable: str, options: dict[str, Any], puts: int, tag: str
) -> dict[str, float]:
    async with AsyncHybridSaver.from_conn_string(
        url,
        durable,
        key_prefix=f"bench-{tag}",
        reconciler="external",
        thread_index=False,
        **options,
    ) as saver:
        await put_many(saver, f"warm-{tag}", 50, [])
        latencies: list[float] = []
        await put_many(saver, f"seq-{tag}", puts, latencies)
        t0 = time.perf_counter()
        await asyncio.gather(
            *(
                put_many(saver, f"conc-{tag}-{i}", puts // CONCURRENCY, [])
                for i in range(CONCURRENCY)
            )
        )
        elapsed = time.perf_counter() - t0
        await saver.hot.redis.flushdb()
    return {
        "p50_us": statistics.median(latencies) * 1e6,
        "p99_us": statistics.quantiles(latencies, n=100)[98] * 1e6,
        "puts_per_s_16": (puts // CONCURRENCY) * CONCURRENCY / elapsed,
    }


async def run(url: str, durable: str, puts: int, rounds: int) -> dict[str, dict[str, float]]:
    samples: dict[str, list[dict[str, float]]] = {label(o): [] for o in SETTINGS}
    for r in range(rounds):
        for options in SETTINGS:  # interleaved: drift hits every setting alike
            samples[label(options)].append(
                await measure(url, durable, options, puts, f"{r}-{options.get('replicas_ack')}")
            )
    return {
        name: {k: statistics.median(s[k] for s in runs) for k in runs[0]}
        for name, runs in samples.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--puts", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="lhs-replicas-ack-"))
    group = SentinelGroup(folder, replicas=2, sentinels=0)
    group.start()
    try:
        url = f"redis://127.0.0.1:{group.primary.port}/0"
        durable = f"sqlite:///{folder}/bench.db"
        figures = asyncio.run(run(url, durable, args.puts, args.rounds))
    finally:
        group.stop()
    base = figures[label({})]
    print(f"{args.puts} puts x {args.rounds} rounds, medians; 2 replicas on this host")
    print(
        "| setting | put p50 µs | put p99 µs | puts/s, 16 concurrent | p50 ratio | puts/s ratio |"
    )
    print("|---|---|---|---|---|---|")
    for name, f in figures.items():
        print(
            f"| {name} | {f['p50_us']:.0f} | {f['p99_us']:.0f} | {f['puts_per_s_16']:.0f} | "
            f"x{f['p50_us'] / base['p50_us']:.2f} | "
            f"x{f['puts_per_s_16'] / base['puts_per_s_16']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
