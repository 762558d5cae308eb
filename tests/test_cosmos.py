"""Cosmos DB backend specifics: chunking, request charges, throttling, the
watermark fence and batch atomicity.

They run against `COSMOS_ENDPOINT` (default: the stand-in of `.ci/cosmos`,
`@vercel/cosmosdb-server` with the project's fixes). What the stand-in does
not do, and so these tests cannot show: it accepts any key (no auth test),
never expires documents (no TTL is used anyway), and does not enforce the
2 MB item or batch limits nor send 429s by itself. The tests therefore
measure document and batch sizes themselves, and inject 429 responses at the
HTTP transport.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import string
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from azure.core.pipeline.transport import AioHttpTransport
from langgraph.checkpoint.conformance.test_utils import generate_checkpoint, generate_config

from langgraph_hybrid_saver import (
    AsyncHybridSaver,
    ConfigError,
    MissingExtraError,
    ServerUnreachableError,
)
from langgraph_hybrid_saver.backends import open_backend
from langgraph_hybrid_saver.backends.cosmos import (
    BATCH_MAX_BYTES,
    BATCH_MAX_OPS,
    CHUNK_BYTES,
    INLINE_MAX_BYTES,
    MAX_ITEM_BYTES,
    WATERMARK_ID,
    Change,
    CosmosBackend,
    batches,
    chunk_ids,
    pack,
    unpack,
)
from langgraph_hybrid_saver.core import ListQuery
from langgraph_hybrid_saver.outbox.ops import (
    DeleteThreadOp,
    Op,
    seq_key,
)

from .conftest import cosmos_database
from .helpers import put_op, writes_op

TWO_MB = 2 * 1024 * 1024


@pytest.fixture
def cosmos_url(cosmos_endpoint: str) -> Iterator[str]:
    with cosmos_database(cosmos_endpoint) as url:
        yield url


@pytest.fixture
async def backend(cosmos_url: str) -> AsyncIterator[CosmosBackend]:
    b = CosmosBackend.from_url(cosmos_url)
    await b.open()
    try:
        await b.setup()
        yield b
    finally:
        await b.close()


async def raw_docs(backend: CosmosBackend, thread_id: str) -> list[dict[str, Any]]:
    """Every stored document of a thread, as Cosmos returns it."""
    query = backend.container.query_items("SELECT * FROM c", partition_key=thread_id)
    return [doc async for doc in query]


def snapshot(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["id"]: d for d in docs}


# --- chunking (no server) ----------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        None,
        b"",
        b"x",
        b"a" * 5000,  # compressible: stored compressed, inline
        os.urandom(INLINE_MAX_BYTES),  # incompressible, just inline
        os.urandom(INLINE_MAX_BYTES + 1),  # two chunks
        os.urandom(3 * CHUNK_BYTES + 5),  # four chunks
        b"b" * (8 * CHUNK_BYTES),  # large but compresses to inline
    ],
    ids=["none", "empty", "one", "compressible", "inline", "two", "four", "big-compressible"],
)
def test_pack_unpack_round_trip(data: bytes | None) -> None:
    owner: dict[str, Any] = {"id": "b.x", "thread_id": "t"}
    chunks = pack(owner, data)
    assert [c["id"] for c in chunks] == chunk_ids(owner)
    assert unpack(owner, {c["id"]: c for c in chunks}) == data
    for doc in (owner, *chunks):
        assert len(json.dumps(doc)) < MAX_ITEM_BYTES
    if data is not None and len(data) > INLINE_MAX_BYTES and data[:1] != b"b":
        assert len(chunks) == -(-len(data) // CHUNK_BYTES)


def test_batches_respect_cosmos_limits() -> None:
    plan: dict[str, Change] = {}
    for i in range(250):  # many small documents
        plan[f"w.{i}"] = Change("write", {"id": f"w.{i}", "thread_id": "t", "kind": "write"})
    owner: dict[str, Any] = {"id": "c.x", "thread_id": "t", "kind": "checkpoint"}
    for chunk in pack(owner, os.urandom(4 * CHUNK_BYTES)):  # and a few big ones
        plan[chunk["id"]] = Change("chunk", chunk)
    plan["c.x"] = Change("checkpoint", owner)
    parts = batches(plan)
    assert sum(len(p) for p in parts) == len(plan)
    for part in parts:
        assert len(part) <= BATCH_MAX_OPS - 1  # one op left for the watermark
        assert sum(len(json.dumps(c.doc)) for _, c in part) <= BATCH_MAX_BYTES
    # chunks land before the checkpoint that points to them
    order = [doc_id for part in parts for doc_id, _ in part]
    assert order.index("c.x") > max(order.index(c) for c in chunk_ids(owner))


# --- through the saver ---------------------------------------------------------------


async def test_five_mb_state_is_stored_in_documents_under_2_mb(
    redis_url: str, cosmos_url: str, key_prefix: str
) -> None:
    """A ~5 MB state (a 2.5 MB string kept inline in the checkpoint, a 2.5 MB
    bytes blob) and a 1 MB pending write: every stored document and every
    batch request stays under 2 MB (the stand-in does not enforce either
    limit, so the test measures), and the state reads back equal."""
    tid = str(uuid.uuid4())
    text = "".join(random.choices(string.ascii_letters, k=2_500_000))
    data = os.urandom(2_500_000)
    write = os.urandom(1_000_000)
    batch_requests: list[bytes] = []
    async with AsyncHybridSaver.from_conn_string(
        redis_url, cosmos_url, key_prefix=key_prefix, flush_timeout=60
    ) as saver:
        backend = saver.backend
        assert isinstance(backend, CosmosBackend)
        charge = backend._charge

        def recording(response: Any) -> None:
            request = response.http_request
            if request.headers.get("x-ms-cosmos-is-batch-request"):
                batch_requests.append(request.body)
            charge(response)

        backend._charge = recording  # type: ignore[method-assign]
        version = saver.get_next_version(None, None)
        checkpoint = generate_checkpoint(
            channel_values={"text": text, "data": data},
            channel_versions={"text": version, "data": version},
        )
        config = await saver.aput(
            generate_config(tid), checkpoint, {"step": 1}, {"text": version, "data": version}
        )
        await saver.aput_writes(config, [("data", write)], "task-1", "~p")
        await saver.aflush()

        docs = await raw_docs(backend, tid)
        sizes = {d["id"]: len(json.dumps(d).encode()) for d in docs}
        assert max(sizes.values()) < TWO_MB, sizes
        assert sum(d["kind"] == "chunk" for d in docs) >= 4
        assert len(batch_requests) >= 3
        for body in batch_requests:
            assert len(body) < TWO_MB
            assert len(json.loads(body)) <= BATCH_MAX_OPS

    # A fresh hot tier: the read comes from Cosmos.
    async with AsyncHybridSaver.from_conn_string(
        redis_url, cosmos_url, key_prefix=key_prefix + "b"
    ) as cold:
        got = await cold.aget_tuple(config)
    assert got is not None
    assert got.checkpoint["channel_values"]["text"] == text
    assert got.checkpoint["channel_values"]["data"] == data
    assert got.pending_writes == [("task-1", "data", write)]


async def test_saver_stats_include_request_units(saver: AsyncHybridSaver) -> None:
    stats = await saver.astats()
    if isinstance(saver.backend, CosmosBackend):
        assert stats["durable"]["request_charge"] > 0
    else:
        assert "durable" not in stats


# --- request charges and throttling -------------------------------------------------


async def test_a_batch_reads_stored_writes_once_per_thread_and_never_for_a_new_one(
    backend: CosmosBackend,
) -> None:
    """Insert-once writes look up what is stored with one query per thread and
    batch; a thread without a watermark document has nothing stored, and a
    batch that starts with a thread's root checkpoint does not even read it."""
    tid = str(uuid.uuid4())

    def requests() -> int:
        return int(backend.stats["requests"])

    def batch(first: int) -> list[Op]:
        ops: list[Op] = []
        for n in range(first, first + 6, 2):
            put = put_op(n, tid, f"c{n}", parent=f"c{n - 2}" if n > 1 else None)
            ops += [put, writes_op(n + 1, tid, f"c{n}", b"w", upsert=False)]
        return ops

    before = requests()
    assert await backend.apply(batch(1)) == 6
    assert requests() - before == 1  # one transactional batch
    before = requests()
    assert await backend.apply(batch(7)) == 6
    assert requests() - before == 3  # the same, and one query for three writes entries
    # A write to an existing checkpoint is still refused (insert-once).
    assert await backend.apply([writes_op(20, tid, "c1", b"late", upsert=False)]) == 1
    stored = await backend.get(tid, "", "c1")
    assert stored is not None and [w.blob for w in stored.writes] == [b"w"]
    # A root checkpoint of a thread that exists: the guess fails the first
    # batch whole, the watermark is read, the batch goes through once.
    before = requests()
    assert await backend.apply([put_op(30, tid, "c30"), writes_op(31, tid, "c1", b"x", False)]) == 2
    assert requests() - before == 4  # failed batch, watermark read, stored ids, batch
    stored = await backend.get(tid, "", "c1")
    assert stored is not None and [w.blob for w in stored.writes] == [b"w"]
    assert await backend.get(tid, "", "c30") is not None


