"""What tracing costs on the hot path: `aput` + `aget_tuple` of one thread
(a hot read), timed in three variants, each in a process of its own:

* `absent`: opentelemetry cannot be imported (as without the `[otel]`
  extra): the saver's methods are undecorated;
* `api`: opentelemetry-api imported, no SDK configured (the global no-op
  providers): every call opens and closes a non-recording span;
* `sdk`: the SDK's TracerProvider with an in-memory exporter
  (SimpleSpanProcessor) and a MeterProvider with an in-memory reader, set
  with `telemetry.configure`: every span is recorded with its attributes.

The three processes stay up and run their batches in rounds, in a fresh
random order each round, so drift on a shared machine hits every variant
alike; the first round is discarded. Reported per pair: wall-clock p50
and mean, and the CPU time the process spent, which waiting on a busy
machine does not inflate. The saver has `reconciler="external"`
and no worker runs: only the saver's own path is timed. The keys are
deleted at the end.

    python -m benchmarks.telemetry_overhead [--rounds 12] [--ops 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

VARIANTS = ("absent", "api", "sdk")
ROOT = Path(__file__).resolve().parents[1]


def hide_opentelemetry() -> None:
    """Make `import opentelemetry...` fail, as when it is not installed."""
    for name in ("opentelemetry", "opentelemetry.trace", "opentelemetry.metrics"):
        sys.modules[name] = None  # type: ignore[assignment]


async def child(variant: str, redis_url: str, durable_url: str, prefix: str) -> None:
    """Run batches on request: a line `N` on stdin runs N aput + aget_tuple
    pairs and prints their latencies and the CPU seconds this process spent
    on the batch (JSON); an empty line ends it."""
    if variant == "absent":
        hide_opentelemetry()
    from langgraph.checkpoint.base import empty_checkpoint

    from langgraph_hybrid_saver import AsyncHybridSaver, telemetry

    assert telemetry.ENABLED == (variant != "absent")
    if variant == "sdk":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        telemetry.configure(tracer_provider=tracer_provider, meter_provider=meter_provider)

    thread = f"{variant}-{uuid.uuid4()}"
    config: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    async with AsyncHybridSaver.from_conn_string(
        redis_url, durable_url, key_prefix=prefix, reconciler="external"
    ) as saver:
        step = 0
        loop = asyncio.get_running_loop()
        while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
            latencies = []
            cpu = time.process_time()
            for _ in range(int(line)):
                step += 1
                checkpoint = empty_checkpoint()
                checkpoint["channel_values"] = {"count": step, "note": "x" * 200}
                checkpoint["channel_versions"] = {"count": str(step), "note": str(step)}
                versions = checkpoint["channel_versions"]
                started = time.perf_counter()
                config = await saver.aput(config, checkpoint, {"step": step}, versions)
                await saver.aget_tuple(config)
                latencies.append(time.perf_counter() - started)
                if variant == "sdk" and step % 1000 == 0:
                    spans.clear()  # keep memory flat; the spans were recorded
            cpu = time.process_time() - cpu
            print(json.dumps({"latencies": latencies, "cpu": cpu}), flush=True)
        keys = [k async for k in saver.hot.redis.scan_iter(f"{prefix}:*")]
        if keys:
            await saver.hot.redis.delete(*keys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12, help="rounds (the first is warm-up)")
    parser.add_argument("--ops", type=int, default=500, help="aput+aget_tuple pairs per batch")
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--durable", default=os.environ.get("DURABLE_URL"))
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        asyncio.run(child(args.child, args.redis, args.durable, args.prefix))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        durable = args.durable or f"sqlite:///{tmp}/telemetry.db"
        return measure(args, durable)


def measure(args: argparse.Namespace, durable: str) -> int:
    def command(variant: str) -> list[str]:
        prefix = f"bench-otel-{variant}-{uuid.uuid4().hex[:8]}"
        return [
            sys.executable,
            "-m",
            "benchmarks.telemetry_overhead",
            "--child",
            variant,
            "--redis",
            args.redis,
            "--durable",
            durable,
            "--prefix",
            prefix,
        ]

    procs = {
        v: subprocess.Popen(
            command(v),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for v in VARIANTS
    }
    batches: dict[str, list[list[float]]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}  # CPU seconds per pair
    try:
        for r in range(args.rounds):
            order = random.sample(VARIANTS, len(VARIANTS))
            for v in order:
                proc = procs[v]
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(f"{args.ops}\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
                if not line:
                    sys.exit(f"the {v!r} process ended early (exit {proc.wait()}): see its stderr")
                batch = json.loads(line)
                if r > 0:  # the first round warms up
                    batches[v].append(batch["latencies"])
                    cpu[v].append(batch["cpu"] / args.ops)
            print(f"round {r + 1}/{args.rounds}: {' '.join(order)}", file=sys.stderr)
    finally:
        for proc in procs.values():
            if proc.stdin is not None and proc.poll() is None:
                proc.stdin.write("\n")
                proc.stdin.close()
        for proc in procs.values():
            proc.wait(timeout=60)
    table = report(batches, cpu, args)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    return 0


def report(
    batches: dict[str, list[list[float]]], cpu: dict[str, list[float]], args: argparse.Namespace
) -> str:
    """Per variant, in microseconds per aput + aget_tuple pair: the median over
    rounds of each round's p50 and mean latency and of the CPU time the
    process spent (the client's own cost, which waiting on a loaded machine
    does not inflate); and both ratios to `absent` paired by round (the
    median of the round-by-round ratios), which cancels the drift that hits
    a round's three batches alike."""
    p50s = {v: [statistics.median(b) for b in rounds] for v, rounds in batches.items()}
    means = {v: [statistics.fmean(b) for b in rounds] for v, rounds in batches.items()}
    lines = [
        f"{args.rounds - 1} rounds x {args.ops} aput+aget_tuple pairs per variant, "
        "µs per pair (median over rounds)",
        "",
        "| variant | p50 µs | mean µs | CPU µs | p50 / absent | CPU / absent |",
        "|---|---|---|---|---|---|",
    ]

    def paired(values: dict[str, list[float]], v: str) -> float:
        return statistics.median(a / b for a, b in zip(values[v], values["absent"], strict=True))

    for v in VARIANTS:
        lines.append(
            f"| {v} | {statistics.median(p50s[v]) * 1e6:.0f} "
            f"| {statistics.median(means[v]) * 1e6:.0f} | {statistics.median(cpu[v]) * 1e6:.0f} "
            f"| {paired(p50s, v):.3f}x | {paired(cpu, v):.3f}x |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
