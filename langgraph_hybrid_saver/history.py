"""A thread's history read from both tiers, for operators: who changed what and
when (the audit trail), what changed between two checkpoints, and how large the
state is and how it grows. Read-only: no TTL refresh, no read-through copy.

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

Sizes are serialized sizes: the blob bytes of a channel value (what Redis and
the durable store keep), or the JSON length of an inline primitive.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from langgraph_hybrid_saver.core import ListQuery, StoredCheckpoint, WriteRow, sort_writes
from langgraph_hybrid_saver.errors import NotFoundError
from langgraph_hybrid_saver.ops import Target

# LangGraph's task-path markers and channels (langgraph._internal._constants).
PULL = "__pregel_pull"
PUSH = "__pregel_push"
UPDATE_PATH = "~__interrupt__"
TASKS_CHANNEL = "__pregel_tasks"
NULL_TASK_ID = "00000000-0000-0000-0000-000000000000"

Tier = Literal["hot", "durable", "both"]


# --- loading --------------------------------------------------------------------


@dataclass(slots=True)
class Loaded:
    """One checkpoint and where it was found. `stored` is the hot copy when it
    is complete (it may carry writes not reconciled yet), else the durable one;
    its writes are the union of both tiers."""

    stored: StoredCheckpoint
    in_hot: bool
    hot_complete: bool
    in_durable: bool

    @property
    def tier(self) -> Tier:
        if self.in_hot and self.in_durable:
            return "both"
        return "hot" if self.in_hot else "durable"


def _merge(
    hot: StoredCheckpoint | None, hot_complete: bool, durable: StoredCheckpoint | None
) -> Loaded:
    base = hot if hot is not None and (hot_complete or durable is None) else durable
    assert base is not None
    writes: dict[tuple[str, int], WriteRow] = {}
    for w in [*(durable.writes if durable else []), *(hot.writes if hot else [])]:
        writes[(w.task_id, w.idx)] = w  # hot last: it wins
    base.writes = list(writes.values())
    return Loaded(base, hot is not None, hot is not None and hot_complete, durable is not None)


async def _hot_full(
    target: Target, thread_id: str, ns: str, header: StoredCheckpoint
) -> tuple[StoredCheckpoint, bool]:
    """The hot checkpoint with blobs and writes, and whether Redis alone had
    it all. Blobs Redis lost (restart, eviction) come from the durable store."""
    read = await target.hot.get(thread_id, ns, header.checkpoint_id)
    if read.stored is None:
        header.writes = read.writes
        return header, False
    if read.missing and target.backend is not None:
        read.stored.blobs.update(await target.backend.get_blobs(thread_id, ns, read.missing))
    return read.stored, not read.missing


async def load_history(target: Target, thread_id: str, ns: str, limit: int | None) -> list[Loaded]:
    """The newest `limit` checkpoints of a namespace (all when None), newest
    first. Redis is read before the durable store: an entry the reconciler
    moves meanwhile is seen in one tier or both, never in neither."""
    headers, _ = await target.hot.list_headers(thread_id, ns, None, limit)
    hot: dict[str, tuple[StoredCheckpoint, bool]] = {}
    for h in headers:
        hot[h.checkpoint_id] = await _hot_full(target, thread_id, ns, h)
    durable: dict[str, StoredCheckpoint] = {}
    if target.backend is not None:
        query = ListQuery(thread_id, ns, None, None, None, limit)
        durable = {d.checkpoint_id: d for d in await target.backend.list(query)}
    ids = sorted(hot.keys() | durable.keys(), reverse=True)
    if limit is not None:
        ids = ids[:limit]
    out = []
    for cid in ids:
        if cid in hot:
            out.append(_merge(*hot[cid], durable.get(cid)))
        else:
            out.append(_merge(None, False, durable[cid]))
    return out


async def load_one(target: Target, thread_id: str, ns: str, checkpoint_id: str) -> Loaded | None:
    """One checkpoint by its exact id, from either tier (None if in neither)."""
    if not checkpoint_id:  # an empty id would mean "the latest" to the backend
        return None
    headers, _ = await target.hot.list_headers(thread_id, ns, _after(checkpoint_id), 1)
    hot, complete = None, False
    if headers and headers[0].checkpoint_id == checkpoint_id:
        hot, complete = await _hot_full(target, thread_id, ns, headers[0])
    durable = None
    if target.backend is not None:
        durable = await target.backend.get(thread_id, ns, checkpoint_id)
    if hot is None and durable is None:
        return None
    return _merge(hot, complete, durable)


def _after(checkpoint_id: str) -> str:
    """The smallest string above `checkpoint_id` (for an exclusive `before`)."""
    return checkpoint_id + "\x00"


async def namespaces(target: Target, thread_id: str) -> list[str]:
    """Namespaces with a hot copy (the durable store is not asked: it would
    mean reading every checkpoint of the thread)."""
    return await target.hot.namespaces(thread_id)


async def require_history(
    target: Target, thread_id: str, ns: str, limit: int | None
) -> list[Loaded]:
    history = await load_history(target, thread_id, ns, limit)
    if not history:
        known = await namespaces(target, thread_id)
        where = "Redis or the durable store" if target.backend else "Redis (no --durable given)"
        hint = (
            f"; namespaces in Redis: {', '.join(repr(n) for n in known)}"
            if known and ns not in known
            else ""
        )
        raise NotFoundError(
            f"thread {thread_id!r} has no checkpoints in namespace {ns!r} in {where}{hint}"
        )
    return history


# --- task names -----------------------------------------------------------------


def decode_channel(serde: SerializerProtocol, stored: StoredCheckpoint, channel: str) -> Any:
    """A channel value of a stored checkpoint; raises KeyError when it has none."""
    if channel in stored.blobs:
        type_, blob = stored.blobs[channel]
        if type_ == "empty":
            raise KeyError(channel)
        return serde.loads_typed((type_, blob or b""))
    return stored.checkpoint.get("channel_values", {})[channel]


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


# --- audit trail ----------------------------------------------------------------


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
class ThreadHistory:
    thread_id: str
    checkpoint_ns: str
    checkpoints: list[CheckpointView]  # newest first
    namespaces: list[str]  # with a hot copy

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def channel_sizes(stored: StoredCheckpoint) -> dict[str, int]:
    sizes = {
        ch: len(json.dumps(v, separators=(",", ":")))
        for ch, v in (stored.checkpoint.get("channel_values") or {}).items()
    }
    for ch, (type_, blob) in stored.blobs.items():
        sizes[ch] = 0 if type_ == "empty" else len(blob or b"")
    return sizes


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


# --- diff -----------------------------------------------------------------------


@dataclass(slots=True)
class ChannelChange:
    channel: str
    change: Literal["added", "removed", "changed"]
    version_a: str | None
    version_b: str | None
    size_a: int | None
    size_b: int | None
    detail: str
    before: str | None  # short previews, not the values
    after: str | None


@dataclass(slots=True)
class CheckpointDiff:
    thread_id: str
    checkpoint_ns: str
    a: str
    b: str
    changes: list[ChannelChange]
    unchanged: list[str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _Undecodable:
    def __init__(self, why: str) -> None:
        self.why = why

    def __repr__(self) -> str:
        return f"<not decodable here: {self.why}>"


class _Empty:
    """A channel with a version but no value (consumed, like `__start__`)."""

    def __repr__(self) -> str:
        return "(empty)"


EMPTY = _Empty()


def _value(serde: SerializerProtocol, stored: StoredCheckpoint, channel: str) -> Any:
    try:
        return decode_channel(serde, stored, channel)
    except KeyError:
        return EMPTY
    except Exception as e:
        return _Undecodable(f"{type(e).__name__}: {e}")


def preview(value: Any, limit: int = 100) -> str:
    """A one-line preview of a channel value (messages as `type: content`)."""
    content = getattr(value, "content", None)
    if isinstance(getattr(value, "type", None), str) and content is not None:
        text = f"{value.type}: {content if isinstance(content, str) else repr(content)}"
    elif isinstance(value, (list, tuple)):
        items = [preview(v, 40) for v in value[:3]]
        more = f", … ({len(value)} items)" if len(value) > 3 else ""
        text = f"[{', '.join(items)}{more}]"
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _list_detail(a: Sequence[Any], b: Sequence[Any]) -> tuple[str, Sequence[Any]]:
    """How list b differs from list a, and the items that are new in b."""
    if len(b) >= len(a) and list(b[: len(a)]) == list(a):
        return f"+{len(b) - len(a)} items appended", b[len(a) :]
    # A rolling window: b continues a suffix of a.
    for dropped in range(1, len(a) + 1):
        kept = list(a[dropped:])
        if list(b[: len(kept)]) == kept and kept:
            added = b[len(kept) :]
            return f"-{dropped} oldest, +{len(added)} appended", added
    return f"{len(a)} -> {len(b)} items", b


def diff_stored(
    a: StoredCheckpoint, b: StoredCheckpoint, serde: SerializerProtocol | None = None
) -> CheckpointDiff:
    """What changed from checkpoint a to checkpoint b, channel by channel.

    A channel changed when its version changed (what LangGraph counts as an
    update), even if the new value equals the old one.
    """
    serde = serde or JsonPlusSerializer()
    va: dict[str, Any] = a.checkpoint.get("channel_versions") or {}
    vb: dict[str, Any] = b.checkpoint.get("channel_versions") or {}
    sa, sb = channel_sizes(a), channel_sizes(b)
    changes, unchanged = [], []
    for ch in sorted(va.keys() | vb.keys()):
        if ch in va and ch in vb and str(va[ch]) == str(vb[ch]):
            unchanged.append(ch)
            continue
        before, after = _value(serde, a, ch), _value(serde, b, ch)
        if ch not in va:
            kind: Literal["added", "removed", "changed"] = "added"
            detail = "new channel"
        elif ch not in vb:
            kind, detail = "removed", "channel gone"
        else:
            kind, detail = "changed", "value replaced"
            if after is EMPTY:
                detail = "value consumed"
            elif before is EMPTY:
                detail = "value set"
            elif isinstance(before, list) and isinstance(after, list):
                detail, new_items = _list_detail(before, after)
                after = list(new_items)
            elif before == after:
                detail = "same value, new version"
        changes.append(
            ChannelChange(
                ch,
                kind,
                None if ch not in va else str(va[ch]),
                None if ch not in vb else str(vb[ch]),
                sa.get(ch),
                sb.get(ch),
                detail,
                None if ch not in va else preview(before),
                None if ch not in vb else preview(after),
            )
        )
    return CheckpointDiff(
        a.thread_id, a.checkpoint_ns, a.checkpoint_id, b.checkpoint_id, changes, unchanged
    )


def resolve_checkpoint(history: Sequence[Loaded], ref: str) -> str | None:
    """A checkpoint id from an exact id or a unique part of one (e.g. its
    last 8 characters). None when nothing in `history` matches."""
    ids = [h.stored.checkpoint_id for h in history]
    if ref in ids:
        return ref
    hits = [cid for cid in ids if ref and ref in cid]
    if len(hits) > 1:
        raise NotFoundError(
            f"checkpoint {ref!r} is ambiguous: it matches {', '.join(hits[:5])}"
            f"{' …' if len(hits) > 5 else ''}; give more characters"
        )
    return hits[0] if hits else None


async def diff_checkpoints(
    target: Target,
    thread_id: str,
    ns: str,
    a_ref: str,
    b_ref: str,
    *,
    serde: SerializerProtocol | None = None,
) -> CheckpointDiff:
    found: list[StoredCheckpoint] = []
    history: list[Loaded] | None = None
    for ref in (a_ref, b_ref):
        exact = await load_one(target, thread_id, ns, ref)
        if exact is not None:
            found.append(exact.stored)
            continue
        if history is None:  # a part of an id: search the whole namespace
            history = await require_history(target, thread_id, ns, None)
        cid = resolve_checkpoint(history, ref)
        if cid is None:
            raise NotFoundError(
                f"no checkpoint of thread {thread_id!r} (namespace {ns!r}) matches {ref!r}; "
                "list them with `langgraph-hybrid-saver inspect THREAD`"
            )
        found.append(next(h.stored for h in history if h.stored.checkpoint_id == cid))
    return diff_stored(found[0], found[1], serde)


# --- state size -----------------------------------------------------------------


@dataclass(slots=True)
class ChannelSize:
    channel: str
    size: int  # in the newest checkpoint
    share: float  # of the newest checkpoint's state
    items: int | None  # length, for lists and dicts
    versions: int  # distinct versions in the history read
    stored: int  # bytes of those versions: what the durable store keeps


@dataclass(slots=True)
class StepSize:
    checkpoint_id: str
    step: int | None
    source: str | None
    size: int
    delta: int
    top_channel: str | None  # the channel that grew most in this step
    top_delta: int


@dataclass(slots=True)
class SizeReport:
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    total: int
    channels: list[ChannelSize]  # largest first
    steps: list[StepSize]  # oldest first
    hints: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


GROWTH_HINT_MIN_STEPS = 5
GROWTH_HINT_SHARE = 0.8
GROWTH_HINT_MIN_BYTES = 1024


def size_report_of(
    history: Sequence[Loaded], serde: SerializerProtocol | None = None
) -> SizeReport:
    """Largest channels of the newest checkpoint and growth per step.

    `history` newest first, as `load_history` returns it.
    """
    serde = serde or JsonPlusSerializer()
    oldest_first = [h.stored for h in reversed(history)]
    latest = oldest_first[-1]
    sizes = [channel_sizes(s) for s in oldest_first]
    stored_versions: dict[str, dict[str, int]] = {}
    for s in oldest_first:
        versions = s.checkpoint.get("channel_versions") or {}
        for ch, (type_, blob) in s.blobs.items():
            size = 0 if type_ == "empty" else len(blob or b"")
            stored_versions.setdefault(ch, {})[str(versions.get(ch))] = size
    total = sum(sizes[-1].values())
    channels = []
    for ch, size in sorted(sizes[-1].items(), key=lambda kv: (-kv[1], kv[0])):
        value = _value(serde, latest, ch)
        held = stored_versions.get(ch, {})
        channels.append(
            ChannelSize(
                ch,
                size,
                round(size / total, 4) if total else 0.0,
                len(value) if isinstance(value, (list, tuple, dict)) else None,
                len(held) or 1,
                sum(held.values()) or size,
            )
        )
    steps: list[StepSize] = []
    changed: dict[str, int] = {}
    grew: dict[str, int] = {}
    for i, s in enumerate(oldest_first):
        prev = sizes[i - 1] if i else {}
        deltas = {ch: n - prev.get(ch, 0) for ch, n in sizes[i].items()}
        top = max(deltas.items(), key=lambda kv: kv[1], default=(None, 0))
        for ch, d in deltas.items():
            if ch in prev and d:
                changed[ch] = changed.get(ch, 0) + 1
                grew[ch] = grew.get(ch, 0) + (d > 0)
        steps.append(
            StepSize(
                s.checkpoint_id,
                s.metadata.get("step"),
                s.metadata.get("source"),
                sum(sizes[i].values()),
                sum(sizes[i].values()) - sum(prev.values()) if i else 0,
                top[0] if top[1] > 0 else None,
                max(top[1], 0),
            )
        )
    # A collection that grows nearly every time it changes will keep growing
    # (a rolling window shrinks about as often as it grows).
    hints = []
    for c in channels:
        n_changed, n_grew = changed.get(c.channel, 0), grew.get(c.channel, 0)
        if (
            c.items is not None
            and c.size >= GROWTH_HINT_MIN_BYTES
            and n_changed >= GROWTH_HINT_MIN_STEPS
            and n_grew >= GROWTH_HINT_SHARE * n_changed
        ):
            hints.append(
                f"channel {c.channel!r} grew {n_grew} of the {n_changed} times it changed "
                f"({c.items} items, {c.size} bytes now, {c.stored} bytes stored): cap it "
                "with Annotated[list, langgraph_hybrid_saver.reducers.rolling_window(n)] "
                "or summarize it"
            )
    return SizeReport(
        latest.thread_id, latest.checkpoint_ns, latest.checkpoint_id, total, channels, steps, hints
    )


async def size_report(
    target: Target,
    thread_id: str,
    ns: str = "",
    *,
    limit: int | None = None,
    serde: SerializerProtocol | None = None,
) -> SizeReport:
    return size_report_of(await require_history(target, thread_id, ns, limit), serde)
