"""Writes on Cosmos DB: `apply`, `delete_for_runs` and `prune_keep_latest`,
each a plan per thread committed in batches fenced by the thread's
watermark document (the package docstring, "Concurrency"); the indexes
retention plans from."""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from azure.cosmos import exceptions

from langgraph_hybrid_saver.backends._apply import plan_apply, refuse_delta_threads
from langgraph_hybrid_saver.backends._prune import ChainRow, PrunedKey, kept_checkpoints
from langgraph_hybrid_saver.backends.cosmos.client import CosmosBase, Watermark
from langgraph_hybrid_saver.backends.cosmos.documents import (
    MAX_CONFLICT_RETRIES,
    WATERMARK_ID,
    chain_row,
    checkpoint_doc_id,
    chunk_ids,
    make_doc,
    put_docs,
    write_docs,
)
from langgraph_hybrid_saver.backends.cosmos.metering import metered
from langgraph_hybrid_saver.backends.cosmos.plan import Change, batches, deletion_plan
from langgraph_hybrid_saver.backends.cosmos.queries import (
    BY_IDS_SQL,
    CHECKPOINT_DOCS_SQL,
    CHECKPOINT_INDEX_SQL,
    DELTA_THREADS_SQL,
    INDEX_SQL,
    RUNS_SQL,
    SENDS_SQL,
    VALUE_BLOB_IDS_SQL,
    WRITE_IDS_OF_SQL,
)
from langgraph_hybrid_saver.errors import DurableStoreError
from langgraph_hybrid_saver.outbox.ops import (
    Op,
    PutOp,
    WritesOp,
)


class Conflict(Exception):
    """Another writer changed the thread's watermark first."""


