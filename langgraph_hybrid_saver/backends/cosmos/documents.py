"""The documents of a thread in its Cosmos DB partition (layout: the
package docstring): ids, payload packing into chunks, and decoding back
into a `StoredCheckpoint` (or the `ChainRow` a prune plans from)."""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from langgraph_hybrid_saver.backends._prune import ChainRow, root_of
from langgraph_hybrid_saver.core import (
    StoredCheckpoint,
    WriteRow,
    pre_v4,
)
from langgraph_hybrid_saver.errors import CorruptDataError
from langgraph_hybrid_saver.outbox.ops import PutOp

# --- container and partition settings -----------------------------------------

DEFAULT_CONTAINER = "checkpoints"
PARTITION_KEY_PATH = "/thread_id"
LAYOUT_VERSION = 1  # field `v` of every document
WATERMARK_ID = "_watermark"
# Payload and list fields are never filtered on: not indexing them saves RU.
INDEXING_POLICY: dict[str, Any] = {
    "indexingMode": "consistent",
    "includedPaths": [{"path": "/*"}],
    "excludedPaths": [
        {"path": "/data/?"},
        {"path": "/refs/*"},
        {"path": '/"_etag"/?'},
    ],
}

# --- sizes (Cosmos: 2 MB per item; 100 operations and 2 MB per batch) ----------

MAX_ITEM_BYTES = 2_000_000  # just under 2 MiB, the item limit
BATCH_MAX_OPS = 100
BATCH_MAX_BYTES = 1_800_000  # estimated JSON size of a batch's documents
CHUNK_BYTES = 640 * 1024  # raw bytes per chunk: ~874 KB once base64-encoded
INLINE_MAX_BYTES = CHUNK_BYTES  # a payload up to this size stays in its owner
COMPRESS_MIN_BYTES = 1024
METADATA_COPY_MAX_BYTES = 64 * 1024  # larger metadata is filtered client-side only
QUERY_IDS_PER_CALL = 256  # ids per ARRAY_CONTAINS parameter
MAX_CONFLICT_RETRIES = 8  # another writer of the same thread won this many times
THREAD_CONCURRENCY = 8  # threads applied/read at once
LIST_PAGE = 50  # checkpoints hydrated (blobs, writes) per round by `list`

Doc = dict[str, Any]


def _hash(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:40]


def checkpoint_doc_id(checkpoint_ns: str, checkpoint_id: str) -> str:
    return "c." + _hash(checkpoint_ns, checkpoint_id)


def blob_doc_id(checkpoint_ns: str, channel: str, version: str) -> str:
    return "b." + _hash(checkpoint_ns, channel, version)


def write_doc_id(checkpoint_ns: str, checkpoint_id: str, task_id: str, idx: int) -> str:
    return "w." + _hash(checkpoint_ns, checkpoint_id, task_id, str(idx))


def pack(owner: Doc, data: bytes | None) -> list[Doc]:
    """Put a payload into `owner` (inline) or into chunk documents (returned)."""
    if data is None:
        owner["data"] = None
        return []
    compressed = False
    if len(data) >= COMPRESS_MIN_BYTES:
        smaller = zlib.compress(data)
        if len(smaller) < len(data):
            data, compressed = smaller, True
    owner["z"] = compressed
    if len(data) <= INLINE_MAX_BYTES:
        owner["data"] = base64.b64encode(data).decode()
        return []
    digest = hashlib.sha256(data).hexdigest()[:16]
    pieces = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
    owner["digest"], owner["chunks"] = digest, len(pieces)
    return [
        {
            "id": f"{owner['id']}.{digest}.{n}",
            "thread_id": owner["thread_id"],
            "kind": "chunk",
            "v": LAYOUT_VERSION,
            "owner": owner["id"],
            "data": base64.b64encode(piece).decode(),
        }
        for n, piece in enumerate(pieces)
    ]


def chunk_ids(owner: Doc) -> list[str]:
    """Ids of the chunk documents holding the owner's payload (none if inline)."""
    return [f"{owner['id']}.{owner['digest']}.{n}" for n in range(owner.get("chunks") or 0)]


def unpack(owner: Doc, chunks: Mapping[str, Doc]) -> bytes | None:
    """The payload of a document, reassembled from `chunks` if it was split."""
    if owner.get("chunks"):
        try:
            data = b"".join(base64.b64decode(chunks[i]["data"]) for i in chunk_ids(owner))
        except KeyError as e:
            raise CorruptDataError(
                f"Cosmos document {owner['id']!r} of thread {owner['thread_id']!r} "
                f"is missing its chunk {e.args[0]!r}"
            ) from None
    elif owner.get("data") is None:
        return None
    else:
        data = base64.b64decode(owner["data"])
    return zlib.decompress(data) if owner.get("z") else data


def make_doc(doc_id: str, thread_id: str, kind: str, **fields: Any) -> Doc:
    return {"id": doc_id, "thread_id": thread_id, "kind": kind, "v": LAYOUT_VERSION, **fields}


