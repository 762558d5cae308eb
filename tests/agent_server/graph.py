"""A small graph for tests/test_agent_server.py: `draft` writes (after
`delay` seconds, so a run can be caught in progress), `review` waits at
`interrupt()` for a reviewer's answer, `publish` writes it."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt


class State(TypedDict, total=False):
    topic: str
    log: Annotated[list[str], operator.add]
    verdict: str
    delay: float


async def draft(state: State) -> State:
    await asyncio.sleep(state.get("delay", 0))
    return {"log": [f"draft:{state['topic']}"]}


def review(state: State) -> State:
    verdict = interrupt({"question": f"publish {state['topic']}?"})
    return {"verdict": verdict, "log": [f"review:{verdict}"]}


def publish(state: State) -> State:
    return {"log": [f"publish:{state['verdict']}"]}


builder = StateGraph(State)
builder.add_node("draft", draft)
builder.add_node("review", review)
builder.add_node("publish", publish)
builder.add_edge(START, "draft")
builder.add_edge("draft", "review")
builder.add_edge("review", "publish")
builder.add_edge("publish", END)
graph = builder.compile()
