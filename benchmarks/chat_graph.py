"""A multi-turn chat graph: one node that appends an AI reply.

Each turn is a new invocation on the same thread with one user message; the
`messages` channel (`add_messages`) grows by two messages per turn, so every
turn reads the thread's latest checkpoint and writes a larger one: the
returning-thread case of a chat application.
"""

from __future__ import annotations

import random
from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from benchmarks.ops import filler

_rng = random.Random(20)
# Fixed texts, made once, so no turn spends time generating them.
USER_TEXT = [filler(200, _rng) for _ in range(8)]
REPLY_TEXT = [filler(400, _rng) for _ in range(8)]


class ChatState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def reply(state: ChatState) -> dict[str, Any]:
    n = len(state["messages"])
    return {"messages": [AIMessage(f"reply {n // 2}: " + REPLY_TEXT[n % len(REPLY_TEXT)])]}


def build_chat_graph(checkpointer: Any) -> Any:
    g = StateGraph(ChatState)
    g.add_node("reply", reply)
    g.add_edge(START, "reply")
    return g.compile(checkpointer=checkpointer)


def user_turn(thread: int, turn: int) -> ChatState:
    """The input of turn `turn` (0-based) of thread `thread`: one user message."""
    text = USER_TEXT[(thread + turn) % len(USER_TEXT)]
    return {"messages": [HumanMessage(f"turn {turn} of {thread}: {text}")]}


def check_turn(out: dict[str, Any], turn: int) -> None:
    """Raise unless the thread holds every earlier turn plus this one (a saver
    that lost or mixed up the conversation)."""
    msgs = out["messages"]
    if len(msgs) != 2 * (turn + 1) or not str(msgs[-2].content).startswith(f"turn {turn} "):
        raise AssertionError(
            f"chat turn {turn}: expected {2 * (turn + 1)} messages ending with turn {turn}, "
            f"got {len(msgs)}"
        )
