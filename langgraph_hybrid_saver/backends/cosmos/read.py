"""Reads on Cosmos DB: a checkpoint with its blobs, writes and chunks
(point reads and single-partition queries), `list` with its filters, and
the counts for `status`."""

from __future__ import annotations

import asyncio
import builtins
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langgraph_hybrid_saver.backends.cosmos.client import CosmosBase
from langgraph_hybrid_saver.backends.cosmos.documents import (
    LIST_PAGE,
    Doc,
    blob_doc_id,
    checkpoint_doc_id,
    chunk_ids,
    stored,
    unpack,
)
from langgraph_hybrid_saver.backends.cosmos.metering import metered
from langgraph_hybrid_saver.backends.cosmos.queries import (
    BY_IDS_SQL,
    COUNT_KIND_SQL,
    LATEST_SQL,
    THREAD_IDS_SQL,
    WRITES_OF_SQL,
)
from langgraph_hybrid_saver.core import (
    ListQuery,
    StoredCheckpoint,
    json_contains,
    list_conditions,
)
from langgraph_hybrid_saver.errors import CorruptDataError


def matching(
    found: Sequence[StoredCheckpoint], filter: Mapping[str, Any] | None
) -> builtins.list[StoredCheckpoint]:
    """The exact metadata filter (jsonb `@>`), on the payload's metadata."""
    return [s for s in found if not filter or json_contains(s.metadata, filter)]


def scalar_filters(filter: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """SQL for the top-level scalar filter keys: a superset of the matches (a
    document without a metadata copy passes), refined with `json_contains`."""
    sql = ""
    params: list[dict[str, Any]] = []
    for n, (key, value) in enumerate(filter.items()):
        if value is None or isinstance(value, (str, int, float, bool)):
            sql += f" AND (NOT IS_DEFINED(c.metadata) OR c.metadata[@fk{n}] = @fv{n})"
            params += [{"name": f"@fk{n}", "value": key}, {"name": f"@fv{n}", "value": value}]
    return sql, params


class CosmosReads(CosmosBase):
    """The reading half of `CosmosBackend`."""

    @metered
    async def watermark(self, thread_id: str) -> str:
        return (await self._read_watermark(thread_id)).seq

    @metered
    async def thread_ids(self, after: str, limit: int) -> builtins.list[str]:
        """From the checkpoint documents, cross-partition; sorted here (one
        query per page: fine for the index build, which runs in the
        background after a Redis restart)."""
        param = [{"name": "@after", "value": after}]
        return sorted(set(await self._query(THREAD_IDS_SQL, param, None)))[:limit]

    @metered
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

    @metered
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
            sql, more = scalar_filters(query.filter)
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
                out += matching(await self._hydrate(page), query.filter)
                page = []
                if query.limit is not None and len(out) >= query.limit:
                    break
        out += matching(await self._hydrate(page), query.filter)
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

    @metered
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

    async def count_rows(self, thread_id: str | None = None) -> dict[str, int]:
        """Documents per kind (`checkpoints`, `blobs`, `writes`, `chunks`), of
        one thread or, cross-partition, of all; for the operations CLI's
        `status` and for tests."""
        out = {}
        for kind in ("checkpoint", "blob", "write", "chunk"):
            param = [{"name": "@kind", "value": kind}]
            out[f"{kind}s"] = sum(await self._query(COUNT_KIND_SQL, param, thread_id))
        return out
