"""Plans: the document operations one write makes to a thread, cut into
batches in dependency order (what others point to is written first and
deleted last)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from langgraph_hybrid_saver.backends.cosmos.documents import (
    BATCH_MAX_BYTES,
    BATCH_MAX_OPS,
    MAX_ITEM_BYTES,
    Doc,
)
from langgraph_hybrid_saver.errors import DurableStoreError


@dataclass(frozen=True, slots=True)
class Change:
    """One document operation of a plan: upsert `doc`, or delete (doc None)."""

    kind: str
    doc: Doc | None


# Batch order: what others point to is written first and deleted last.
_ORDER = {
    ("delete", "checkpoint"): 0,
    ("delete", "write"): 1,
    ("delete", "blob"): 1,
    ("delete", "chunk"): 2,
    ("upsert", "chunk"): 3,
    ("upsert", "blob"): 4,
    ("upsert", "write"): 4,
    ("upsert", "checkpoint"): 5,
}


def _size(doc_id: str, change: Change) -> int:
    if change.doc is None:
        return len(doc_id) + 100
    size = len(json.dumps(change.doc, separators=(",", ":"))) + 100
    if size > MAX_ITEM_BYTES:
        raise DurableStoreError(
            f"Cosmos document {doc_id!r} of thread {change.doc['thread_id']!r} would be "
            f"{size} bytes, over the 2 MB item limit; keep metadata small"
        )
    return size


def batches(plan: Mapping[str, Change]) -> list[list[tuple[str, Change]]]:
    """Split a plan into batches in dependency order, each leaving room for the
    watermark operation."""
    ordered = sorted(
        plan.items(),
        key=lambda kv: _ORDER[("upsert" if kv[1].doc is not None else "delete", kv[1].kind)],
    )
    out: list[list[tuple[str, Change]]] = []
    current: list[tuple[str, Change]] = []
    size = 0
    for doc_id, change in ordered:
        n = _size(doc_id, change)
        if current and (len(current) >= BATCH_MAX_OPS - 1 or size + n > BATCH_MAX_BYTES):
            out.append(current)
            current, size = [], 0
        current.append((doc_id, change))
        size += n
    return [*out, current]


def deletion_plan(index: Sequence[Doc], doomed: set[str]) -> dict[str, Change]:
    """Delete the `doomed` checkpoints, their writes, the blobs no remaining
    checkpoint refers to, and the chunks of everything deleted."""
    if not doomed:
        return {}
    remaining = {
        ref
        for d in index
        if d["kind"] == "checkpoint" and d["id"] not in doomed
        for ref in d.get("refs") or ()
    }
    gone = {
        d["id"]: d["kind"]
        for d in index
        if d["id"] in doomed
        or (d["kind"] == "write" and d.get("cp") in doomed)
        or (d["kind"] == "blob" and d["id"] not in remaining)
    }
    gone.update(
        {d["id"]: "chunk" for d in index if d["kind"] == "chunk" and d.get("owner") in gone}
    )
    return {doc_id: Change(kind, None) for doc_id, kind in gone.items()}
