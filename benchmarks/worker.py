"""A reconciler worker process for the `+worker` hybrid variant.

The same thing `python -m langgraph_hybrid_saver reconcile` runs (a HotTier and
a `Reconciler.run` until SIGTERM, then drain), plus one line per applied
batch in `--lag-file`: the wall-clock time of the durable commit and the lag
of each entry (ms from its stream id), so reconcile lag is measured per entry in the
worker exactly as it is for the in-process reconciler.

    python -m benchmarks.worker --redis URL --durable URL --key-prefix P --lag-file F
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langgraph_hybrid_saver.backends import open_backend
from langgraph_hybrid_saver.hot import HotTier
from langgraph_hybrid_saver.hot.client import connect_redis
from langgraph_hybrid_saver.outbox.reconciler import Reconciler


async def work(args: argparse.Namespace) -> None:
    backend = open_backend(args.durable)
    redis = await connect_redis(args.redis)
    lag_file = Path(args.lag_file).open("a", buffering=1)
    try:
        await backend.open()
        hot = HotTier(redis, prefix=args.key_prefix)
        await hot.check_layout()

        def committed(applied: Any) -> None:  # right after each durable commit
            now_ms = time.time() * 1000
            lags = " ".join(f"{now_ms - int(sid.split('-')[0]):.1f}" for _, sid in applied)
            lag_file.write(f"{now_ms:.1f} {lags}\n")

        worker = Reconciler(hot, backend)
        worker.on_applied = committed
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print("worker started", flush=True)
        await worker.run(stop)
    finally:
        lag_file.close()
        await backend.close()
        await redis.aclose()


def read_lags(path: Path, since_ms: float, until_ms: float) -> list[float]:
    """Per-entry lags (ms) of the batches acked within [since_ms, until_ms]."""
    out: list[float] = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        ack_ms, *lags = line.split()
        if since_ms <= float(ack_ms) <= until_ms:
            out += [float(v) for v in lags]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    parser.add_argument("--redis", required=True)
    parser.add_argument("--durable", required=True)
    parser.add_argument("--key-prefix", required=True)
    parser.add_argument("--lag-file", required=True)
    asyncio.run(work(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
