"""One side of a conversation that two processes take turns in.

usage: python -m tests.chat_child REDIS_URL DURABLE_URL PREFIX THREAD
Reads "turn N" lines from stdin; for each, runs one turn of `tests.helpers`'
chat graph on THREAD (message "child-N") and prints the thread's messages as
JSON. "quit" ends it.
"""

from __future__ import annotations

import asyncio
import json
import sys

from langgraph_hybrid_saver import AsyncHybridSaver
from tests.helpers import chat_graph


async def main(redis_url: str, durable_url: str, prefix: str, thread: str) -> None:
    async with AsyncHybridSaver.from_conn_string(redis_url, durable_url, key_prefix=prefix) as s:
        graph = chat_graph().compile(checkpointer=s)
        config = {"configurable": {"thread_id": thread}}
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        while (line := await loop.run_in_executor(None, sys.stdin.readline)).strip() != "quit":
            n = line.split()[1]
            out = await graph.ainvoke({"messages": [f"child-{n}"]}, config)
            print(json.dumps(out["messages"]), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
