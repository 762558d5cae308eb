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

Timeouts: the SDK's defaults apply (5 s to connect, 65 s without a byte from
the server), and the SDK retries connection failures, reads more than writes:
against a hung server (the test stand-in under SIGSTOP: connections accepted
by the kernel, never answered) one point read took 88 s and one batch 22 s to
fail. The URL options `connection_timeout` and `read_timeout` (seconds, passed
to the SDK as they are) shorten that, e.g. for a reconciler that should report
a hung server sooner (tests/test_cosmos_outage.py uses 1 and 1: 6 to 10 s).
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextvars
import functools
import hashlib
import inspect
import json
import math
import os
import zlib
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qs, urlsplit

import aiohttp  # noqa: F401  (azure-core's async transport; fail early if missing)
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError
from azure.core.pipeline import PipelineResponse
from azure.cosmos import PartitionKey, exceptions
from azure.cosmos.aio import ContainerProxy, CosmosClient

from langgraph_hybrid_saver.backends import redact
from langgraph_hybrid_saver.backends._apply import plan_apply, refuse_delta_threads
from langgraph_hybrid_saver.core import (
    ListQuery,
    Op,
    PutOp,
    StoredCheckpoint,
    WriteRow,
    WritesOp,
    json_contains,
    list_conditions,
)
from langgraph_hybrid_saver.errors import (
    ConfigError,
    CorruptDataError,
    DurableStoreError,
    ServerUnreachableError,
)

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

# --- client settings ------------------------------------------------------------

THROTTLE_RETRIES = 9  # 429 retries per request (the SDK default, made explicit)
THROTTLE_MAX_WAIT_S = 30  # cumulative wait across them
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
TIMEOUT_OPTIONS = ("connection_timeout", "read_timeout")  # seconds, as the SDK's kwargs
URL_OPTIONS = ("database", "container", "verify", *TIMEOUT_OPTIONS)

# --- queries (parameters: @name) -------------------------------------------------

LATEST_SQL = (
    "SELECT TOP 1 * FROM c WHERE c.kind = 'checkpoint' AND c.checkpoint_ns = @ns "
    "ORDER BY c.checkpoint_id DESC"
)
BY_IDS_SQL = "SELECT * FROM c WHERE ARRAY_CONTAINS(@ids, c.id)"
WRITES_OF_SQL = "SELECT * FROM c WHERE c.kind = 'write' AND ARRAY_CONTAINS(@ids, c.cp)"
WRITE_IDS_OF_SQL = "SELECT VALUE c.id FROM c WHERE c.kind = 'write' AND ARRAY_CONTAINS(@ids, c.cp)"
# Everything of a thread but payloads: enough to plan deletes.
INDEX_SQL = (
    "SELECT c.id, c.kind, c.checkpoint_ns, c.checkpoint_id, c.parent_checkpoint_id, "
    "c.run_id, c.delta, c.refs, c.cp, c.owner FROM c WHERE c.kind != 'watermark'"
)
COUNT_KIND_SQL = "SELECT VALUE COUNT(1) FROM c WHERE c.kind = @kind"
RUNS_SQL = (
    "SELECT VALUE c.thread_id FROM c "
    "WHERE c.kind = 'checkpoint' AND ARRAY_CONTAINS(@runs, c.run_id)"
)
DELTA_THREADS_SQL = (
    "SELECT VALUE c.thread_id FROM c WHERE c.kind = 'checkpoint' "
    "AND c.delta = true AND ARRAY_CONTAINS(@threads, c.thread_id)"
)

Doc = dict[str, Any]
P = ParamSpec("P")
R = TypeVar("R")

# The public method a request is made for, so `stats` can charge it.
_OPERATION: contextvars.ContextVar[str] = contextvars.ContextVar("cosmos_operation", default="")


