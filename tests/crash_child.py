"""A graph run in a child process that the tests kill with SIGKILL.

usage: python -m tests.crash_child REDIS_URL DURABLE_URL PREFIX THREAD LOG run|resume
Each node appends "<node> <pid>" to LOG; node "c" blocks on the first run so
the parent can kill the process while it is mid-graph.
"""

from __future__ import annotations

import asyncio
import operator
import os
import sys
import time
from typing import Annotated, Any

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from langgraph_hybrid_saver import AsyncHybridSaver


class State(TypedDict):
    done: Annotated[list[str], operator.add]


def node(name: str, log: str, block: bool) -> Any:
    def run(state: State) -> dict[str, Any]:
        with open(log, "a") as f:
            f.write(f"{name} {os.getpid()}\n")
        if block:
            time.sleep(60)  # killed here
        return {"done": [name]}

    return run


async def main(
    redis_url: str, durable_url: str, prefix: str, thread: str, log: str, mode: str
) -> None:
    async with AsyncHybridSaver.from_conn_string(
        redis_url, durable_url, key_prefix=prefix
    ) as saver:
        g = StateGraph(State)
        for name in "abcd":
            g.add_node(name, node(name, log, block=name == "c" and mode == "run"))
        g.add_edge(START, "a")
        g.add_edge("a", "b")
        g.add_edge("b", "c")
        g.add_edge("c", "d")
        g.add_edge("d", END)
        graph = g.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": thread}}
        inputs = {"done": []} if mode == "run" else None
        result = await graph.ainvoke(inputs, config, durability="sync")
        print("RESULT", ",".join(result["done"]), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
