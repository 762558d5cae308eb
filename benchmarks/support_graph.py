"""A support-desk graph: billing -> account -> policy -> response.

Our own copy (the example package is built elsewhere): four nodes, a small
typed state whose `messages` channel uses `add_messages`, so every step
writes a new version of a growing message list like a real chat graph.
"""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict


class SupportState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    customer_id: str
    intent: str
    account_status: str
    policy: str
    resolved: bool


def billing(state: SupportState) -> dict[str, Any]:
    text = str(state["messages"][-1].content)
    intent = "refund" if "refund" in text else "invoice"
    return {"intent": intent, "messages": [AIMessage(f"billing: {intent} request noted")]}


def account(state: SupportState) -> dict[str, Any]:
    status = "active" if int(state.get("customer_id", "0")[-1:] or 0) % 5 else "on_hold"
    return {"account_status": status, "messages": [AIMessage(f"account: status {status}")]}


def policy(state: SupportState) -> dict[str, Any]:
    rule = "refund within 30 days" if state.get("intent") == "refund" else "invoice on request"
    return {"policy": rule, "messages": [AIMessage(f"policy: {rule}")]}


def response(state: SupportState) -> dict[str, Any]:
    ok = state.get("account_status") == "active"
    reply = f"Done: {state.get('policy')}" if ok else "Escalated: the account is on hold"
    return {"resolved": ok, "messages": [AIMessage(reply)]}


def build_support_graph(checkpointer: Any) -> Any:
    """The compiled graph; `checkpointer=None` gives the no-checkpointer baseline."""
    g = StateGraph(SupportState)
    g.add_node("billing", billing)
    g.add_node("account", account)
    g.add_node("policy", policy)
    g.add_node("response", response)
    g.add_edge(START, "billing")
    g.add_edge("billing", "account")
    g.add_edge("account", "policy")
    g.add_edge("policy", "response")
    g.add_edge("response", END)
    return g.compile(checkpointer=checkpointer)


def ticket(i: int) -> SupportState:
    """The input of invocation `i`: one customer message."""
    verb = "refund" if i % 2 else "invoice"
    return {
        "messages": [HumanMessage(f"Hi, I need a {verb} for order #{10_000 + i}, thanks")],
        "customer_id": f"c{i}",
    }


def check_result(out: dict[str, Any]) -> None:
    """Raise if an invocation did not run all four nodes (a broken saver)."""
    if len(out["messages"]) < 5 or "resolved" not in out:
        raise AssertionError(f"support graph returned an incomplete state: {out!r}")
