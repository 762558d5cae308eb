"""Azure Cosmos DB (NoSQL API) durable store, on the async `azure-cosmos` SDK.

Layout: one container whose partition key is `/thread_id`, so every document
of a thread lives in the thread's logical partition. That makes each thread
writable with transactional batches and readable with point reads and
single-partition queries (`list` without a thread is the one cross-partition
query). Document kinds (field `kind`; ids hash the natural key so any
namespace or id string is a valid Cosmos id):

- `checkpoint` (id `c.<hash(ns, checkpoint_id)>`): the ids, `run_id` and
  `delta` for deletes and prunes, `refs` (ids of the blob documents its
  `channel_versions` point to), a copy of `metadata` for filtering, and the
  payload `{"checkpoint": ..., "metadata": ...}` (the exact JSON texts).
- `blob` (id `b.<hash(ns, channel, version)>`): one channel value.
- `write` (id `w.<hash(ns, checkpoint_id, task_id, idx)>`): one pending write;
  `cp` is the id of its checkpoint document.
- `chunk` (id `<owner id>.<digest>.<n>`): a piece of a payload too large to
  stay in its owner (documents are limited to 2 MB).
- `watermark` (id `_watermark`): the thread's last applied outbox `seq`, and
  `rev`, bumped by every batch.

Payloads are bytes: zlib-compressed when that helps, base64 in `data`, or,
past `INLINE_MAX_BYTES`, split into chunk documents named after the digest
of the payload (so rewriting an owner never mixes old and new pieces).

Concurrency: Cosmos has no multi-batch transaction, so every batch that
changes a thread carries a conditional replace (`if-match` ETag) of the
watermark document, or its create when the thread has none yet. A second
writer of the same thread fails its next batch with 412 (409 on the create),
atomically, and starts over from a fresh watermark. A reconcile batch that
starts with a thread's root checkpoint skips the watermark read and creates
it: the same fence catches a wrong guess. Within one
write, batches go out in dependency order (chunks, then blobs and writes,
then checkpoints; deletes the other way round) and the watermark `seq` moves
only in the last batch, so a crash part-way leaves nothing a reader can
trip on and the replay rewrites the same documents.

Request charges (RU) of every HTTP response, including throttled ones, are
added up in `CosmosBackend.stats`. Throttling (429) is retried by the SDK,
which waits the `x-ms-retry-after-ms` the server asks for (`THROTTLE_RETRIES`
attempts, `THROTTLE_MAX_WAIT_S` seconds in all; no fixed interval is set, so
the server's value is what counts). `from_url` configures that; a client you
pass in keeps its own retry settings.

Timeouts: the SDK's defaults apply (its connection and read timeouts), and
the SDK retries connection failures, reads more than writes, so against a
hung server (connections accepted, never answered) a read or a batch fails
only after several of those timeouts. The URL options `connection_timeout`
and `read_timeout` (seconds, passed to the SDK as they are) shorten that,
e.g. for a reconciler that should report a hung server sooner
(tests/test_cosmos_outage.py sets both).
"""

import aiohttp  # noqa: F401  (azure-core's async transport; fail early if missing)

from langgraph_hybrid_saver.backends.cosmos.backend import CosmosBackend
from langgraph_hybrid_saver.backends.cosmos.documents import (
    BATCH_MAX_BYTES,
    BATCH_MAX_OPS,
    CHUNK_BYTES,
    INLINE_MAX_BYTES,
    MAX_ITEM_BYTES,
    WATERMARK_ID,
    chunk_ids,
    pack,
    unpack,
)
from langgraph_hybrid_saver.backends.cosmos.plan import Change, batches

__all__ = [
    "BATCH_MAX_BYTES",
    "BATCH_MAX_OPS",
    "CHUNK_BYTES",
    "INLINE_MAX_BYTES",
    "MAX_ITEM_BYTES",
    "WATERMARK_ID",
    "Change",
    "CosmosBackend",
    "batches",
    "chunk_ids",
    "pack",
    "unpack",
]