def _metered(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Charge every request made during the call to the method's name."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        backend = args[0]
        assert isinstance(backend, CosmosBackend)
        backend._op_stats(fn.__name__)["calls"] += 1
        token = _OPERATION.set(fn.__name__)
        try:
            return await fn(*args, **kwargs)
        finally:
            _OPERATION.reset(token)

    return wrapper


# --- documents ---------------------------------------------------------------------


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


def _doc(doc_id: str, thread_id: str, kind: str, **fields: Any) -> Doc:
    return {"id": doc_id, "thread_id": thread_id, "kind": kind, "v": LAYOUT_VERSION, **fields}


def put_docs(op: PutOp) -> list[Doc]:
    """Documents of one put: blobs, the checkpoint, and their chunks."""
    r = op.row
    docs: list[Doc] = []
    for b in op.blobs:
        blob = _doc(
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
    doc = _doc(
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
    doc = _doc(
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


def _matching(
    found: Sequence[StoredCheckpoint], filter: Mapping[str, Any] | None
) -> builtins.list[StoredCheckpoint]:
    """The exact metadata filter (jsonb `@>`), on the payload's metadata."""
    return [s for s in found if not filter or json_contains(s.metadata, filter)]


def _scalar_filters(filter: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """SQL for the top-level scalar filter keys: a superset of the matches (a
    document without a metadata copy passes), refined with `json_contains`."""
    sql = ""
    params: list[dict[str, Any]] = []
    for n, (key, value) in enumerate(filter.items()):
        if value is None or isinstance(value, (str, int, float, bool)):
            sql += f" AND (NOT IS_DEFINED(c.metadata) OR c.metadata[@fk{n}] = @fv{n})"
            params += [{"name": f"@fk{n}", "value": key}, {"name": f"@fv{n}", "value": value}]
    return sql, params


class _Conflict(Exception):
    """Another writer changed the thread's watermark first."""


@dataclass(slots=True)
class _Watermark:
    seq: str
    rev: int
    etag: str | None  # None: the document does not exist yet


# --- the backend ---------------------------------------------------------------------


class CosmosBackend:
    """Durable store on Azure Cosmos DB for NoSQL (async `azure-cosmos` SDK).

    Build it with `from_url` (or `open_backend`), or pass a ready, opened
    client: `CosmosBackend(client, database="db")`, or a container whose
    partition key path is `/thread_id`: `CosmosBackend(container)`.

    Args:
        target: A `CosmosClient` (database and container are created by
            `setup`) or a `ContainerProxy` (used as it is).
        database: Database name; required with a client.
        container: Container name, with a client.
        owns_client: Open and close the client in `open`/`close` (set by
            `from_url`).
        where: host:port for messages.

    Attributes:
        stats: Request units (RU) consumed: `request_charge` and `requests`
            in total, `throttled` (429 responses, each retried by the SDK),
            and `operations` per backend method (`apply`, `get`, `list`, ...),
            each with `calls`, `requests` and `request_charge`.
    """

    def __init__(
        self,
        target: CosmosClient | ContainerProxy,
        *,
        database: str | None = None,
        container: str = DEFAULT_CONTAINER,
        owns_client: bool = False,
        where: str = "",
    ) -> None:
        if isinstance(target, ContainerProxy):
            self.client: CosmosClient | None = None
            self.container = target
        else:
            if not database:
                raise ConfigError(
                    "CosmosBackend(client) needs database='NAME' (and optionally container=)"
                )
            self.client = target
            # No I/O: reads work without `setup` on an existing container.
            self.container = target.get_database_client(database).get_container_client(container)
        self.database_name = database
        self.container_name = container
        self.owns_client = owns_client
        self.where = where or "Cosmos DB"
        self.stats: dict[str, Any] = {
            "request_charge": 0.0,
            "requests": 0,
            "throttled": 0,
            "operations": {},
        }
        self._threads = asyncio.Semaphore(THREAD_CONCURRENCY)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        credential: str | AsyncTokenCredential | None = None,
        **client_options: Any,
    ) -> CosmosBackend:
        """A backend for `cosmos+https://HOST:PORT/?database=NAME[&container=NAME]`.

        Args:
            url: The account endpoint with `cosmos+` before `https`. Options:
                `database` (required), `container` (default `checkpoints`),
                `verify` (`true`/`false`: check the server's TLS certificate;
                default false for 127.0.0.1/localhost, where the emulator and
                the test stand-in use self-signed certificates, true elsewhere),
                `connection_timeout` and `read_timeout` (seconds: the SDK's
                options of those names; default the SDK's, 5 and 65).
            credential: The account key, or an async Entra ID credential
                (`azure.identity.aio.DefaultAzureCredential()`); default: the
                key in the `COSMOS_KEY` environment variable.
            **client_options: Passed on to `azure.cosmos.aio.CosmosClient`.
        """
        parts = urlsplit(url)
        where = redact(url)
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if unknown := sorted(set(options) - set(URL_OPTIONS)):
            raise ConfigError(
                f"durable_url {where!r} has unknown option(s) {', '.join(unknown)}: "
                f"use {', '.join(URL_OPTIONS)}"
            )
        database = options.get("database")
        if not database:
            raise ConfigError(
                f"durable_url {where!r} names no database: add ?database=NAME "
                "(created by setup if missing)"
            )
        host = parts.hostname or ""
        local = host in LOCAL_HOSTS
        verify = options.get("verify", "false" if local else "true").lower()
        if verify not in ("true", "false", "1", "0"):
            raise ConfigError(f"durable_url option verify={verify!r}: use true or false")
        for name in TIMEOUT_OPTIONS:
            if (text := options.get(name)) is not None:
                try:
                    seconds = float(text)
                except ValueError:
                    seconds = math.nan
                if not 0 < seconds < math.inf:
                    raise ConfigError(
                        f"durable_url option {name}={text!r}: use a positive number of seconds"
                    )
                client_options.setdefault(name, seconds)
        key = credential if credential is not None else os.environ.get("COSMOS_KEY")
        if not key:
            raise ConfigError(
                f"no credential for Cosmos DB at {where}: set the COSMOS_KEY environment "
                "variable or pass credential= (a key or an azure.identity.aio credential)"
            )
        if not isinstance(key, str) and not inspect.iscoroutinefunction(
            getattr(key, "get_token", None)
        ):
            raise ConfigError(
                f"credential {type(key).__name__} is synchronous: pass an async one, "
                "e.g. azure.identity.aio.DefaultAzureCredential()"
            )
        netloc = f"[{host}]" if ":" in host else host
        endpoint = f"https://{netloc}" + (f":{parts.port}" if parts.port else "")
        client_options.setdefault("connection_verify", verify in ("true", "1"))
        if local:  # the emulator and stand-in advertise no reachable regional endpoints
            client_options.setdefault("enable_endpoint_discovery", False)
        client = CosmosClient(
            endpoint,
            credential=key,
            retry_throttle_total=THROTTLE_RETRIES,
            retry_throttle_backoff_max=THROTTLE_MAX_WAIT_S,
            **client_options,
        )
        return cls(
            client,
            database=database,
            container=options.get("container") or DEFAULT_CONTAINER,
            owns_client=True,
            where=where,
        )

    # --- lifecycle --------------------------------------------------------------

    @_metered
    async def open(self) -> None:
        if not self.owns_client or self.client is None:
            return
        try:
            await self.client.__aenter__()  # reads the account: the first round trip
        except exceptions.CosmosHttpResponseError as e:
            await self.client.close()
            if e.status_code in (401, 403):
                raise ConfigError(
                    f"Cosmos DB at {self.where} rejected the credential ({e.status_code}): "
                    "check COSMOS_KEY or credential="
                ) from e
            raise DurableStoreError(f"Cosmos DB at {self.where}: {e.message}") from e
        except (AzureError, OSError) as e:
            await self.client.close()
            raise ServerUnreachableError(
                f"Cosmos DB at {self.where} is unreachable ({type(e).__name__}): "
                "start it or fix durable_url"
            ) from e

    @_metered
    async def setup(self) -> None:
        """Create the database and container if missing (idempotent), or check
        that a given container is partitioned by `/thread_id`."""
        try:
            if self.client is not None:
                db = await self.client.create_database_if_not_exists(
                    self.database_name or "", raw_response_hook=self._charge
                )
                self.container = await db.create_container_if_not_exists(
                    self.container_name,
                    partition_key=PartitionKey(path=PARTITION_KEY_PATH),
                    indexing_policy=INDEXING_POLICY,
                    raw_response_hook=self._charge,
                )
            props = await self.container.read(raw_response_hook=self._charge)
        except exceptions.CosmosHttpResponseError as e:
            raise DurableStoreError(f"Cosmos DB at {self.where}: setup failed: {e.message}") from e
        paths = (props.get("partitionKey") or {}).get("paths")
        if paths != [PARTITION_KEY_PATH]:
            raise ConfigError(
                f"Cosmos container {props.get('id')!r} is partitioned by {paths}, not "
                f"[{PARTITION_KEY_PATH!r}]: use a new container"
            )

    async def close(self) -> None:
        if self.owns_client and self.client is not None:
            await self.client.close()

    # --- request charges --------------------------------------------------------

    def _op_stats(self, name: str) -> dict[str, Any]:
        ops: dict[str, dict[str, Any]] = self.stats["operations"]
        return ops.setdefault(name, {"calls": 0, "requests": 0, "request_charge": 0.0})

    def _charge(self, response: PipelineResponse[Any, Any]) -> None:
        """`raw_response_hook`: sees every HTTP response, throttled ones included."""
        headers = response.http_response.headers
        charge = float(headers.get("x-ms-request-charge") or 0)
        op = self._op_stats(_OPERATION.get() or "other")
        for counters in (self.stats, op):
            counters["request_charge"] += charge
            counters["requests"] += 1
        if response.http_response.status_code == 429:
            self.stats["throttled"] += 1

    # --- requests ---------------------------------------------------------------------

    async def _read(self, thread_id: str, doc_id: str) -> Doc | None:
        try:
            return dict(
                await self.container.read_item(
                    doc_id, partition_key=thread_id, raw_response_hook=self._charge
                )
            )
        except exceptions.CosmosResourceNotFoundError:
            return None

    async def _iter(
        self, sql: str, params: Sequence[dict[str, Any]], thread_id: str | None
    ) -> AsyncIterator[Any]:
        """Rows of a query; in one partition when a thread is given, else all."""
        kwargs: dict[str, Any] = {"parameters": list(params), "raw_response_hook": self._charge}
        if thread_id is not None:
            kwargs["partition_key"] = thread_id
        async for row in self.container.query_items(sql, **kwargs):
            yield row

    async def _query(
        self, sql: str, params: Sequence[dict[str, Any]], thread_id: str | None
    ) -> builtins.list[Any]:
        return [row async for row in self._iter(sql, params, thread_id)]

    async def _query_ids(
        self, sql: str, ids: Sequence[str], thread_id: str | None
    ) -> builtins.list[Any]:
        """`sql` with `@ids`, a few hundred ids per request."""
        out: builtins.list[Any] = []
        for i in range(0, len(ids), QUERY_IDS_PER_CALL):
            chunk = list(ids[i : i + QUERY_IDS_PER_CALL])
            out += await self._query(sql, [{"name": "@ids", "value": chunk}], thread_id)
        return out

    @_metered
    async def watermark(self, thread_id: str) -> str:
        return (await self._read_watermark(thread_id)).seq

    async def _read_watermark(self, thread_id: str) -> _Watermark:
        doc = await self._read(thread_id, WATERMARK_ID)
        if doc is None:
            return _Watermark("", 0, None)
        return _Watermark(doc["seq"], doc["rev"], doc["_etag"])

    async def _commit(
        self, thread_id: str, mark: _Watermark, plan: Mapping[str, Change], seq: str
    ) -> None:
        """Run a plan as fenced batches; the last one moves the watermark to `seq`.

        Raises:
            _Conflict: another writer moved the watermark first (nothing of the
                failed batch was applied).
        """
        parts = batches(plan)
        etag, rev = mark.etag, mark.rev
        for n, part in enumerate(parts):
            rev += 1
            watermark = _doc(
                WATERMARK_ID, thread_id, "watermark", seq=seq if n == len(parts) - 1 else mark.seq
            )
            watermark["rev"] = rev
            # The fence goes first: a batch that lost the race fails on it,
            # not on a document the winner already changed.
            ops: builtins.list[Any] = [
                ("create", (watermark,))
                if etag is None
                else ("replace", (WATERMARK_ID, watermark), {"if_match_etag": etag})
            ]
            ops += [
                ("upsert", (c.doc,)) if c.doc is not None else ("delete", (doc_id,))
                for doc_id, c in part
            ]
            try:
                result = await self.container.execute_item_batch(
                    ops, partition_key=thread_id, raw_response_hook=self._charge
                )
            except exceptions.CosmosBatchOperationError as e:
                if e.error_index == 0 and e.status_code in (404, 409, 412):
                    raise _Conflict from e
                raise DurableStoreError(
                    f"Cosmos DB at {self.where}: batch for thread {thread_id!r} failed at "
                    f"operation {e.error_index} ({e.status_code}): {e.message}"
                ) from e
            except exceptions.CosmosHttpResponseError as e:
                raise DurableStoreError(
                    f"Cosmos DB at {self.where}: batch for thread {thread_id!r} failed "
                    f"({e.status_code}): {e.message}"
                ) from e
            etag = result[0].get("eTag")

    async def _fenced(
        self,
        thread_id: str,
        plan_for: Callable[[_Watermark], Awaitable[tuple[dict[str, Change], str, int]]],
        *,
        assume_new: bool = False,
    ) -> int:
        """Plan against the current watermark and commit, starting over when
        another writer of the thread got in first. `plan_for` returns the plan,
        the new watermark seq and a count to return. With `assume_new` the
        first attempt skips reading the watermark and plans for a thread with
        nothing stored: if the thread exists after all, creating its watermark
        fails the batch whole and the next attempt reads it."""
        for attempt in range(MAX_CONFLICT_RETRIES):
            if assume_new and attempt == 0:
                mark = _Watermark("", 0, None)
            else:
                mark = await self._read_watermark(thread_id)
            plan, seq, count = await plan_for(mark)
            if not plan and seq == mark.seq:
                return count
            try:
                await self._commit(thread_id, mark, plan, seq)
            except _Conflict:
                continue
            return count
        raise DurableStoreError(
            f"Cosmos DB at {self.where}: thread {thread_id!r} kept changing under us "
            f"({MAX_CONFLICT_RETRIES} conflicts); is something else writing it?"
        )

    async def _per_thread(
        self, threads: Iterable[str], fn: Callable[[str], Awaitable[R]]
    ) -> builtins.list[R]:
        async def one(thread_id: str) -> R:
            async with self._threads:
                return await fn(thread_id)

        results = await asyncio.gather(*(one(t) for t in threads), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results  # type: ignore[return-value]

    # --- DurableBackend ------------------------------------------------------------------

    @_metered
    async def apply(self, ops: Sequence[Op]) -> int:
        """Apply outbox entries, per thread in order; see the module docstring.

        Cosmos has no transaction across partitions: each thread commits on
        its own, and a failure leaves other threads applied (a replay skips
        them by their watermark).
        """
        by_thread: dict[str, builtins.list[Op]] = {}
        for op in ops:
            by_thread.setdefault(op.thread_id, []).append(op)

        async def thread(thread_id: str) -> int:
            thread_ops = by_thread[thread_id]
            # A batch that starts with the thread's root checkpoint is most
            # likely its first: skip reading a watermark that does not exist.
            first = thread_ops[0]
            root = (
                isinstance(first, PutOp)
                and not first.row.parent_checkpoint_id
                and first.row.checkpoint_ns == ""
            )
            return await self._fenced(
                thread_id,
                lambda mark: self._apply_plan(thread_id, thread_ops, mark),
                assume_new=root,
            )

        return sum(await self._per_thread(by_thread, thread))

    async def _apply_plan(
        self, thread_id: str, ops: Sequence[Op], mark: _Watermark
    ) -> tuple[dict[str, Change], str, int]:
        batch = plan_apply(ops, {thread_id: mark.seq})
        plan: dict[str, Change] = {}
        wiped = False  # a delete came first: stored documents no longer count
        # Insert-once writes must not replace stored ones: the ids already
        # stored for every checkpoint such writes name, in one query. A thread
        # without a watermark document has nothing stored (every commit writes
        # it), so a new thread skips the query.
        once = {
            checkpoint_doc_id(op.checkpoint_ns, op.checkpoint_id): None
            for op in ops
            if isinstance(op, WritesOp) and not op.upsert and op.seq > mark.seq
            and mark.etag is not None
        }  # fmt: skip
        stored = set(await self._query_ids(WRITE_IDS_OF_SQL, list(once), thread_id))
        for run, delete in batch.runs:
            for op in run:
                if isinstance(op, PutOp):
                    for doc in put_docs(op):
                        plan[doc["id"]] = Change(doc["kind"], doc)
                elif isinstance(op, WritesOp):
                    existing = stored if not op.upsert and not wiped else set()
                    for w in op.writes:
                        docs = write_docs(thread_id, op.checkpoint_ns, op.checkpoint_id, w)
                        doc_id = docs[0]["id"]
                        planned = plan.get(doc_id)
                        present = (
                            planned.doc is not None if planned is not None else doc_id in existing
                        )
                        if op.upsert or not present:
                            for doc in docs:
                                plan[doc["id"]] = Change(doc["kind"], doc)
            if delete is not None:
                wiped = True
                plan = {
                    d["id"]: Change(d["kind"], None)
                    for d in await self._query(INDEX_SQL, [], thread_id)
                }
        return plan, batch.watermarks.get(thread_id, mark.seq), batch.applied

    @_metered
    async def get(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
    ) -> StoredCheckpoint | None:
        if checkpoint_id:
            doc = await self._read(thread_id, checkpoint_doc_id(checkpoint_ns, checkpoint_id))
            docs = [doc] if doc is not None else []
        else:
            docs = await self._query(
                LATEST_SQL, [{"name": "@ns", "value": checkpoint_ns}], thread_id
            )
        return (await self._hydrate(docs))[0] if docs else None

    @_metered
    async def list(self, query: ListQuery) -> builtins.list[StoredCheckpoint]:
        where = "c.kind = 'checkpoint'"
        params: builtins.list[dict[str, Any]] = []
        for i, (field, op, value) in enumerate(list_conditions(query)):
            if field != "thread_id":  # the partition key, given to the query itself
                where += f" AND c.{field} {op} @c{i}"
                params.append({"name": f"@c{i}", "value": value})
        if query.limit is not None and query.limit <= 0:
            return []
        top = ""
        if query.filter:
            sql, more = _scalar_filters(query.filter)
            where += sql
            params += more
        elif query.limit is not None:
            top = f"TOP {int(query.limit)} "
        sql = f"SELECT {top}* FROM c WHERE {where} ORDER BY c.checkpoint_id DESC"
        out: builtins.list[StoredCheckpoint] = []
        page: builtins.list[Doc] = []
        # Query pages are fetched lazily: stopping at the limit saves their RU.
        async for doc in self._iter(sql, params, query.thread_id):
            page.append(doc)
            if len(page) >= LIST_PAGE:
                out += _matching(await self._hydrate(page), query.filter)
                page = []
                if query.limit is not None and len(out) >= query.limit:
                    break
        out += _matching(await self._hydrate(page), query.filter)
        return out if query.limit is None else out[: query.limit]

    async def _hydrate(self, docs: Sequence[Doc]) -> builtins.list[StoredCheckpoint]:
        """Checkpoints with their blobs, writes and chunks, in the given order."""
        by_thread: dict[str, builtins.list[Doc]] = {}
        for doc in docs:
            by_thread.setdefault(doc["thread_id"], []).append(doc)

        async def thread(thread_id: str) -> dict[str, StoredCheckpoint]:
            cps = by_thread[thread_id]
            refs = sorted({ref for doc in cps for ref in doc.get("refs") or ()})
            blob_docs, wdocs = await asyncio.gather(
                self._query_ids(BY_IDS_SQL, refs, thread_id),
                self._query_ids(WRITES_OF_SQL, [d["id"] for d in cps], thread_id),
            )
            chunks = await self._chunks_of([*cps, *blob_docs, *wdocs], thread_id)
            blobs = {b["id"]: b for b in blob_docs}
            writes: dict[str, builtins.list[Doc]] = {}
            for w in wdocs:
                writes.setdefault(w["cp"], []).append(w)
            return {
                d["id"]: stored(
                    d,
                    [blobs[r] for r in d.get("refs") or () if r in blobs],
                    writes.get(d["id"], []),
                    chunks,
                )
                for d in cps
            }

        found: dict[str, dict[str, StoredCheckpoint]] = dict(
            zip(by_thread, await self._per_thread(by_thread, thread), strict=True)
        )
        return [found[d["thread_id"]][d["id"]] for d in docs]

    async def _chunks_of(self, docs: Iterable[Doc], thread_id: str) -> dict[str, Doc]:
        wanted = [i for d in docs for i in chunk_ids(d)]
        return {c["id"]: c for c in await self._query_ids(BY_IDS_SQL, wanted, thread_id)}

    @_metered
    async def get_blobs(
        self, thread_id: str, checkpoint_ns: str, refs: Sequence[tuple[str, str]]
    ) -> dict[str, tuple[str, bytes | None]]:
        ids = [blob_doc_id(checkpoint_ns, channel, version) for channel, version in refs]
        docs = await self._query_ids(BY_IDS_SQL, ids, thread_id)
        chunks = await self._chunks_of(docs, thread_id)
        try:
            return {d["channel"]: (d["type"], unpack(d, chunks)) for d in docs}
        except (ValueError, KeyError, zlib.error) as e:
            raise CorruptDataError(
                f"a Cosmos blob document of thread {thread_id!r} cannot be decoded: "
                f"{type(e).__name__}: {e}"
            ) from e

    @_metered
    async def delete_for_runs(self, run_ids: Sequence[str]) -> builtins.list[str]:
        runs = {str(r) for r in run_ids}
        param = [{"name": "@runs", "value": sorted(runs)}]
        threads = sorted(set(await self._query(RUNS_SQL, param, None)))

        async def thread(thread_id: str) -> int:
            async def plan_for(mark: _Watermark) -> tuple[dict[str, Change], str, int]:
                index = await self._query(INDEX_SQL, [], thread_id)
                doomed = {
                    d["id"] for d in index if d["kind"] == "checkpoint" and d.get("run_id") in runs
                }
                return _deletion_plan(index, doomed), mark.seq, len(doomed)

            return await self._fenced(thread_id, plan_for)

        await self._per_thread(threads, thread)
        return threads

    @_metered
    async def prune_keep_latest(self, thread_ids: Sequence[str]) -> None:
        threads = sorted(set(thread_ids))
        if not threads:
            return
        param = [{"name": "@threads", "value": threads}]
        scope = threads[0] if len(threads) == 1 else None
        refuse_delta_threads(set(await self._query(DELTA_THREADS_SQL, param, scope)))

        async def thread(thread_id: str) -> int:
            async def plan_for(mark: _Watermark) -> tuple[dict[str, Change], str, int]:
                index = await self._query(INDEX_SQL, [], thread_id)
                latest: dict[str, Doc] = {}
                for d in index:
                    if d["kind"] == "checkpoint":
                        best = latest.get(d["checkpoint_ns"])
                        if best is None or d["checkpoint_id"] > best["checkpoint_id"]:
                            latest[d["checkpoint_ns"]] = d
                keep = {d["id"] for d in latest.values()}
                doomed = {d["id"] for d in index if d["kind"] == "checkpoint"} - keep
                plan = _deletion_plan(index, doomed)
                # A kept checkpoint's parent is older, so gone: it becomes a
                # root, as in PostgresSaver.
                for d in latest.values():
                    if d.get("parent_checkpoint_id"):
                        full = await self._read(thread_id, d["id"])
                        if full is not None:
                            root = {k: v for k, v in full.items() if not k.startswith("_")}
                            plan[d["id"]] = Change(
                                "checkpoint", root | {"parent_checkpoint_id": None}
                            )
                return plan, mark.seq, len(doomed)

            return await self._fenced(thread_id, plan_for)

        await self._per_thread(threads, thread)

    async def server_version(self) -> None:
        """None: Cosmos DB is a service and reports no server version."""
        return None

    async def count_rows(self, thread_id: str | None = None) -> dict[str, int]:
        """Documents per kind (`checkpoints`, `blobs`, `writes`, `chunks`), of
        one thread or, cross-partition, of all; for the operations CLI's
        `status` and for tests."""
        out = {}
        for kind in ("checkpoint", "blob", "write", "chunk"):
            param = [{"name": "@kind", "value": kind}]
            out[f"{kind}s"] = sum(await self._query(COUNT_KIND_SQL, param, thread_id))
        return out


def _deletion_plan(index: Sequence[Doc], doomed: set[str]) -> dict[str, Change]:
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


__all__ = ["CosmosBackend"]
