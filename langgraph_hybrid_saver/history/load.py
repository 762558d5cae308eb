"""Loading a thread's checkpoints from both tiers for the read-only views:
each checkpoint with where it was found. Nothing is copied back into Redis.

The order and the hot copy's completion are the saver's rules
(`core.merge_newest_first`, `tiering.read_hot_whole`). The writes are not:
the saver takes a hot copy whole (what LangGraph resumes from), while an
audit view shows the union of both tiers' writes (`merge_copies`), since it
must not hide a write that one tier holds and the other lacks (a hot copy
that lost its writes, a write not reconciled yet).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from langgraph_hybrid_saver.core import (
    ListQuery,
    StoredCheckpoint,
    WriteRow,
    merge_newest_first,
)
from langgraph_hybrid_saver.errors import NotFoundError
from langgraph_hybrid_saver.ops import Target
from langgraph_hybrid_saver.tiering import read_hot_whole

Tier = Literal["hot", "durable", "both"]


class Report:
    """A view's result as JSON-ready data (`asdict` of the dataclass)."""

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = asdict(self)  # type: ignore[call-overload]
        return data


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


def merge_copies(
    hot: StoredCheckpoint | None, hot_complete: bool, durable: StoredCheckpoint | None
) -> Loaded:
    """A checkpoint from its copies in both tiers, for an audit view: the hot
    copy when complete, else the durable one; the writes of both (the hot one
    wins for the same task and index)."""
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
    it all. A record gone since its header was listed leaves the header with
    the hot writes."""
    read, complete = await read_hot_whole(
        target.hot, target.backend, thread_id, ns, header.checkpoint_id
    )
    if read.stored is None:
        header.writes = read.writes
        return header, False
    return read.stored, complete


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
    newest = merge_newest_first(
        [stored for stored, _ in hot.values()], list(durable.values()), limit
    )
    out = []
    for s in newest:
        stored, complete = hot.get(s.checkpoint_id, (None, False))
        out.append(merge_copies(stored, complete, durable.get(s.checkpoint_id)))
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
    return merge_copies(hot, complete, durable)


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
    """As `load_history`; NotFoundError (naming the namespaces Redis has)
    when the namespace has no checkpoint."""
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