async def test_request_charges_are_recorded_per_operation(backend: CosmosBackend) -> None:
    tid = str(uuid.uuid4())
    await backend.apply([put_op(1, tid, "c1", {"ch": b"blob"})])
    assert await backend.get(tid, "", None) is not None
    await backend.list(ListQuery(tid, None, None, None, None, None))
    stats = backend.stats
    assert stats["request_charge"] > 0
    assert stats["requests"] >= 4
    ops = stats["operations"]
    for name in ("setup", "apply", "get", "list"):
        assert ops[name]["calls"] == 1
        assert ops[name]["requests"] >= 1
        assert ops[name]["request_charge"] > 0
    assert stats["request_charge"] == pytest.approx(sum(o["request_charge"] for o in ops.values()))
    assert stats["throttled"] == 0


class ThrottlingTransport(AioHttpTransport):
    """Answers the first `n` document reads with 429 and a retry-after."""

    def __init__(self, n: int, retry_after_ms: int) -> None:
        super().__init__()
        self.left = n
        self.retry_after_ms = retry_after_ms

    async def send(self, request: Any, **kwargs: Any) -> Any:
        response = await super().send(request, **kwargs)
        if self.left and request.method == "GET" and "/docs/" in request.url:
            self.left -= 1
            response.status_code = 429
            response.headers["x-ms-retry-after-ms"] = str(self.retry_after_ms)
        return response


