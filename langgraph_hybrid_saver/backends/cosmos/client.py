"""The requests every Cosmos DB operation is made of (point reads and
queries in one partition or across all, each charged to `stats`), the
thread's watermark document, and the per-thread fan-out."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from azure.cosmos import exceptions
from azure.cosmos.aio import ContainerProxy, CosmosClient

from langgraph_hybrid_saver.backends.cosmos.documents import (
    DEFAULT_CONTAINER,
    QUERY_IDS_PER_CALL,
    THREAD_CONCURRENCY,
    WATERMARK_ID,
    Doc,
)
from langgraph_hybrid_saver.backends.cosmos.metering import Metered
from langgraph_hybrid_saver.errors import ConfigError

R = TypeVar("R")


@dataclass(slots=True)
class Watermark:
    seq: str
    rev: int
    etag: str | None  # None: the document does not exist yet


class CosmosBase(Metered):
    """The container, its client and the request helpers."""

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

    async def _read_watermark(self, thread_id: str) -> Watermark:
        doc = await self._read(thread_id, WATERMARK_ID)
        if doc is None:
            return Watermark("", 0, None)
        return Watermark(doc["seq"], doc["rev"], doc["_etag"])

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
