"""What a `put` and a `put_writes` become before any I/O: rows, inline
values and typed blobs, encoded as `langgraph-checkpoint-postgres` does, so
the rows we reconcile are the rows `PostgresSaver` writes.

Nothing enters the outbox that a durable store cannot hold: a primitive value
that some store's JSON would refuse or change (a NUL, a lone surrogate, an int
past 64 bits, NaN, inf, -0.0) is a blob instead of inline, and what cannot be
stored at all (text columns and JSON documents with a NUL or a lone
surrogate, values the serializer cannot encode) is refused here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.types import _DeltaSnapshot

from langgraph_hybrid_saver.core import (
    _INT64_MAX,
    _INT64_MIN,
    _SURROGATE,
    BlobRow,
    CheckpointRow,
    WriteRow,
    blob_field,
    parse_config,
    text_problem,
)
from langgraph_hybrid_saver.errors import SerializationError


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
