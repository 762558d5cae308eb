"""The audit trail: a thread's checkpoints, newest first, each with the
writes that produced it and the node that wrote them.

How a write is tied to the checkpoint it produced and to a node:

* LangGraph stores the writes of the tasks that run *from* checkpoint P as
  pending writes of P. When the step ends they are applied and the next
  checkpoint C (source "loop", parent P) is saved. So the changes that
  produced a loop checkpoint are the pending writes of its parent, and the
  pending writes of the newest checkpoint are the work of a step still in
  progress or interrupted.
* `update_state` stores its writes on the checkpoint it updates as well, under
  a task path starting with `~__interrupt__`; they produced the child whose
  source is "update". A "fork" checkpoint is a copy and has no changes.
* An "input" checkpoint holds the run's input in the `__start__` channel; its
  writer is the caller, shown as "input".
* Task id -> node name. Pull tasks (edges) have the task path
  `~__pregel_pull, <node>`. Send tasks have `~__pregel_push, <idx>, ...`,
  where idx indexes the `Send` packets in the `__pregel_tasks` channel of the
  checkpoint the writes are stored on, and `Send.node` is the name. The map is
  built over the whole history read, so an `update_state(as_node=...)` whose
  writes reuse a prepared task's id get that task's name. The null task id
  marks a `Command` from the caller ("command"); other writes of
  `update_state` show as "update_state", anything else (functional-API
  calls) as `task:<first 8 characters of the task id>`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from langgraph_hybrid_saver.core import (
    StoredCheckpoint,
    WriteRow,
    sort_writes,
)
from langgraph_hybrid_saver.history.load import (
    Loaded,
    Report,
    Tier,
    load_one,
    namespaces,
    require_history,
)
from langgraph_hybrid_saver.history.values import channel_sizes, decode_channel
from langgraph_hybrid_saver.ops import Target

# LangGraph's task-path markers and channels (langgraph._internal._constants).
PULL = "__pregel_pull"
PUSH = "__pregel_push"
UPDATE_PATH = "~__interrupt__"
TASKS_CHANNEL = "__pregel_tasks"
NULL_TASK_ID = "00000000-0000-0000-0000-000000000000"


def task_names(history: Iterable[Loaded], serde: SerializerProtocol) -> dict[str, str]:
    """task id -> node name, from task paths and Send packets (module docstring)."""
    names: dict[str, str] = {}
    for loaded in history:
        sends: list[Any] | None = None
        for w in loaded.stored.writes:
            head, _, rest = w.task_path.removeprefix("~").partition(", ")
            if head == PULL and rest:
                names.setdefault(w.task_id, rest)
            elif head == PUSH:
                idx = rest.partition(", ")[0]
                if not idx.isdigit():
                    continue
                if sends is None:
                    try:
                        value = decode_channel(serde, loaded.stored, TASKS_CHANNEL)
                        sends = list(value) if isinstance(value, (list, tuple)) else []
                    except Exception:  # not decodable here: fall back to the id
                        sends = []
                if int(idx) < len(sends) and isinstance(
                    getattr(sends[int(idx)], "node", None), str
                ):
                    names.setdefault(w.task_id, sends[int(idx)].node)
    return names


def task_label(task_id: str, task_path: str, names: dict[str, str]) -> str:
    if task_id in names:
        return names[task_id]
    if task_id == NULL_TASK_ID:
        return "command"
    if task_path.startswith(UPDATE_PATH):
        return "update_state"
    return f"task:{task_id[:8]}"


@dataclass(slots=True)
class WriteView:
    """A task's writes to one channel (a Send fan-out writes one several times)."""

    channel: str
    size: int
    count: int = 1


@dataclass(slots=True)
class TaskView:
    """The writes of one task, in `writes_sort_key` order."""

    node: str
    task_id: str
    task_path: str
    writes: list[WriteView]


@dataclass(slots=True)
class CheckpointView:
    checkpoint_id: str
    parent_checkpoint_id: str | None
    step: int | None
    source: str | None
    ts: str | None
    tier: Tier
    hot_complete: bool
    updated_channels: list[str] | None
    changes: list[TaskView]  # the writes that produced this checkpoint
    pending: list[TaskView]  # writes stored on it: the next step's tasks
    size: int
    channel_sizes: dict[str, int]


@dataclass(slots=True)
class ThreadHistory(Report):
    thread_id: str
    checkpoint_ns: str
    checkpoints: list[CheckpointView]  # newest first
    namespaces: list[str]  # with a hot copy


def group_writes(writes: Sequence[WriteRow], names: dict[str, str]) -> list[TaskView]:
    tasks: dict[str, TaskView] = {}
    for w in sort_writes(writes):
        task = tasks.get(w.task_id)
        if task is None:
            label = task_label(w.task_id, w.task_path, names)
            task = tasks[w.task_id] = TaskView(label, w.task_id, w.task_path, [])
        same = next((v for v in task.writes if v.channel == w.channel), None)
        if same is None:
            task.writes.append(WriteView(w.channel, len(w.blob)))
        else:
            same.size += len(w.blob)
            same.count += 1
    return list(tasks.values())


def _changes(
    stored: StoredCheckpoint, parent: Loaded | None, names: dict[str, str], sizes: dict[str, int]
) -> list[TaskView]:
    source = stored.metadata.get("source")
    if source == "input":
        channels = stored.checkpoint.get("updated_channels") or ["__start__"]
        return [TaskView("input", "", "", [WriteView(c, sizes.get(c, 0)) for c in channels])]
    if parent is None or source == "fork":
        return []
    writes = parent.stored.writes
    if source == "update":
        writes = [w for w in writes if w.task_path.startswith(UPDATE_PATH)]
    else:
        writes = [w for w in writes if not w.task_path.startswith(UPDATE_PATH)]
    return group_writes(writes, names)


async def thread_history(
    target: Target,
    thread_id: str,
    ns: str = "",
    *,
    limit: int | None = None,
    serde: SerializerProtocol | None = None,
) -> ThreadHistory:
    """The audit trail of a namespace, newest first (module docstring)."""
    serde = serde or JsonPlusSerializer()
    history = await require_history(target, thread_id, ns, limit)
    by_id = {h.stored.checkpoint_id: h for h in history}
    oldest = history[-1].stored
    if oldest.parent_checkpoint_id and oldest.parent_checkpoint_id not in by_id:
        # The window starts mid-thread: its first changes live on the parent.
        parent = await load_one(target, thread_id, ns, oldest.parent_checkpoint_id)
        if parent is not None:
            by_id[parent.stored.checkpoint_id] = parent
    names = task_names(by_id.values(), serde)
    views = []
    for h in history:
        s = h.stored
        sizes = channel_sizes(s)
        parent = by_id.get(s.parent_checkpoint_id or "")
        views.append(
            CheckpointView(
                checkpoint_id=s.checkpoint_id,
                parent_checkpoint_id=s.parent_checkpoint_id,
                step=s.metadata.get("step"),
                source=s.metadata.get("source"),
                ts=s.checkpoint.get("ts"),
                tier=h.tier,
                hot_complete=h.hot_complete,
                updated_channels=s.checkpoint.get("updated_channels"),
                changes=_changes(s, parent, names, sizes),
                pending=group_writes(s.writes, names),
                size=sum(sizes.values()),
                channel_sizes=dict(sorted(sizes.items(), key=lambda kv: -kv[1])),
            )
        )
    return ThreadHistory(thread_id, ns, views, await namespaces(target, thread_id))