async def test_throttling_is_retried_after_the_servers_delay(
    backend: CosmosBackend, cosmos_url: str
) -> None:
    tid = str(uuid.uuid4())
    await backend.apply([put_op(1, tid, "c1")])
    throttled = CosmosBackend.from_url(cosmos_url, transport=ThrottlingTransport(2, 300))
    await throttled.open()
    try:
        await throttled.setup()
        started = time.monotonic()
        got = await throttled.get(tid, "", "c1")  # a point read: GET .../docs/<id>
        elapsed = time.monotonic() - started
    finally:
        await throttled.close()
    assert got is not None and got.checkpoint_id == "c1"
    assert elapsed >= 0.6  # two waits of the 300 ms the "server" asked for
    assert throttled.stats["throttled"] == 2
    # the read three times (two 429s), then the query for pending writes
    assert throttled.stats["operations"]["get"]["requests"] == 4


# --- watermark, idempotency, atomicity ------------------------------------------------


async def test_applying_a_batch_twice_changes_nothing(backend: CosmosBackend) -> None:
    tid = str(uuid.uuid4())
    ops: list[Op] = [
        put_op(1, tid, "c1", {"a": b"small"}),
        writes_op(2, tid, "c1", b"w", upsert=False),
        put_op(3, tid, "c2", {"a": os.urandom(2 * CHUNK_BYTES)}),  # chunked
        writes_op(4, tid, "c2", b"special", upsert=True),
    ]
    assert await backend.apply(ops) == 4
    first = snapshot(await raw_docs(backend, tid))
    assert first[WATERMARK_ID]["seq"] == ops[-1].seq
    assert await backend.apply(ops) == 0
    assert await backend.apply(ops[1:3]) == 0
    # Same documents, same ETags: nothing was even rewritten.
    assert snapshot(await raw_docs(backend, tid)) == first


