"""Redis memory of the thread index per thread: MEMORY USAGE of one shard's
index set holding N UUID thread ids (the form LangGraph users mostly use).

    python -m benchmarks.thread_index_memory [--redis URL] [--threads N]
"""

from __future__ import annotations

import argparse
import uuid

import redis

from langgraph_hybrid_saver.hot.keys import Keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--threads", type=int, default=10_000)
    args = parser.parse_args()
    client = redis.Redis.from_url(args.redis)
    key = Keys(f"bench-index-{uuid.uuid4().hex[:8]}", 1).thread_index[0]
    try:
        ids = [str(uuid.uuid4()) for _ in range(args.threads)]
        for i in range(0, len(ids), 1000):
            client.sadd(key, *ids[i : i + 1000])
        client.sadd(key, b"\x00complete")
        used = client.memory_usage(key, samples=0) or 0
        print(f"{args.threads} UUID threads: {used} bytes, {used / args.threads:.1f} per thread")
    finally:
        client.delete(key)


if __name__ == "__main__":
    main()
