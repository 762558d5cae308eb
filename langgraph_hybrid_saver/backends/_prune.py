"""Which checkpoints keep-latest keeps: the newest `keep` of every
namespace, as PostgresSaver's `prune` (langgraph-checkpoint-postgres 3.2)
does, and on a thread that uses a DeltaChannel the ancestors their
DeltaChannel values are rebuilt from. Pure; every store plans its prune
with it.

PostgresSaver's rules, kept here: a newest checkpoint older than format v4
reads its pending sends from its parent's writes to TASKS, so that parent
is kept when it has some. A subgraph call's namespace (its task id after a
":", unlike a `checkpointer=True` subgraph's, whose state outlives each
call) goes whole with the root checkpoint the call started from (its
newest checkpoint's `metadata["parents"][""]`) once that one is saved and
not kept: runs save in the background, so a call can be saved first.

How LangGraph reads such a value (langgraph 1.2 `pregel/_checkpoint.py`,
`BaseCheckpointSaver.get_delta_channel_history` and PostgresSaver's and
SqliteSaver's overrides of it): a channel versioned in the checkpoint whose
value the checkpoint does not store is rebuilt by walking the parent chain
from the checkpoint's parent, collecting each ancestor's pending writes to
the channel, down to and including the nearest ancestor that stores a value
for it (its seed: a `_DeltaSnapshot`, or a plain value). A checkpoint
"stores" a channel when it has an inline value other than null or a blob at
its version of the channel that is not of type "empty" (PostgresSaver's
test; the default walk and ours stop at an inline null too, earlier, so
keeping to PostgresSaver's seed serves every reader). A checkpoint that
only refers to the blob a snapshot wrote, at the same version, stores it.

The channels to walk are DeltaChannels, which the stored rows do not name
as such: they are the channels of `counters_since_delta_snapshot` in any
checkpoint of the namespace (LangGraph counts every DeltaChannel there at
every step until it snapshots). Walking every channel without a stored
value would keep far more: a consumed trigger channel keeps its version
and no value, and its last value can lie at the start of the thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

CheckpointKey = tuple[str, str, str]  # thread_id, checkpoint_ns, checkpoint_id
# A checkpoint a prune deleted (True) or changed (False: it lost its parent).
PrunedKey = tuple[str, str, str, bool]


@dataclass(frozen=True, slots=True)
class ChainRow:
    """What planning a DeltaChannel thread's prune needs of one checkpoint.

    Attributes:
        delta: The channels its metadata's `counters_since_delta_snapshot` names.
        versioned: The channels of its `channel_versions`.
        stored: The channels whose value it stores (an inline value other
            than null, or a blob at its version whose type is not "empty").
        root: Its metadata's `parents[""]`: the root graph's checkpoint a
            subgraph call started from.
        pre_v4: Its format (`checkpoint["v"]`) is older than 4.
        sends: It has pending writes to TASKS.
    """

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    delta: frozenset[str]
    versioned: frozenset[str]
    stored: frozenset[str]
    root: str | None = None
    pre_v4: bool = False
    sends: bool = False


def root_of(metadata: Any) -> str | None:
    """A checkpoint metadata's `parents[""]` (`ChainRow.root`)."""
    parents = metadata.get("parents") if isinstance(metadata, dict) else None
    root = parents.get("") if isinstance(parents, dict) else None
    return root if isinstance(root, str) else None


def kept_checkpoints(rows: Iterable[ChainRow], keep: int) -> set[CheckpointKey]:
    """The checkpoints to keep: the newest `keep` of each (thread, namespace),
    the parent a pre-v4 one reads its sends from, and, for each kept one,
    its ancestors down to the nearest one storing each DeltaChannel it does
    not store itself; minus the subgraph calls whose root checkpoint goes
    (see the module docstring). A chain that ends at a missing parent or a
    root without one keeps what it passed."""
    by_ns: dict[tuple[str, str], dict[str, ChainRow]] = {}
    for r in rows:
        by_ns.setdefault((r.thread_id, r.checkpoint_ns), {})[r.checkpoint_id] = r
    kept: set[CheckpointKey] = set()
    for (thread_id, ns), found in by_ns.items():
        delta = frozenset().union(*(r.delta for r in found.values()))
        for head in sorted(found, reverse=True)[:keep]:
            kept.add((thread_id, ns, head))
            row = found[head]
            parent = found.get(row.parent_checkpoint_id or "")
            if row.pre_v4 and parent is not None and parent.sends:
                kept.add((thread_id, ns, parent.checkpoint_id))
            need = (delta & row.versioned) - row.stored
            cursor, seen = row.parent_checkpoint_id, {head}
            # `seen`: a re-put id can make a chain loop (SqliteSaver's note)
            while need and cursor is not None and cursor in found and cursor not in seen:
                seen.add(cursor)
                kept.add((thread_id, ns, cursor))
                need -= found[cursor].stored
                cursor = found[cursor].parent_checkpoint_id
    for (thread_id, ns), found in by_ns.items():
        root = found[max(found)].root
        if (
            ":" in ns
            and root in by_ns.get((thread_id, ""), {})
            and (thread_id, "", root) not in kept
        ):
            kept -= {(thread_id, ns, cid) for cid in found}
    return kept


def doomed_checkpoints(rows: Iterable[ChainRow], keep: int) -> list[CheckpointKey]:
    """The checkpoints `kept_checkpoints` does not keep, sorted."""
    rows = list(rows)
    kept = kept_checkpoints(rows, keep)
    return sorted(
        key for r in rows if (key := (r.thread_id, r.checkpoint_ns, r.checkpoint_id)) not in kept
    )