async def test_concurrent_appliers_of_one_thread_apply_once(cosmos_url: str) -> None:
    tid = str(uuid.uuid4())
    ops: list[Op] = [put_op(i, tid, f"c{i}", {"a": f"v{i}".encode()}) for i in range(1, 6)]
    backends = [CosmosBackend.from_url(cosmos_url) for _ in range(3)]
    try:
        for b in backends:
            await b.open()
            await b.setup()
        counts = await asyncio.gather(*(b.apply(ops) for b in backends))
        assert sum(counts) == len(ops)  # the ETag fence let exactly one apply each entry
        stored = await backends[0].list(ListQuery(tid, None, None, None, None, None))
        assert [s.checkpoint_id for s in stored] == ["c5", "c4", "c3", "c2", "c1"]
    finally:
        for b in backends:
            await b.close()


async def test_non_upsert_writes_keep_the_first_value(backend: CosmosBackend) -> None:
    tid = str(uuid.uuid4())
    await backend.apply([put_op(1, tid, "c1"), writes_op(2, tid, "c1", b"first", upsert=False)])
    await backend.apply([writes_op(3, tid, "c1", b"second", upsert=False)])
    got = await backend.get(tid, "", "c1")
    assert got is not None and [w.blob for w in got.writes] == [b"first"]
    await backend.apply([writes_op(4, tid, "c1", b"third", upsert=True)])
    got = await backend.get(tid, "", "c1")
    assert got is not None and [w.blob for w in got.writes] == [b"third"]


async def test_failed_batch_rolls_back_entirely(backend: CosmosBackend) -> None:
    """A batch is atomic: one failing operation (a delete of a missing
    document) undoes the upserts before it and the watermark move."""
    tid = str(uuid.uuid4())
    await backend.apply([put_op(1, tid, "c1")])
    before = snapshot(await raw_docs(backend, tid))
    mark = await backend._read_watermark(tid)
    doc = {"id": "w.extra", "thread_id": tid, "kind": "write"}
    plan = {"w.extra": Change("write", doc), "b.missing": Change("blob", None)}
    with pytest.raises(Exception, match="failed at operation"):
        await backend._commit(tid, mark, plan, seq_key("9-0"))
    assert snapshot(await raw_docs(backend, tid)) == before