class CosmosWrites(CosmosBase):
    """The writing half of `CosmosBackend`."""

    async def _commit(
        self, thread_id: str, mark: Watermark, plan: Mapping[str, Change], seq: str
    ) -> None:
        """Run a plan as fenced batches; the last one moves the watermark to `seq`.

        Raises:
            Conflict: another writer moved the watermark first (nothing of the
                failed batch was applied).
        """
        parts = batches(plan)
        etag, rev = mark.etag, mark.rev
        for n, part in enumerate(parts):
            rev += 1
            watermark = make_doc(
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
                    raise Conflict from e
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
        plan_for: Callable[[Watermark], Awaitable[tuple[dict[str, Change], str, int]]],
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
                mark = Watermark("", 0, None)
            else:
                mark = await self._read_watermark(thread_id)
            plan, seq, count = await plan_for(mark)
            if not plan and seq == mark.seq:
                return count
            try:
                await self._commit(thread_id, mark, plan, seq)
            except Conflict:
                continue
            return count
        raise DurableStoreError(
            f"Cosmos DB at {self.where}: thread {thread_id!r} kept changing under us "
            f"({MAX_CONFLICT_RETRIES} conflicts); is something else writing it?"
        )

    @metered
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
        self, thread_id: str, ops: Sequence[Op], mark: Watermark
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

    @metered
    async def delete_for_runs(self, run_ids: Sequence[str]) -> builtins.list[PrunedKey]:
        runs = {str(r) for r in run_ids}
        param = [{"name": "@runs", "value": sorted(runs)}]
        threads = sorted(set(await self._query(RUNS_SQL, param, None)))
        gone: dict[str, builtins.list[PrunedKey]] = {}  # by thread, of the last plan

        async def thread(thread_id: str) -> int:
            async def plan_for(mark: Watermark) -> tuple[dict[str, Change], str, int]:
                index = await self._query(INDEX_SQL, [], thread_id)
                doomed = [d for d in index if d["kind"] == "checkpoint" and d.get("run_id") in runs]
                gone[thread_id] = [
                    (thread_id, d["checkpoint_ns"], d["checkpoint_id"], True) for d in doomed
                ]
                plan = deletion_plan(index, {d["id"] for d in doomed})
                return plan, mark.seq, len(doomed)

            return await self._fenced(thread_id, plan_for)

        await self._per_thread(threads, thread)
        return [key for t in threads for key in gone.get(t, [])]

    @metered
    async def checkpoint_index(
        self, thread_ids: Sequence[str]
    ) -> builtins.list[tuple[str, str, str, bool]]:
        threads = sorted(set(thread_ids))
        if not threads:
            return []
        param = [{"name": "@threads", "value": threads}]
        scope = threads[0] if len(threads) == 1 else None
        docs = await self._query(CHECKPOINT_INDEX_SQL, param, scope)
        return [
            (d["thread_id"], d["checkpoint_ns"], d["checkpoint_id"], bool(d.get("delta")))
            for d in docs
        ]

    @metered
    async def chain_index(self, thread_ids: Sequence[str]) -> builtins.list[ChainRow]:
        rows = await self._per_thread(sorted(set(thread_ids)), self._chain_rows)
        return [r for thread in rows for r in thread]

    async def _chain_rows(self, thread_id: str) -> builtins.list[ChainRow]:
        """The `ChainRow`s of one thread: its checkpoint documents with their
        payloads (and chunks), and which of its blobs hold a value."""
        docs = await self._query(CHECKPOINT_DOCS_SQL, [], thread_id)
        value_blobs = set(await self._query(VALUE_BLOB_IDS_SQL, [], thread_id))
        sends = set(await self._query(SENDS_SQL, [], thread_id))
        wanted = [i for d in docs for i in chunk_ids(d)]
        chunks = {c["id"]: c for c in await self._query_ids(BY_IDS_SQL, wanted, thread_id)}
        return [chain_row(d, chunks, value_blobs, sends) for d in docs]

    @metered
    async def prune_keep_latest(
        self, thread_ids: Sequence[str], keep: int = 1, *, delta_chains: bool = False
    ) -> builtins.list[PrunedKey]:
        threads = sorted(set(thread_ids))
        if not threads:
            return []
        if not delta_chains:
            param = [{"name": "@threads", "value": threads}]
            scope = threads[0] if len(threads) == 1 else None
            refuse_delta_threads(set(await self._query(DELTA_THREADS_SQL, param, scope)))

        changed: dict[str, builtins.list[PrunedKey]] = {}  # by thread, of the last plan

        async def thread(thread_id: str) -> int:
            async def plan_for(mark: Watermark) -> tuple[dict[str, Change], str, int]:
                index = await self._query(INDEX_SQL, [], thread_id)
                checkpoints = [d for d in index if d["kind"] == "checkpoint"]
                keys = kept_checkpoints(await self._chain_rows(thread_id), keep)
                kept = [
                    d
                    for d in checkpoints
                    if (thread_id, d["checkpoint_ns"], d["checkpoint_id"]) in keys
                ]
                kept_ids = {d["id"] for d in kept}
                doomed = {d["id"] for d in checkpoints} - kept_ids
                plan = deletion_plan(index, doomed)
                # A kept checkpoint whose parent is not kept (pruned now, or
                # deleted before by delete_for_runs) becomes a root, as in
                # PostgresSaver.
                kept_keys = {(d["checkpoint_ns"], d["checkpoint_id"]) for d in kept}
                changed[thread_id] = [
                    (thread_id, d["checkpoint_ns"], d["checkpoint_id"], True)
                    for d in checkpoints
                    if d["id"] in doomed
                ]
                for d in kept:
                    parent = d.get("parent_checkpoint_id")
                    if parent and (d["checkpoint_ns"], parent) not in kept_keys:
                        full = await self._read(thread_id, d["id"])
                        if full is not None:
                            root = {k: v for k, v in full.items() if not k.startswith("_")}
                            plan[d["id"]] = Change(
                                "checkpoint", root | {"parent_checkpoint_id": None}
                            )
                            key = (thread_id, d["checkpoint_ns"], d["checkpoint_id"], False)
                            changed[thread_id].append(key)
                return plan, mark.seq, len(doomed)

            return await self._fenced(thread_id, plan_for)

        await self._per_thread(threads, thread)
        return [key for t in threads for key in changed.get(t, [])]