def put_docs(op: PutOp) -> list[Doc]:
    """Documents of one put: blobs, the checkpoint, and their chunks."""
    r = op.row
    docs: list[Doc] = []
    for b in op.blobs:
        blob = make_doc(
            blob_doc_id(r.checkpoint_ns, b.channel, b.version),
            r.thread_id,
            "blob",
            checkpoint_ns=r.checkpoint_ns,
            channel=b.channel,
            version=b.version,
            type=b.type,
        )
        docs += [blob, *pack(blob, b.blob)]
    checkpoint = json.loads(r.checkpoint)
    metadata = json.loads(r.metadata)
    run_id = metadata.get("run_id")
    doc = make_doc(
        checkpoint_doc_id(r.checkpoint_ns, r.checkpoint_id),
        r.thread_id,
        "checkpoint",
        checkpoint_ns=r.checkpoint_ns,
        checkpoint_id=r.checkpoint_id,
        parent_checkpoint_id=r.parent_checkpoint_id,
        run_id=None if run_id is None else str(run_id),
        delta="counters_since_delta_snapshot" in metadata,
        seq=op.seq,
        refs=[
            blob_doc_id(r.checkpoint_ns, ch, str(v))
            for ch, v in (checkpoint.get("channel_versions") or {}).items()
        ],
    )
    if len(r.metadata) <= METADATA_COPY_MAX_BYTES:
        doc["metadata"] = metadata
    payload = f'{{"checkpoint":{r.checkpoint},"metadata":{r.metadata}}}'.encode()
    return [*docs, doc, *pack(doc, payload)]


def write_docs(thread_id: str, ns: str, cid: str, w: WriteRow) -> list[Doc]:
    doc = make_doc(
        write_doc_id(ns, cid, w.task_id, w.idx),
        thread_id,
        "write",
        cp=checkpoint_doc_id(ns, cid),
        checkpoint_ns=ns,
        checkpoint_id=cid,
        task_id=w.task_id,
        idx=w.idx,
        task_path=w.task_path,
        channel=w.channel,
        type=w.type,
    )
    return [doc, *pack(doc, w.blob)]


def stored(
    doc: Doc, blobs: Iterable[Doc], writes: Iterable[Doc], chunks: Mapping[str, Doc]
) -> StoredCheckpoint:
    """A checkpoint document with its blob and write documents, decoded."""
    try:
        payload = json.loads(unpack(doc, chunks) or b"null")
        return StoredCheckpoint(
            doc["thread_id"],
            doc["checkpoint_ns"],
            doc["checkpoint_id"],
            doc["parent_checkpoint_id"],
            payload["checkpoint"],
            payload["metadata"],
            {b["channel"]: (b["type"], unpack(b, chunks)) for b in blobs},
            [
                WriteRow(
                    w["task_id"],
                    w["idx"],
                    w["task_path"],
                    w["channel"],
                    w["type"],
                    unpack(w, chunks) or b"",
                )
                for w in writes
            ],
        )
    except (ValueError, TypeError, KeyError, zlib.error) as e:
        raise CorruptDataError(
            f"Cosmos document {doc.get('id')!r} of thread {doc.get('thread_id')!r} (or one "
            f"of its blobs or writes) cannot be decoded: {type(e).__name__}: {e}"
        ) from e


def chain_row(
    doc: Doc, chunks: Mapping[str, Doc], value_blobs: set[str], sends: set[str]
) -> ChainRow:
    """The `ChainRow` of a checkpoint document; `value_blobs`: the ids of the
    thread's blob documents that hold a value (type not "empty"); `sends`:
    the ids of its checkpoint documents with pending writes to TASKS."""
    try:
        payload = json.loads(unpack(doc, chunks) or b"null")
        checkpoint, metadata = payload["checkpoint"], payload["metadata"]
    except (ValueError, TypeError, KeyError, zlib.error) as e:
        raise CorruptDataError(
            f"Cosmos document {doc.get('id')!r} of thread {doc.get('thread_id')!r} "
            f"cannot be decoded: {type(e).__name__}: {e}"
        ) from e
    ns = doc["checkpoint_ns"]
    versions = checkpoint.get("channel_versions") or {}
    inline = checkpoint.get("channel_values") or {}
    counters = metadata.get("counters_since_delta_snapshot")
    return ChainRow(
        doc["thread_id"],
        ns,
        doc["checkpoint_id"],
        doc["parent_checkpoint_id"],
        frozenset(counters if isinstance(counters, dict) else ()),
        frozenset(versions),
        frozenset(
            {ch for ch, v in versions.items() if blob_doc_id(ns, ch, str(v)) in value_blobs}
            | {ch for ch, v in inline.items() if v is not None}
        ),
        root_of(metadata),
        pre_v4(checkpoint),
        doc["id"] in sends,
    )