async def test_crash_between_batches_is_repaired_by_the_replay(
    backend: CosmosBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write split over several batches dies after the first: the watermark
    has not moved, so the replay applies every entry again, idempotently."""
    tid = str(uuid.uuid4())
    ops: list[Op] = [put_op(1, tid, "c1", {"a": os.urandom(3 * CHUNK_BYTES)})]
    container = backend.container
    real = container.execute_item_batch
    calls = 0

    async def dying(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("process killed")
        return await real(*args, **kwargs)

    monkeypatch.setattr(container, "execute_item_batch", dying)
    with pytest.raises(OSError):
        await backend.apply(ops)
    partial = await raw_docs(backend, tid)
    assert [d for d in partial if d["kind"] == "checkpoint"] == []  # written last
    assert snapshot(partial)[WATERMARK_ID]["seq"] == ""
    monkeypatch.undo()
    assert await backend.apply(ops) == 1
    got = await backend.get(tid, "", "c1")
    assert got is not None and got.blobs["a"][1] == ops[0].blobs[0].blob  # type: ignore[union-attr]


async def test_delete_thread_keeps_only_the_watermark(backend: CosmosBackend) -> None:
    tid = str(uuid.uuid4())
    ops: list[Op] = [
        put_op(1, tid, "c1", {"a": os.urandom(2 * CHUNK_BYTES)}),
        writes_op(2, tid, "c1", b"w", upsert=False),
        DeleteThreadOp(seq_key("3-0"), tid),
    ]
    assert await backend.apply(ops[:2]) == 2
    assert await backend.apply(ops) == 1
    docs = await raw_docs(backend, tid)
    assert [(d["id"], d["seq"]) for d in docs] == [(WATERMARK_ID, ops[-1].seq)]
    assert await backend.apply(ops[:2]) == 0  # no resurrection by a late replay
    assert await backend.get(tid, "", None) is None


async def test_filter_finds_checkpoints_with_large_metadata(backend: CosmosBackend) -> None:
    """Metadata too large to copy for queries is still filtered exactly."""
    tid = str(uuid.uuid4())
    big = {"source": "loop", "step": 2, "note": "x" * 100_000}
    await backend.apply(
        [
            put_op(1, tid, "c1", metadata={"source": "input", "step": 1}),
            put_op(2, tid, "c2", metadata=big),
            put_op(3, tid, "c3", metadata={"source": "loop", "step": 3}),
        ]
    )
    found = await backend.list(ListQuery(tid, None, None, {"source": "loop"}, None, None))
    assert [s.checkpoint_id for s in found] == ["c3", "c2"]
    found = await backend.list(ListQuery(tid, None, None, {"source": "loop"}, "c3", 1))
    assert [s.checkpoint_id for s in found] == ["c2"]
    assert found[0].metadata == big


async def test_prune_keeps_the_latest_as_a_root(backend: CosmosBackend) -> None:
    tid = str(uuid.uuid4())
    await backend.apply(
        [
            put_op(1, tid, "c1", {"a": os.urandom(2 * CHUNK_BYTES)}),
            writes_op(2, tid, "c1", b"w", upsert=False),
            put_op(3, tid, "c2", {"a": b"v3"}, parent="c1"),
            put_op(4, tid, "c3", {"b": b"v4"}, parent="c2"),
        ]
    )
    await backend.prune_keep_latest([tid])
    [kept] = await backend.list(ListQuery(tid, None, None, None, None, None))
    assert (kept.checkpoint_id, kept.parent_checkpoint_id) == ("c3", None)
    assert kept.blobs == {"b": ("bytes", b"v4")}
    assert await backend.count_rows(tid) == {"checkpoints": 1, "blobs": 1, "writes": 0, "chunks": 0}


# --- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("cosmos+https://127.0.0.1:8081/", "names no database"),
        ("cosmos+https://127.0.0.1:8081/?database=d&bogus=1", "unknown option"),
        ("cosmos+https://127.0.0.1:8081/?database=d&verify=maybe", "verify"),
    ],
)
def test_bad_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_backend(url)


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "langgraph_hybrid_saver.backends.cosmos", None)
    with pytest.raises(MissingExtraError, match=r"\[cosmos\]"):
        open_backend("cosmos+https://127.0.0.1:8081/?database=d")


def test_unknown_scheme_lists_cosmos() -> None:
    with pytest.raises(ConfigError, match="cosmos\\+https://"):
        open_backend("mongodb://127.0.0.1/x")


def test_missing_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COSMOS_KEY")
    with pytest.raises(ConfigError, match="COSMOS_KEY"):
        open_backend("cosmos+https://127.0.0.1:8081/?database=d")


async def test_unreachable_endpoint_names_host_port_not_key() -> None:
    from .conftest import free_port

    port = free_port()
    backend = open_backend(f"cosmos+https://127.0.0.1:{port}/?database=d")
    with pytest.raises(ServerUnreachableError) as info:
        await backend.open()
    assert f"127.0.0.1:{port}" in str(info.value)
    assert os.environ["COSMOS_KEY"] not in str(info.value)


class StaticEntraToken:
    """An azure-core async TokenCredential with a fixed token (the stand-in,
    like the emulator, does not validate tokens): proves the saver signs its
    requests with the credential instead of a key."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        return AccessToken("entra-token-for-tests", int(time.time()) + 3600)

    async def close(self) -> None:
        pass


async def test_an_entra_id_credential_replaces_the_key(
    cosmos_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COSMOS_KEY")  # no key anywhere: only the credential
    credential = StaticEntraToken()
    backend = CosmosBackend.from_url(cosmos_url, credential=credential)
    await backend.open()
    try:
        await backend.setup()
        tid = f"entra-{uuid.uuid4().hex[:8]}"
        assert await backend.apply([put_op(1, tid, "c1", {"ch": b"x" * 100})]) == 1
        got = await backend.get(tid, "", "c1")
        assert got is not None and got.blobs["ch"][1] == b"x" * 100
    finally:
        await backend.close()
    host = cosmos_url.split("//", 1)[1].split(":", 1)[0]
    assert (f"https://{host}/.default",) in credential.scopes
