"""Reducers that keep state from growing without bound.

Every checkpoint stores each changed channel value whole (once per version),
in Redis and in the durable store. A message list that only ever grows is
rewritten at every step, so its storage grows quadratically with the length
of the conversation; `langgraph-hybrid-saver size THREAD` shows it. Cap it:

    from typing import Annotated
    from langchain_core.messages import AnyMessage
    from langgraph_hybrid_saver.reducers import rolling_window

    class State(TypedDict):
        messages: Annotated[list[AnyMessage], rolling_window(50)]

The window applies after the usual reducer (`add_messages` by default), so
messages are still appended, replaced by id and removed with `RemoveMessage`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.messages import RemoveMessage, SystemMessage, ToolMessage
from langgraph.graph.message import REMOVE_ALL_MESSAGES, add_messages

from langgraph_hybrid_saver.errors import ConfigError

__all__ = ["rolling_window"]

Reducer = Callable[[Any, Any], Any]


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _drop_stale_removals(left: Any, right: Any) -> Any:
    """`RemoveMessage`s of messages the window already dropped, removed.

    `add_messages` raises on an unknown id; with a window, "already gone" is
    the expected outcome of deleting an old message, not an error.
    """
    items = _as_list(right)
    if not any(isinstance(m, RemoveMessage) for m in items):
        return right
    known = {getattr(m, "id", None) for m in _as_list(left)}
    known |= {getattr(m, "id", None) for m in items if not isinstance(m, RemoveMessage)}
    return [
        m
        for m in items
        if not isinstance(m, RemoveMessage) or m.id == REMOVE_ALL_MESSAGES or m.id in known
    ]


def rolling_window(
    n: int, *, keep_system: bool = True, reducer: Reducer | None = None
) -> Callable[[Any, Any], list[Any]]:
    """A reducer that keeps only the newest `n` items of a list channel.

    Args:
        n: Items to keep (at least 1).
        keep_system: Keep a leading `SystemMessage` (the prompt) in addition
            to the window; it counts towards `n`.
        reducer: The reducer to apply before windowing; default
            `add_messages` (append, replace by id, `RemoveMessage`). Use
            `operator.add` for plain lists, or
            `functools.partial(add_messages, format="langchain-openai")`.

    Returns:
        A `(left, right) -> list` reducer for `Annotated[list, ...]`.

    The window never starts with a `ToolMessage`: a tool result whose
    `AIMessage` tool call fell out of the window is dropped with it, since
    chat model APIs reject an orphan tool result. A `RemoveMessage` for a
    message that already left the window is ignored.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"rolling_window(n) needs an int n >= 1, got {n!r}")
    merge: Reducer = reducer if reducer is not None else add_messages

    def window(left: Any, right: Any) -> list[Any]:
        merged = _as_list(merge(left, _drop_stale_removals(left, right)))
        if len(merged) <= n:
            return merged
        head = merged[:1] if keep_system and isinstance(merged[0], SystemMessage) else []
        tail = merged[len(merged) - (n - len(head)) :] if n > len(head) else []
        while tail and isinstance(tail[0], ToolMessage):
            tail.pop(0)
        return head + tail

    window.__name__ = window.__qualname__ = f"rolling_window({n})"
    return window
