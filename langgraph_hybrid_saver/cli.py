"""Command line: `python -m langgraph_hybrid_saver reconcile --redis URL --durable URL`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from langgraph_hybrid_saver.backends import open_backend
from langgraph_hybrid_saver.errors import HybridSaverError
from langgraph_hybrid_saver.hot import DEFAULT_PREFIX, DEFAULT_SHARDS, HotTier
from langgraph_hybrid_saver.reconciler import Reconciler
from langgraph_hybrid_saver.saver import connect_redis


async def reconcile(args: argparse.Namespace) -> None:
    """Run one reconciler worker until SIGTERM/SIGINT, then drain and exit."""
    backend = open_backend(args.durable)
    redis = await connect_redis(args.redis)
    try:
        await backend.open()
        hot = HotTier(redis, prefix=args.key_prefix, shards=args.shards)
        await hot.check_layout()
        if args.setup:
            await backend.setup()
        worker = Reconciler(hot, backend, batch_size=args.batch_size)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"reconciler {worker.owner} started", flush=True)
        await worker.run(stop)
        print(f"reconciler {worker.owner} stopped: {worker.stats.applied} applied", flush=True)
    finally:
        await backend.close()
        await redis.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="langgraph-hybrid-saver")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("reconcile", help="drain the Redis outbox into the durable store")
    rec.add_argument("--redis", required=True, help="redis://host:port/db")
    rec.add_argument(
        "--durable", required=True, help="postgresql://user@host:port/db or sqlite:///file.db"
    )
    rec.add_argument("--key-prefix", default=DEFAULT_PREFIX)
    rec.add_argument("--shards", type=int, default=DEFAULT_SHARDS)
    rec.add_argument("--batch-size", type=int, default=512)
    rec.add_argument("--setup", action="store_true", help="create the schema first")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        asyncio.run(reconcile(args))
    except HybridSaverError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
