"""The pure core: the LangGraph contract, shared by the hot tier and every backend.

Nothing here does I/O. Encoding follows `langgraph-checkpoint-postgres` so the
rows we reconcile are the rows `PostgresSaver` writes: primitive channel values
stay inline in the checkpoint document, everything else is a typed blob stored
once per (channel, version); pending writes are keyed by
(task_id, `WRITES_IDX_MAP.get(channel, idx)`).

Nothing enters the outbox that a durable store cannot hold: a primitive value
that some store's JSON would refuse or change (a NUL, a lone surrogate, an int
past 64 bits, NaN, inf, -0.0) is a blob instead of inline, and what cannot be
stored at all (text columns and JSON documents with a NUL or a lone
surrogate, values the serializer cannot encode) is refused before any I/O.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from uuid import UUID

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.types import _DeltaSnapshot

from langgraph_hybrid_saver.errors import ConfigError, CorruptDataError, SerializationError

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


@dataclass(frozen=True, slots=True)
class PutOp:
    """Outbox entry of one `put`: the checkpoint and its new blobs."""

    seq: str
    row: CheckpointRow
    blobs: tuple[BlobRow, ...]

    @property
    def thread_id(self) -> str:
        return self.row.thread_id


@dataclass(frozen=True, slots=True)
class WritesOp:
    """Outbox entry of one `put_writes` call."""

    seq: str
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    upsert: bool  # True when every write is a special channel (WRITES_IDX_MAP)
    writes: tuple[WriteRow, ...]

    def params(self) -> list[tuple[Any, ...]]:
        """Rows in the column order of `checkpoint_writes`/`writes` inserts:
        thread_id, ns, checkpoint_id, task_id, task_path, idx, channel, type, blob."""
        return [
            (
                self.thread_id,
                self.checkpoint_ns,
                self.checkpoint_id,
                w.task_id,
                w.task_path,
                w.idx,
                w.channel,
                w.type,
                w.blob,
            )
            for w in self.writes
        ]


@dataclass(frozen=True, slots=True)
class DeleteThreadOp:
    """Outbox entry of `delete_thread`: a fence for everything queued before it."""

    seq: str
    thread_id: str


Op = PutOp | WritesOp | DeleteThreadOp


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


# --- encode -------------------------------------------------------------------


def storable_inline(value: Any) -> bool:
    """Whether a channel value may stay inline in the checkpoint JSON document.

    Only values that every durable store's JSON holds and gives back unchanged:
    None; bool; str without NUL or surrogates (PostgreSQL jsonb holds neither);
    int in the signed 64-bit range (the SQLite layout packs inline values with
    msgpack); finite float other than -0.0 (jsonb has no NaN or inf and reads
    -0 back as 0) below 1e16 in magnitude (jsonb gives 1e+16 back as the
    integer 10000000000000000). Exact types only: a subclass (an IntEnum, a
    str Enum, numpy.float64) would come back as its base type. Any other
    value is stored as a typed blob.
    """
    kind = type(value)
    if value is None or kind is bool:
        return True
    if kind is str:
        return text_problem(value) is None
    if kind is int:
        return bool(_INT64_MIN <= value <= _INT64_MAX)
    if kind is float:
        return (
            math.isfinite(value)
            and abs(value) < 1e16
            and not (value == 0.0 and math.copysign(1.0, value) < 0)
        )
    return False


def _find_unstorable(value: Any, path: str) -> tuple[str, str] | None:
    """(where, problem) of the first str or dict key in `value` that no store's
    JSON holds, or None; `where` is a key path such as `['a'][0]`."""
    if isinstance(value, str):
        problem = text_problem(value)
        return None if problem is None else (f"the value at {path or '[]'}", problem)
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}[{key!r}]"
            problem = text_problem(key) if isinstance(key, str) else None
            if problem is not None:
                return f"the key {here}", problem
            found = _find_unstorable(item, here)
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _find_unstorable(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def _json(value: Any, what: str, fix: str) -> str:
    """JSON text of a document every store's JSON holds, or SerializationError
    naming `what`, the key path and the problem, and `fix`."""
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise SerializationError(f"{what} is not JSON-serializable ({e}); {fix}") from e
    # The text is ASCII (ensure_ascii): a NUL is written \u0000 and every
    # surrogate \udXXX (either half of a pair, as any character past U+FFFF
    # is written, or a lone one). Only then is the document walked.
    if "\\u0000" in text or "\\ud" in text:
        found = _find_unstorable(value, "")
        if found is not None:
            where, problem = found
            raise SerializationError(
                f"{what}: {where} {problem}, which no durable store holds; {fix}"
            )
    return text


def _check_name(name: str, what: str) -> None:
    """A name stored in a text column (channel, task id, task path)."""
    problem = text_problem(name) if isinstance(name, str) else None
    if problem is not None:
        raise SerializationError(
            f"{what} {problem}, which no durable store holds in a text column: "
            "name channels and tasks with printable text"
        )


def _dumps_typed(serde: SerializerProtocol, value: Any, what: str) -> tuple[str, bytes]:
    """A value as a typed blob, or SerializationError if the serializer cannot
    encode it or would not give it back unchanged."""
    try:
        type_, data = serde.dumps_typed(value)
    except Exception as e:
        raise SerializationError(
            f"{what}: the value ({type(value).__name__}) cannot be stored, the "
            f"serializer cannot encode it ({type(e).__name__}: {e}); keep such values "
            "out of the graph state or encode them first (e.g. an int past 64 bits "
            "as str, binary data as base64)"
        ) from e
    if isinstance(value, str) and not value.isascii() and _SURROGATE.search(value):
        # JsonPlusSerializer writes a lone surrogate as "?" instead of failing.
        try:
            same = serde.loads_typed((type_, data)) == value
        except Exception:
            same = False
        if not same:
            raise SerializationError(
                f"{what}: the str value contains a lone surrogate (not valid "
                "UTF-8), which the serializer does not store unchanged; keep such "
                "values out of the graph state or clean them first (e.g. "
                "text.encode('utf-8', 'replace').decode())"
            )
    return type_, data


_METADATA_FIX = (
    "keep metadata values to str, int, float (finite), bool, None, lists and "
    "dicts, with no NUL characters or lone surrogates in keys or strings"
)
_DOCUMENT_FIX = (
    "channel names, node names and channel versions must be str (or int, "
    "finite float) with no NUL characters or lone surrogates"
)


def encode_put(
    serde: SerializerProtocol,
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    new_versions: ChannelVersions,
) -> tuple[CheckpointRow, list[str], list[BlobRow]]:
    """Split a checkpoint into its row, the blob fields it reads, and new blobs.

    Returns the row, `blob_refs` (`blob_field` of every channel whose value is
    a blob, at this checkpoint's version) and the blobs to store now (only
    channels in `new_versions`: an unchanged value is stored once). Raises
    SerializationError, before anything is stored, for what no durable store
    holds (see `storable_inline`, `_dumps_typed`, `_json`).
    """
    thread_id, ns, parent_id = parse_config(config)
    cid = checkpoint["id"]
    where = f"checkpoint {cid!r} of thread {thread_id!r}"
    _check_name(cid, f"the id of {where}")
    # Values every store's JSON holds go inline, as PostgresSaver stores
    # primitives, except when the serializer encrypts: then every value but
    # None is a blob, so no plaintext reaches Redis or the durable store.
    encrypted = isinstance(serde, EncryptedSerializer)
    doc = cast(dict[str, Any], dict(checkpoint))
    inline: dict[str, Any] = {}
    refs: list[str] = []
    blobs: list[BlobRow] = []
    versions = checkpoint["channel_versions"]
    for channel, value in checkpoint["channel_values"].items():
        _check_name(channel, f"channel {channel!r} of {where}")
        if isinstance(value, _DeltaSnapshot):
            inline[channel] = True  # marker, as PostgresSaver writes it
        elif value is None or (not encrypted and storable_inline(value)):
            inline[channel] = value
            continue
        if channel not in versions:
            raise SerializationError(
                f"channel {channel!r} of {where} has a value but no entry in "
                "checkpoint['channel_versions']; version every channel you store"
            )
        refs.append(blob_field(channel, str(versions[channel])))
        if channel in new_versions:
            type_, data = _dumps_typed(serde, value, f"channel {channel!r} of {where}")
            blobs.append(BlobRow(channel, str(new_versions[channel]), type_, data))
    doc["channel_values"] = inline
    row = CheckpointRow(
        thread_id=thread_id,
        checkpoint_ns=ns,
        checkpoint_id=cid,
        parent_checkpoint_id=parent_id,
        checkpoint=_json(doc, f"the document of {where}", _DOCUMENT_FIX),
        metadata=_json(
            get_serializable_checkpoint_metadata(config, metadata),
            f"metadata of {where}",
            _METADATA_FIX,
        ),
    )
    return row, refs, blobs


def encode_writes(
    serde: SerializerProtocol,
    writes: Sequence[tuple[str, Any]],
    task_id: str,
    task_path: str,
    *,
    thread_id: str = "",
) -> tuple[list[WriteRow], bool]:
    """Rows of a `put_writes` call and whether they overwrite (all special).

    `thread_id` only makes error messages name the thread. Raises
    SerializationError, before anything is stored, for a task id, task path or
    channel that no text column holds and for a value that cannot be stored.
    """
    of = f" of thread {thread_id!r}" if thread_id else ""
    _check_name(task_id, f"task id {task_id!r}{of}")
    _check_name(task_path, f"task path {task_path!r} of task {task_id!r}{of}")
    rows = []
    for idx, (channel, value) in enumerate(writes):
        what = f"write {idx} to channel {channel!r} by task {task_id!r}{of}"
        _check_name(channel, what + ": the channel")
        type_, data = _dumps_typed(serde, value, what)
        rows.append(
            WriteRow(task_id, WRITES_IDX_MAP.get(channel, idx), task_path, channel, type_, data)
        )
    return rows, all(w[0] in WRITES_IDX_MAP for w in writes)


def blob_field(channel: str, version: str) -> str:
    """Identity of one stored channel value; NUL never occurs in either part."""
    return f"{channel}\x00{version}"


# --- decode -------------------------------------------------------------------


def sort_writes(writes: Sequence[WriteRow]) -> list[WriteRow]:
    return sorted(writes, key=lambda w: writes_sort_key(w.task_path, w.task_id, w.idx))


def _loads_typed(
    serde: SerializerProtocol, type_: str, blob: bytes | None, what: str, at: StoredCheckpoint
) -> Any:
    try:
        return serde.loads_typed((type_, cast(bytes, blob)))
    except Exception as e:
        raise CorruptDataError(
            f"{what} of checkpoint {at.checkpoint_id!r} (thread {at.thread_id!r}, "
            f"namespace {at.checkpoint_ns!r}) cannot be decoded or decrypted "
            f"({type(e).__name__}: {e}); with EncryptedSerializer, is the key right? A "
            "corrupt copy in Redis can be deleted: the durable copy is read through"
        ) from e


def to_tuple(serde: SerializerProtocol, stored: StoredCheckpoint) -> CheckpointTuple:
    """Deserialize a stored checkpoint into what LangGraph expects."""
    values = dict(stored.checkpoint.get("channel_values") or {})
    for channel, (type_, blob) in stored.blobs.items():
        if type_ != "empty":
            values[channel] = _loads_typed(serde, type_, blob, f"channel {channel!r}", stored)
    checkpoint = cast(Checkpoint, {**stored.checkpoint, "channel_values": values})
    parent = (
        next_config(stored.thread_id, stored.checkpoint_ns, stored.parent_checkpoint_id)
        if stored.parent_checkpoint_id
        else None
    )
    return CheckpointTuple(
        config=next_config(stored.thread_id, stored.checkpoint_ns, stored.checkpoint_id),
        checkpoint=checkpoint,
        metadata=cast(CheckpointMetadata, stored.metadata),
        parent_config=parent,
        pending_writes=[
            (
                w.task_id,
                w.channel,
                _loads_typed(
                    serde, w.type, w.blob, f"write to {w.channel!r} by task {w.task_id!r}", stored
                ),
            )
            for w in sort_writes(stored.writes)
        ],
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


# --- outbox order -------------------------------------------------------------


def apply_order(
    ops: Sequence[Op], marks: dict[str, str]
) -> list[tuple[list[Op], DeleteThreadOp | None]]:
    """The ops past their thread's watermark in `marks` (advanced in place),
    as runs of puts and writes, each run followed by the delete that ends it
    (None after the last run): a delete must land after what was queued
    before it, and a run can be written one statement per table."""
    parts: list[tuple[list[Op], DeleteThreadOp | None]] = []
    run: list[Op] = []
    for op in ops:
        if op.seq <= marks[op.thread_id]:
            continue
        marks[op.thread_id] = op.seq
        if isinstance(op, DeleteThreadOp):
            parts.append((run, op))
            run = []
        else:
            run.append(op)
    parts.append((run, None))
    return parts


def seq_key(stream_id: str) -> str:
    """A Redis stream id ("ms-seq") as a fixed-width string that sorts in order."""
    ms, _, n = stream_id.partition("-")
    return f"{int(ms):016d}-{int(n or 0):010d}"
