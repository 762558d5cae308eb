"""Real LangGraph graphs on the hybrid saver: interrupts, history, subgraphs,
sync and async, every durability mode."""

from __future__ import annotations

import uuid
from typing import Any, Literal

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from langgraph_hybrid_saver import AsyncHybridSaver, HybridSaver

from .helpers import build

Durability = Literal["sync", "async", "exit"]
MODES: list[Durability] = ["sync", "async", "exit"]


def config() -> dict[str, Any]:
    return {"configurable": {"thread_id": f"graph-{uuid.uuid4()}"}}


@pytest.mark.parametrize("durability", MODES)
async def test_async_graph_interrupt_resume_history(
    saver: AsyncHybridSaver, durability: Durability
) -> None:
    graph = build(saver)
    cfg = config()
    first = await graph.ainvoke(
        {"steps": [], "approved": None, "detail": ""}, cfg, durability=durability
    )
    assert first["steps"] == ["billing"]
    assert first["detail"] == "charge+enriched"  # the subgraph ran
    assert "__interrupt__" in first
    state = await graph.aget_state(cfg)
    assert state.next == ("review",)
    assert state.tasks[0].interrupts[0].value["question"] == "approve refund?"

    done = await graph.ainvoke(Command(resume="yes"), cfg, durability=durability)
    assert done["steps"] == ["billing", "review", "respond:True"]
    history = [s async for s in graph.aget_state_history(cfg)]
    assert history[0].values["steps"] == done["steps"]
    # The same run on the in-memory reference saver leaves the same history.
    reference = build(InMemorySaver())
    await reference.ainvoke(
        {"steps": [], "approved": None, "detail": ""}, cfg, durability=durability
    )
    await reference.ainvoke(Command(resume="yes"), cfg, durability=durability)
    expected = [s async for s in reference.aget_state_history(cfg)]
    assert [(s.values, s.next, s.metadata["step"]) for s in history] == [
        (s.values, s.next, s.metadata["step"]) for s in expected
    ]
    # The history survives in the durable store alone.
    await saver.aflush(timeout=10)
    await saver.hot.drop_thread(cfg["configurable"]["thread_id"], queue=False)
    again = [s async for s in graph.aget_state_history(cfg)]
    assert [s.config for s in again] == [s.config for s in history]
    assert [s.values for s in again] == [s.values for s in history]


async def test_update_state_and_fork(saver: AsyncHybridSaver) -> None:
    graph = build(saver)
    cfg = config()
    await graph.ainvoke({"steps": [], "approved": None, "detail": ""}, cfg)
    await graph.aupdate_state(cfg, {"approved": False, "steps": ["manual"]}, as_node="review")
    state = await graph.aget_state(cfg)
    assert state.next == ("respond",)
    assert state.values["steps"] == ["billing", "manual"]
    done = await graph.ainvoke(None, cfg)
    assert done["steps"] == ["billing", "manual", "respond:False"]
    # Fork from the checkpoint paused at review and take the other branch.
    history = [s async for s in graph.aget_state_history(cfg)]
    paused = next(s for s in history if s.next == ("review",))
    forked = await graph.ainvoke(Command(resume="yes"), paused.config)
    assert forked["steps"] == ["billing", "review", "respond:True"]


async def test_subgraph_checkpoints_live_in_their_namespace(saver: AsyncHybridSaver) -> None:
    graph = build(saver)
    cfg = config()
    await graph.ainvoke({"steps": [], "approved": None, "detail": ""}, cfg)
    state = await graph.aget_state(cfg, subgraphs=True)
    assert state.values["detail"] == "charge+enriched"
    namespaces = await saver.hot.namespaces(cfg["configurable"]["thread_id"])
    assert "" in namespaces and any(ns.startswith("details:") for ns in namespaces)


@pytest.mark.parametrize("durability", MODES)
def test_sync_graph_with_hybrid_saver(
    redis_url: str, durable_url: str, key_prefix: str, durability: Durability
) -> None:
    with HybridSaver.from_conn_string(redis_url, durable_url, key_prefix=key_prefix) as saver:
        graph = build(saver)
        cfg = config()
        chunks = list(
            graph.stream({"steps": [], "approved": None, "detail": ""}, cfg, durability=durability)
        )
        assert any("__interrupt__" in c for c in chunks)
        done = graph.invoke(Command(resume="no"), cfg, durability=durability)
        assert done["steps"] == ["billing", "review", "respond:False"]
        history = list(graph.get_state_history(cfg))
        assert history[0].values["steps"] == done["steps"]
        saver.flush(timeout=10)
        assert saver.stats()["backlog"] == 0


async def test_sync_saver_also_serves_async_graphs(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    with HybridSaver.from_conn_string(redis_url, durable_url, key_prefix=key_prefix) as saver:
        graph = build(saver)
        cfg = config()
        await graph.ainvoke({"steps": [], "approved": None, "detail": ""}, cfg)
        done = await graph.ainvoke(Command(resume="yes"), cfg)
        assert done["steps"] == ["billing", "review", "respond:True"]


async def test_sync_call_from_its_own_loop_is_refused(saver: AsyncHybridSaver) -> None:
    import asyncio

    with pytest.raises(asyncio.InvalidStateError, match="async methods"):
        saver.get_tuple(config())
