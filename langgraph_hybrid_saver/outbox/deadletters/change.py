"""Changing dead letters: `retry` puts one back in its shard's outbox,
`drop` deletes it for good. Each change is one Lua script per dead letter, on
keys of one shard (one hash tag, one Redis Cluster slot)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from langgraph_hybrid_saver.errors import ConfigError
from langgraph_hybrid_saver.hot import HotTier
from langgraph_hybrid_saver.hot.lua import source
from langgraph_hybrid_saver.outbox.deadletters.letters import (
    ALL,
    PAGE,
    Outcome,
    Raw,
    Selection,
    as_text,
)
from langgraph_hybrid_saver.outbox.deadletters.read import read_pages, resolve, shards_of


async def _selected(hot: HotTier, ids: Selection, thread: str | None) -> AsyncIterator[list[Raw]]:
    """The dead letters to change, a page at a time. With "all": those there
    now (of `thread`), never ones dead-lettered while this runs (a retried
    entry refused again must not be retried in a loop)."""
    if ids != ALL:
        if thread is not None:
            raise ConfigError("thread selects dead letters only with 'all', not with ids")
        raws = await resolve(hot, ids)
        for i in range(0, len(raws), PAGE):
            yield raws[i : i + PAGE]
        return
    for shard in shards_of(hot, thread):
        newest = await hot.redis.xrevrange(hot.keys.dead[shard], count=1)
        if not newest:
            continue
        async for page in read_pages(hot, shard, as_text(newest[0][0])):
            if thread is not None:
                page = [r for r in page if r.thread_id == thread]
            if page:
                yield page


async def _run_scripts(
    hot: HotTier, script: Any, calls: Sequence[tuple[list[Any], list[Any]]]
) -> list[Any]:
    """Run `script` once per (keys, args): one round trip (concurrent calls on
    Redis Cluster, where each call has a slot of its own)."""
    if not calls:
        return []
    if hot.cluster:
        return list(await asyncio.gather(*(script(keys=k, args=a) for k, a in calls)))
    async with hot.redis.pipeline(transaction=False) as pipe:
        for k, a in calls:
            await script(keys=k, args=a, client=pipe)
        return list(await pipe.execute())


def _outcome(raw: Raw, status: str, message: str) -> Outcome:
    return Outcome(
        raw.dead_id, raw.outbox_id, raw.shard, raw.thread_id, raw.kind, raw.text(b"c"),
        status, message,
    )  # fmt: skip


def _what(raw: Raw) -> str:
    if raw.kind == "delete":
        return f"delete of thread {raw.thread_id!r}"
    what = {"checkpoint": "checkpoint", "writes": "pending writes of checkpoint"}.get(
        raw.kind, "entry of checkpoint"
    )
    return f"{what} {raw.text(b'c')!r} (thread {raw.thread_id!r}, namespace {raw.text(b'n')!r})"


def _unmovable(hot: HotTier, raw: Raw) -> str | None:
    """Why a dead letter cannot go back to its shard's outbox, known before
    asking Redis; None when it can."""
    if raw.thread_id is None or not raw.entry:
        return (
            "the entry names no thread (it cannot be decoded, so the reconciler would "
            "refuse it again): it can only be dropped"
        )
    if hot.shard(raw.thread_id) != raw.shard:
        return (
            f"thread {raw.thread_id!r} maps to shard {hot.shard(raw.thread_id)} of "
            f"{hot.shards}, but this dead letter is in shard {raw.shard}: use the shard "
            "count the savers use (--shards)"
        )
    return None


async def retry(hot: HotTier, ids: Selection, *, thread: str | None = None) -> list[Outcome]:
    """Put dead letters back in the outbox, each at the tail of its shard's
    stream as a new entry with its original fields (an older entry's `p`
    keys renamed to the new id), atomically per dead letter; the thread's
    pending count is unchanged (it stays pending). `ids`: dead letter ids or
    outbox entry ids (`SHARD:ID` for one shard), or ALL: those there now,
    narrowed to one `thread`. An unknown id raises NotFoundError (an
    ambiguous one ConfigError) before anything changes.

    A retried entry lands after later entries of the same thread, so the
    order of the thread's entries changes: puts and writes are idempotent
    upserts keyed by checkpoint id (regular writes never overwrite), and the
    reconciler applies the entry like any other (its new id is above the
    thread's durable watermark), so this is safe. What would not be is
    refused, per dead letter, changing nothing:

    * a checkpoint or writes entry of a thread deleted after it was written
      (the thread's tombstone `<base>:x` is at or above its checkpoint id,
      which is not in Redis again): retrying it would bring the deleted
      checkpoint back in the durable store. The tombstone lives 7 days, as
      the saver's own late-writer check;
    * a delete entry of a thread written since (its namespace set exists):
      the delete would now also erase those later checkpoints;
    * an upsert that Redis holds a newer value of (the same checkpoint id
      put again with another record, a special write of the same task and
      index written again): it would overwrite the newer one;
    * an entry that names no thread (undecodable) or that lies in another
      shard than its thread maps to (--shards differs from the savers').
    """
    script = hot.redis.register_script(source("dead_letter_retry"))
    out: list[Outcome] = []
    async for page in _selected(hot, ids, thread):
        movable = []
        for raw in page:
            why = _unmovable(hot, raw)
            if why is None:
                movable.append(raw)
            else:
                out.append(_outcome(raw, "refused", f"refused: {why}"))
        calls = [
            (
                [
                    hot.base(r.thread_id or ""),
                    hot.keys.outboxes[r.shard],
                    hot.keys.dead[r.shard],
                    hot.keys.dead_index[r.shard],
                ],
                [r.dead_id],
            )
            for r in movable
        ]
        for raw, reply in zip(movable, await _run_scripts(hot, script, calls), strict=True):
            status, *rest = [as_text(x) for x in reply]
            out.append(_retried(raw, status, rest))
    return out


def _retried(raw: Raw, status: str, rest: list[str]) -> Outcome:
    if status == "ok":
        o = _outcome(raw, "retried", f"back in the outbox of shard {raw.shard} as {rest[0]}")
        o.new_outbox_id = rest[0]
        return o
    if status == "gone":
        return _outcome(raw, "gone", "gone: retried or dropped meanwhile")
    if status == "deleted":
        why = (
            f"thread {raw.thread_id!r} was deleted after this entry was written (tombstone "
            f"{rest[0]}): retrying the {_what(raw)} would bring it back in the durable "
            "store; drop it"
        )
    elif status == "superseded":
        why = (
            f"the thread's {rest[0]} was written again since (Redis holds a newer value of "
            f"it): retrying the {_what(raw)} would overwrite that in the durable store "
            "with this older one; drop it (the newer value reaches the store on its own)"
        )
    elif status == "written":
        why = (
            f"thread {raw.thread_id!r} was written after this delete: retrying it now "
            "would also delete those later checkpoints from the durable store; drop it "
            "(and delete the thread again if that is what you want)"
        )
    else:
        why = "the dead letter holds no entry fields; it can only be dropped"
    return _outcome(raw, "refused", f"refused: {why}")


async def drop(hot: HotTier, ids: Selection, *, thread: str | None = None) -> list[Outcome]:
    """Delete dead letters for good: the dead letter, its index field and an
    older entry's `p` keys, and uncount it from its thread's pending entries
    (as an applied entry is); a thread left with none gets its TTL and
    window now. What the entry held will NEVER be in the durable store:
    the thread's hot copy, once it expires, is all there was. `ids` as for
    `retry`; an unknown id raises NotFoundError before anything changes."""
    script = hot.redis.register_script(source("dead_letter_drop"))
    out: list[Outcome] = []
    async for page in _selected(hot, ids, thread):
        calls, todo = [], []
        for r in page:
            if r.thread_id is not None and hot.shard(r.thread_id) != r.shard:
                out.append(_outcome(r, "refused", f"refused: {_unmovable(hot, r)}"))
                continue
            counted = r.thread_id is not None
            keys = [
                hot.base(r.thread_id or "") if counted else hot.keys.dead[r.shard],
                hot.keys.dead[r.shard],
                hot.keys.dead_index[r.shard],
            ]
            calls.append((keys, [r.dead_id, "1" if counted else "0"]))
            todo.append(r)
        for raw, left in zip(todo, await _run_scripts(hot, script, calls), strict=True):
            n = int(left)
            if n < 0:
                out.append(_outcome(raw, "gone", "gone: retried or dropped meanwhile"))
                continue
            done = "dropped: it will never be durable"
            if raw.thread_id is not None and n:
                done += f"; {n} entries of the thread are still pending"
            elif raw.thread_id is not None:
                done += "; nothing of the thread is pending: its hot copy now expires with its TTL"
            o = _outcome(raw, "dropped", done)
            o.pending = n
            out.append(o)
    return out
