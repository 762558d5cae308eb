"""The pure core: the LangGraph contract, shared by the hot tier and every backend.

Nothing here does I/O. The rows follow `langgraph-checkpoint-postgres`:
primitive channel values stay inline in the checkpoint document, everything
else is a typed blob stored once per (channel, version); pending writes are
keyed by (task_id, `WRITES_IDX_MAP.get(channel, idx)`). Here: the rows, ids
and configs, list queries and their matching, and decoding a stored
checkpoint into a `CheckpointTuple`. Encoding a put is encode.py's; the
outbox operations are outbox/ops.py's.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from uuid import UUID

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    CheckpointTuple,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.types import TASKS

from langgraph_hybrid_saver.errors import ConfigError, CorruptDataError

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Surrogate code points: not UTF-8, so no store's text holds them (a str holds
# one only unpaired or as a pair split in two code points).
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class BlobRow:
    """One channel value at one version (`checkpoint_blobs`)."""

    channel: str
    version: str
    type: str
    blob: bytes | None


@dataclass(frozen=True, slots=True)
class WriteRow:
    """One pending write (`checkpoint_writes`)."""

    task_id: str
    idx: int
    task_path: str
    channel: str
    type: str
    blob: bytes


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    """A checkpoint as stored: the document holds only inline channel values."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    checkpoint: str  # JSON text, the `checkpoints.checkpoint` column
    metadata: str  # JSON text, the `checkpoints.metadata` column


@dataclass(slots=True)
class StoredCheckpoint:
    """A checkpoint read back from either tier, not yet deserialized."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    checkpoint: dict[str, Any]
    metadata: dict[str, Any]
    blobs: dict[str, tuple[str, bytes | None]] = field(default_factory=dict)
    writes: list[WriteRow] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The arguments of `list`, validated once."""

    thread_id: str | None
    checkpoint_ns: str | None
    checkpoint_id: str | None
    filter: dict[str, Any] | None
    before: str | None
    limit: int | None


# --- config -------------------------------------------------------------------


def text_problem(text: str) -> str | None:
    """Why no durable store can hold `text` (a NUL, a surrogate), or None."""
    if "\x00" in text:
        return "contains a NUL character ('\\x00')"
    if not text.isascii() and _SURROGATE.search(text):
        return "contains a lone surrogate (not valid UTF-8)"
    return None


def check_id(value: str, what: str) -> str:
    """An id or name stored in a text column (and part of Redis keys, where
    NUL separates fields): refused with a ConfigError if it cannot be stored."""
    problem = text_problem(value)
    if problem is not None:
        raise ConfigError(
            f"{what} {value!r} {problem}, which no durable store holds in a text "
            "column: use an id of printable text, e.g. a UUID"
        )
    return value


def normalize_id(value: Any, what: str) -> str:
    """Accept str, int and UUID ids (as LangGraph users pass them); reject the rest."""
    if isinstance(value, str):
        if value:
            return check_id(value, what)
    elif isinstance(value, (int, UUID)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(
        f"{what} must be a non-empty str (or int/UUID), got {value!r}: pass "
        f"config={{'configurable': {{'{what}': 'my-thread'}}}}"
    )


def parse_config(config: RunnableConfig | None) -> tuple[str, str, str | None]:
    """(thread_id, checkpoint_ns, checkpoint_id) of a config, validated."""
    configurable = (config or {}).get("configurable")
    if not isinstance(configurable, Mapping) or "thread_id" not in configurable:
        raise ConfigError(
            "config['configurable']['thread_id'] is missing: pass "
            "config={'configurable': {'thread_id': 'my-thread'}} to invoke/stream"
        )
    thread_id = normalize_id(configurable["thread_id"], "thread_id")
    ns = configurable.get("checkpoint_ns") or ""
    if not isinstance(ns, str):
        raise ConfigError(f"checkpoint_ns must be a str, got {ns!r}")
    cid = configurable.get("checkpoint_id") or None
    if cid is not None and not isinstance(cid, str):
        raise ConfigError(f"checkpoint_id must be a str, got {cid!r}")
    check_id(ns, "checkpoint_ns")
    if cid is not None:
        check_id(cid, "checkpoint_id")
    return thread_id, ns, cid


def list_query(
    config: RunnableConfig | None,
    filter: dict[str, Any] | None,
    before: RunnableConfig | None,
    limit: int | None,
) -> ListQuery:
    if filter is not None and not isinstance(filter, dict):
        raise ConfigError(f"filter must be a dict of metadata values, got {filter!r}")
    if filter:
        try:
            json.dumps(filter)
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"filter {filter!r} holds a value that is not JSON (str, int, "
                f"float, bool, None, list, dict): {e}"
            ) from e
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
        raise ConfigError(f"limit must be an int or None, got {limit!r}")
    thread_id = ns = cid = None
    if config is not None and (config.get("configurable") or {}).get("thread_id"):
        thread_id, ns, cid = parse_config(config)
        ns = config["configurable"].get("checkpoint_ns")  # None lists every ns
    before_id = None
    if before is not None:
        # {"configurable": {"checkpoint_id": ...}}, or the bare form the Agent
        # Server's history API passes through.
        before_id = (before.get("configurable") or {}).get("checkpoint_id") or cast(
            dict[str, Any], before
        ).get("checkpoint_id")
        if not isinstance(before_id, str) or not before_id:
            raise ConfigError(
                f"before={before!r} names no checkpoint: pass "
                "before={'configurable': {'checkpoint_id': '<id>'}}"
            )
    return ListQuery(thread_id, ns, cid, filter or None, before_id, limit)


def next_config(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }


