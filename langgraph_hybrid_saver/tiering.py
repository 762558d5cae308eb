"""Reads across both tiers: Redis first, the durable store for what Redis
lacks (read-through copies it back), and `list` merging the two newest
first. Used by the saver; the durable store's reads are bounded by
`durable_timeout`. DeltaChannel's ancestor walk reads pages of both tiers."""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar

from langgraph.checkpoint.base import DeltaChannelHistory, PendingWrite
from langgraph.checkpoint.serde.base import SerializerProtocol

from langgraph_hybrid_saver import telemetry
from langgraph_hybrid_saver.backends import DurableBackend, unavailable
from langgraph_hybrid_saver.core import (
    ListQuery,
    StoredCheckpoint,
    WriteRow,
    matches,
    merge_newest_first,
    to_tuple,
)
from langgraph_hybrid_saver.errors import HybridSaverError, ServerUnreachableError
from langgraph_hybrid_saver.hot import HotRead, HotTier
from langgraph_hybrid_saver.hot.index import IndexBuilder
from langgraph_hybrid_saver.outbox.stream import Outbox

logger = logging.getLogger("langgraph_hybrid_saver")

T = TypeVar("T")
DELTA_PAGE_SIZE = 64  # ancestors read per page by delta_history


class Tiers:
    """The hot tier and the durable store, read as one."""

    def __init__(
        self,
        hot: HotTier,
        outbox: Outbox,
        backend: DurableBackend,
        durable_timeout: float,
        index: IndexBuilder | None = None,
    ) -> None:
        self.hot = hot
        self.outbox = outbox
        # With an index builder, a thread the complete thread index lacks is
        # absent without a durable read; a read that finds the index
        # incomplete asks the builder for a build.
        self.index = index
        self.backend = backend
        self.durable_timeout = durable_timeout

    async def get(self, thread_id: str, ns: str, cid: str | None) -> StoredCheckpoint | None:
        local = self.hot.local
        if cid is not None or local is None or not local.ready:
            return await self.complete(thread_id, ns, cid, await self.hot.get(thread_id, ns, cid))
        stored = await local.get(thread_id, ns)
        telemetry.local_cache(stored is not None)
        if stored is not None:
            telemetry.read("local")
            return stored
        token = local.begin(thread_id)
        try:
            stored = await self.complete(thread_id, ns, cid, await self.hot.get(thread_id, ns, cid))
        except BaseException:
            local.end(thread_id, ns, token, None)
            raise
        local.end(thread_id, ns, token, stored)
        return stored

    async def complete(
        self, thread_id: str, ns: str, cid: str | None, read: HotRead
    ) -> StoredCheckpoint | None:
        """A hot read made whole: blobs Redis lost come from the durable store;
        a checkpoint that is not hot is read through and copied back."""
        if read.stored is not None:
            telemetry.read("hot")
            if read.missing:
                found = await self.durable(self.backend.get_blobs(thread_id, ns, read.missing))
                read.stored.blobs.update(found)
            return read.stored
        if self.index is not None:
            if read.index == 2:
                return None
            if read.index == 0:
                self.index.request()
        stored = await self.durable(self.backend.get(thread_id, ns, read.checkpoint_id or cid))
        telemetry.read("absent" if stored is None else "read_through")
        if stored is None:
            return None
        writes = await self.hot.repopulate(stored, read.generation, latest=cid is None)
        if writes is None:  # deleted while we read it
            return None
        stored.writes = writes
        return stored

    async def list(self, query: ListQuery) -> builtins.list[StoredCheckpoint]:
        # Hot first, then durable: an entry the reconciler moves in between is
        # seen in one tier or the other, never in neither.
        stale: set[tuple[str, str, str]] = set()  # durable rows missing hot writes
        complete = False  # True: Redis holds every checkpoint the query can match
        whole: dict[int, HotRead] = {}  # hot checkpoints read with blobs and writes
        if query.thread_id is None:
            puts, stale = await self.outbox.unreconciled()
            hot = [
                StoredCheckpoint(
                    op.row.thread_id,
                    op.row.checkpoint_ns,
                    op.row.checkpoint_id,
                    op.row.parent_checkpoint_id,
                    json.loads(op.row.checkpoint),
                    json.loads(op.row.metadata),
                )
                for op in puts
            ]
        elif query.filter is None:  # the newest `limit`, whole, in one round trip
            hot_reads, complete = await self.hot.list_full(
                query.thread_id,
                query.checkpoint_ns,
                query.checkpoint_id,
                query.before,
                query.limit,
                indexed=self.index is not None,
            )
            whole = {id(r.stored): r for r in hot_reads if r.stored is not None}
            hot = [r.stored for r in hot_reads if r.stored is not None]
        else:  # a metadata filter: headers of every hot checkpoint, then the matches
            namespaces = (
                [query.checkpoint_ns]
                if query.checkpoint_ns is not None
                else await self.hot.namespaces(query.thread_id)
            )
            hot = []
            complete = bool(namespaces)
            for ns in namespaces:
                headers, ns_complete = await self.hot.list_headers(
                    query.thread_id, ns, query.before, None
                )
                hot += headers
                complete = complete and ns_complete
        hot = [h for h in hot if matches(query, h)]
        # A thread whose namespaces all started in Redis and are still whole
        # there has nothing more in the durable store.
        durable = [] if complete else await self.durable(self.backend.list(query))
        merged = merge_newest_first(hot, durable, query.limit)
        full_rows = {
            id(d) for d in durable if (d.thread_id, d.checkpoint_ns, d.checkpoint_id) not in stale
        }
        headers = [s for s in merged if id(s) not in full_rows and id(s) not in whole]
        # A durable row of one thread can lack writes still queued in Redis
        # (made while Redis did not hold its checkpoint, e.g. after a drop of
        # the thread): while the thread has entries pending, they are read
        # with the hot headers, in the same trip.
        rows = [s for s in merged if id(s) in full_rows] if query.thread_id is not None else []
        if rows and not await self.hot.pending(rows[0].thread_id):
            rows = []
        reads = await self.hot.get_many(
            [(h.thread_id, h.checkpoint_ns, h.checkpoint_id) for h in (*headers, *rows)]
        )
        full = whole | {id(h): r for h, r in zip(headers, reads[: len(headers)], strict=True)}
        for row, read in zip(rows, reads[len(headers) :], strict=True):
            if read.writes:
                row.writes = union_writes(read.writes, row.writes)
        out = []
        for s in merged:
            if id(s) in full:  # a hot header: blobs and writes fetched above
                read = full[id(s)]
                got = (
                    read.stored
                    if read.stored and not read.missing
                    else await self.complete(s.thread_id, s.checkpoint_ns, s.checkpoint_id, read)
                )
                if got is None:
                    logger.warning(
                        "checkpoint %s of thread %s vanished while listing",
                        s.checkpoint_id,
                        s.thread_id,
                    )
                    continue
                s = got
            out.append(s)
        return out

    async def delta_history(
        self,
        serde: SerializerProtocol,
        thread_id: str,
        ns: str,
        cid: str | None,
        channels: Sequence[str],
    ) -> dict[str, DeltaChannelHistory]:
        """The ancestor writes and seed of each channel (DeltaChannel support):
        `BaseCheckpointSaver`'s walk, with the ancestors read in pages of the
        namespace (both tiers, a few round trips per page) instead of one
        `get_tuple` per ancestor."""
        target = await self.get(thread_id, ns, cid)
        collected: dict[str, builtins.list[PendingWrite]] = {c: [] for c in channels}
        seeds: dict[str, Any] = {}
        remaining = set(channels)
        page: dict[str, StoredCheckpoint] = {}
        cursor = target.parent_checkpoint_id if target else None
        oldest = target.checkpoint_id if target else None
        while cursor is not None and remaining:
            if cursor not in page:
                if oldest is None or cursor >= oldest:
                    break  # the parent was deleted (pruned): the walk ends here
                query = ListQuery(thread_id, ns, None, None, oldest, DELTA_PAGE_SIZE)
                rows = await self.list(query)
                if not rows:
                    break
                page.update((r.checkpoint_id, r) for r in rows)
                oldest = rows[-1].checkpoint_id
                continue
            tup = to_tuple(serde, page[cursor])
            for write in reversed(tup.pending_writes or []):
                if write[1] in remaining:
                    collected[write[1]].append(write)
            for ch in list(remaining):
                if ch in tup.checkpoint["channel_values"]:
                    seeds[ch] = tup.checkpoint["channel_values"][ch]
                    remaining.discard(ch)
            cursor = page[cursor].parent_checkpoint_id
        result: dict[str, DeltaChannelHistory] = {}
        for ch in channels:
            entry: DeltaChannelHistory = {"writes": collected[ch][::-1]}
            if ch in seeds:
                entry["seed"] = seeds[ch]
            result[ch] = entry
        return result

    async def durable(self, read: Awaitable[T]) -> T:
        """A read from the durable store, failing within `durable_timeout`
        with `ServerUnreachableError` when the store is down or hung."""
        try:
            return await asyncio.wait_for(read, self.durable_timeout)
        except HybridSaverError:
            raise
        except Exception as e:
            if not (isinstance(e, asyncio.TimeoutError) or unavailable(e)):
                raise
            telemetry.error("durable")
            if isinstance(e, asyncio.TimeoutError):
                why = f"no answer within durable_timeout={self.durable_timeout}s"
            else:
                why = f"{type(e).__name__}: {e}".splitlines()[0]
            raise ServerUnreachableError(
                f"the durable store {self.backend.where} is unavailable ({why}); threads hot "
                "in Redis keep working, this read needs the store: start it or check "
                "durable_url, then retry"
            ) from e


