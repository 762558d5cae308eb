"""Which connection pool sizes AsyncValkeySaver needs for 16 concurrent invocations.

    python -m benchmarks.valkey_pool [--redis-url URL] [--mode async] 10 64 128 1024

For each pool size: a fresh `AsyncValkeySaver.from_conn_string(url,
pool_size=N)` (a cold pool), then 16 concurrent workers invoking the support
graph twice each (new threads); prints "ok" or the error. Its `aput_writes`
holds a connection for a WATCH/GET/MULTI/EXEC round trip per call in flight,
so a small pool fails with "Too many connections". The keys it writes are
deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.competitors import REDIS_URL, drop_threads
from benchmarks.graphs import MODES, WORKERS, GraphRunner


async def attempt(url: str, pool_size: int, mode: str) -> str:
    from langgraph_checkpoint_aws.checkpoint.valkey.async_saver import AsyncValkeySaver
    from valkey.asyncio import Valkey

    run_id = uuid.uuid4().hex[:8]
    try:
        async with AsyncValkeySaver.from_conn_string(url, pool_size=pool_size) as saver:
            runner = GraphRunner(saver, mode, f"{run_id}-pool{pool_size}")

            async def worker() -> None:
                for _ in range(2):
                    await runner.invoke()

            tasks = [asyncio.create_task(worker()) for _ in range(WORKERS)]
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in pending:  # the first error stops the rest
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            errors = [t.exception() for t in done if t.exception() is not None]
        if errors:
            return f"failed: {type(errors[0]).__name__}: {errors[0]}"
        return "ok"
    finally:
        cleanup = Valkey.from_url(url)  # the saver's own pool may be the exhausted one
        try:
            await drop_threads(cleanup, run_id)
        finally:
            await cleanup.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.valkey_pool")
    parser.add_argument("sizes", nargs="+", type=int, metavar="POOL_SIZE")
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument("--mode", choices=MODES, default="async", help="LangGraph durability")
    args = parser.parse_args(argv)
    logging.disable(logging.ERROR)  # the saver logs each failed call; the result says it once
    for size in args.sizes:
        print(f"pool_size={size}: {asyncio.run(attempt(args.redis_url, size, args.mode))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
