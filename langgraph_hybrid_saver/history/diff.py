"""What changed between two checkpoints of a thread, channel by channel."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from langgraph_hybrid_saver.core import StoredCheckpoint
from langgraph_hybrid_saver.errors import NotFoundError
from langgraph_hybrid_saver.history.load import Loaded, Report, load_one, require_history
from langgraph_hybrid_saver.history.values import EMPTY, channel_sizes, channel_value, preview
from langgraph_hybrid_saver.ops import Target


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
class CheckpointDiff(Report):
    thread_id: str
    checkpoint_ns: str
    a: str
    b: str
    changes: list[ChannelChange]
    unchanged: list[str]


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
        before, after = channel_value(serde, a, ch), channel_value(serde, b, ch)
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