def union_writes(hot: Sequence[WriteRow], durable: Sequence[WriteRow]) -> list[WriteRow]:
    """Both tiers' writes of a checkpoint. Where both hold a (task, idx), the
    durable one wins a regular write (idx >= 0: the first is kept, as the
    store keeps it) and the hot one a special write (it overwrites), as the
    read-through script merges them."""
    seen = {(w.task_id, w.idx): w for w in hot}
    for w in durable:
        if w.idx >= 0 or (w.task_id, w.idx) not in seen:
            seen[(w.task_id, w.idx)] = w
    return list(seen.values())


async def read_hot_whole(
    hot: HotTier, backend: DurableBackend | None, thread_id: str, ns: str, cid: str
) -> tuple[HotRead, bool]:
    """The hot read of checkpoint `cid` made whole as `Tiers.complete` makes a
    hot checkpoint whole (blobs Redis lost come from the durable store), and
    whether Redis alone had every blob. For the read-only views (history):
    a checkpoint that is not hot is not read through nor copied back, and
    without a durable store (`backend` None) the lost blobs stay lost."""
    read = await hot.get(thread_id, ns, cid)
    if read.stored is not None and read.missing and backend is not None:
        read.stored.blobs.update(await backend.get_blobs(thread_id, ns, read.missing))
    return read, read.stored is not None and not read.missing


async def durable_threads(backend: DurableBackend, page: int = 1000) -> AsyncIterator[list[str]]:
    """Every thread id of the durable store, in pages (for the thread index)."""
    after = ""
    while batch := await backend.thread_ids(after, page):
        yield batch
        after = batch[-1]