def next_version(current: str | int | float | None) -> str:
    """Channel versions in the format of `PostgresSaver.get_next_version`."""
    if current is None:
        current_v = 0
    elif isinstance(current, (int, float)):
        current_v = int(current)
    else:
        current_v = int(current.split(".")[0])
    return f"{current_v + 1:032}.{random.random():016}"


def blob_field(channel: str, version: str) -> str:
    """Identity of one stored channel value; NUL never occurs in either part."""
    return f"{channel}\x00{version}"


# --- decode -------------------------------------------------------------------


def sort_writes(writes: Sequence[WriteRow]) -> list[WriteRow]:
    return sorted(writes, key=lambda w: writes_sort_key(w.task_path, w.task_id, w.idx))


def _undecodable(what: str, at: StoredCheckpoint, e: Exception) -> CorruptDataError:
    return CorruptDataError(
        f"{what} of checkpoint {at.checkpoint_id!r} (thread {at.thread_id!r}, "
        f"namespace {at.checkpoint_ns!r}) cannot be decoded or decrypted "
        f"({type(e).__name__}: {e}); with EncryptedSerializer, is the key right? A "
        "corrupt copy in Redis can be deleted: the durable copy is read through"
    )


def pre_v4(checkpoint: Any) -> bool:
    """Whether a checkpoint's format (`v`) is older than 4: such a checkpoint
    reads its pending sends from its parent's writes to TASKS."""
    v = checkpoint.get("v") if isinstance(checkpoint, dict) else None
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v < 4


def to_tuple(
    serde: SerializerProtocol, stored: StoredCheckpoint, sends: Sequence[WriteRow] = ()
) -> CheckpointTuple:
    """Deserialize a stored checkpoint into what LangGraph expects. `sends`:
    the parent's writes to TASKS of a checkpoint older than format v4, which
    become its TASKS value at its highest channel version, as PostgresSaver
    migrates them."""
    # The hot path of every read (a local cache hit is mostly this): one
    # bound method, and an error's message is built only when one occurs.
    loads = serde.loads_typed
    values = dict(stored.checkpoint.get("channel_values") or {})
    for channel, typed in stored.blobs.items():
        if typed[0] != "empty":
            try:
                values[channel] = loads(typed)  # type: ignore[arg-type]
            except Exception as e:
                raise _undecodable(f"channel {channel!r}", stored, e) from e
    checkpoint: Any = {**stored.checkpoint, "channel_values": values}
    if sends:
        tasks = []
        for w in sort_writes(sends):
            try:
                tasks.append(loads((w.type, w.blob)))
            except Exception as e:
                raise _undecodable(f"pending send of task {w.task_id!r}", stored, e) from e
        values[TASKS] = tasks
        versions = dict(stored.checkpoint.get("channel_versions") or {})
        versions[TASKS] = max(versions.values()) if versions else next_version(None)
        checkpoint["channel_versions"] = versions
    pending = []
    for w in sort_writes(stored.writes):
        try:
            pending.append((w.task_id, w.channel, loads((w.type, w.blob))))
        except Exception as e:
            raise _undecodable(f"write to {w.channel!r} by task {w.task_id!r}", stored, e) from e
    parent = (
        next_config(stored.thread_id, stored.checkpoint_ns, stored.parent_checkpoint_id)
        if stored.parent_checkpoint_id
        else None
    )
    return CheckpointTuple(
        config=next_config(stored.thread_id, stored.checkpoint_ns, stored.checkpoint_id),
        checkpoint=checkpoint,
        metadata=stored.metadata,  # type: ignore[arg-type]
        parent_config=parent,
        pending_writes=pending,
    )


# --- list ---------------------------------------------------------------------


def json_contains(doc: Any, pattern: Any) -> bool:
    """PostgreSQL `jsonb @>` semantics, the filter every official saver applies."""
    if isinstance(pattern, dict):
        return isinstance(doc, dict) and all(
            k in doc and json_contains(doc[k], v) for k, v in pattern.items()
        )
    if isinstance(pattern, list):
        return isinstance(doc, list) and all(any(json_contains(d, p) for d in doc) for p in pattern)
    if isinstance(pattern, bool) or isinstance(doc, bool):
        return type(pattern) is type(doc) and pattern == doc
    return bool(doc == pattern)


def list_conditions(query: ListQuery) -> list[tuple[str, str, Any]]:
    """The column conditions of a list query as (column, operator, value),
    for the durable stores to phrase in their query language."""
    conditions = [
        (column, "=", value)
        for column, value in (
            ("thread_id", query.thread_id),
            ("checkpoint_ns", query.checkpoint_ns),
            ("checkpoint_id", query.checkpoint_id),
        )
        if value is not None
    ]
    if query.before is not None:
        conditions.append(("checkpoint_id", "<", query.before))
    return conditions


def matches(query: ListQuery, stored: StoredCheckpoint) -> bool:
    """Whether a hot checkpoint passes the query (thread and ns already chosen)."""
    if query.checkpoint_id is not None and stored.checkpoint_id != query.checkpoint_id:
        return False
    if query.before is not None and not stored.checkpoint_id < query.before:
        return False
    return query.filter is None or json_contains(stored.metadata, query.filter)


def merge_newest_first(
    hot: Sequence[StoredCheckpoint],
    durable: Sequence[StoredCheckpoint],
    limit: int | None,
) -> list[StoredCheckpoint]:
    """Union of both tiers without duplicates, newest first, hot copy preferred.

    The hot copy wins because it may carry pending writes not yet reconciled.
    """
    seen: dict[tuple[str, str, str], StoredCheckpoint] = {}
    for s in (*hot, *durable):
        seen.setdefault((s.thread_id, s.checkpoint_ns, s.checkpoint_id), s)
    merged = sorted(seen.values(), key=lambda s: s.checkpoint_id, reverse=True)
    return merged if limit is None else merged[: max(limit, 0)]
