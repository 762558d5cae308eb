"""Reading dead letters: `list_dead_letters`, `find` and `show` (with the
entry decoded as the reconciler would apply it). Reading changes nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import Any

from langgraph_hybrid_saver.errors import ConfigError, CorruptDataError, NotFoundError
from langgraph_hybrid_saver.hot import HotTier
from langgraph_hybrid_saver.outbox.codec import decode_entry
from langgraph_hybrid_saver.outbox.deadletters.letters import (
    _ID,
    PAGE,
    DeadLetter,
    DeadLetterDetail,
    FieldView,
    Raw,
    as_text,
    stream_ms,
    stream_order,
)
from langgraph_hybrid_saver.outbox.ops import (
    DeleteThreadOp,
    Op,
    PutOp,
)
from langgraph_hybrid_saver.outbox.stream import Outbox


async def read_pages(hot: HotTier, shard: int, upto: str = "+") -> AsyncGenerator[list[Raw], None]:
    """The dead letters of a shard oldest first, PAGE at a time, up to `upto`
    (exclusive starts without '(' ranges, which need Redis 6.2)."""
    start = "-"
    while True:
        batch = await hot.redis.xrange(hot.keys.dead[shard], start, upto, count=PAGE)
        if not batch:
            return
        yield [Raw(shard, as_text(i), f) for i, f in batch]
        if len(batch) < PAGE:
            return
        ms, _, seq = as_text(batch[-1][0]).partition("-")
        start = f"{ms}-{int(seq) + 1}"


def shards_of(hot: HotTier, thread: str | None) -> list[int]:
    return list(range(hot.shards)) if thread is None else [hot.shard(thread)]


async def _read_all(hot: HotTier, thread: str | None, limit: int | None) -> list[Raw]:
    """Dead letters (of `thread`), oldest first; at most `limit`."""
    found: list[Raw] = []
    for shard in shards_of(hot, thread):
        kept = 0
        async with aclosing(read_pages(hot, shard)) as pages:
            async for page in pages:
                for raw in page:
                    if thread is None or raw.thread_id == thread:
                        found.append(raw)
                        kept += 1
                if limit is not None and kept >= limit:
                    break
    found.sort(key=lambda r: (stream_order(r.dead_id), r.shard))
    return found if limit is None else found[:limit]


async def _now_ms(hot: HotTier) -> int:
    sec, usec = await hot.redis.time()
    return int(sec) * 1000 + int(usec) // 1000


async def _large_sizes(hot: HotTier, raws: Sequence[Raw]) -> list[dict[bytes, int | None]]:
    """Per dead letter: large field -> bytes of its key (None: gone)."""
    keys = [
        [(f, k) for f in r.large_fields() if (k := r.large_key(hot, f)) is not None] for r in raws
    ]
    flat = [k for ks in keys for _, k in ks]
    sizes: list[int] = []
    if flat:
        async with hot.redis.pipeline(transaction=False) as pipe:
            for k in flat:
                pipe.exists(k)
                pipe.strlen(k)
            replies = await pipe.execute()
        sizes = [int(replies[i + 1]) if replies[i] else -1 for i in range(0, len(replies), 2)]
    found = iter(sizes)
    out = []
    for ks in keys:
        per: dict[bytes, int | None] = {}
        for f, _ in ks:
            n = next(found)
            per[f] = None if n < 0 else n
        out.append(per)
    return out


def _letter(raw: Raw, now_ms: int, large: dict[bytes, int | None]) -> DeadLetter:
    size = sum(len(k) + len(v) for k, v in raw.entry.items())
    size += sum(n or 0 for n in large.values())
    return DeadLetter(
        shard=raw.shard,
        dead_id=raw.dead_id,
        outbox_id=raw.outbox_id,
        thread_id=raw.thread_id,
        kind=raw.kind,
        checkpoint_ns=raw.text(b"n"),
        checkpoint_id=raw.text(b"c"),
        reason=as_text(raw.fields.get(b"reason", b"")),
        age_seconds=round(max(now_ms - stream_ms(raw.dead_id), 0) / 1000, 3),
        size=size,
    )


async def list_dead_letters(
    hot: HotTier, *, thread: str | None = None, limit: int | None = None
) -> list[DeadLetter]:
    """The dead letters (of `thread`), oldest first; at most `limit`."""
    return await letters_of(hot, await _read_all(hot, thread, limit))


async def find(hot: HotTier, ids: Sequence[str]) -> list[DeadLetter]:
    """The dead letters named by their own ids or their outbox entries' ids
    (see `resolve`). Raises NotFoundError naming the ids that are neither."""
    return await letters_of(hot, await resolve(hot, ids))


async def letters_of(hot: HotTier, raws: Sequence[Raw]) -> list[DeadLetter]:
    if not raws:
        return []
    now_ms = await _now_ms(hot)
    sizes = await _large_sizes(hot, raws)
    return [_letter(r, now_ms, s) for r, s in zip(raws, sizes, strict=True)]


def _parse_ids(hot: HotTier, ids: Sequence[str]) -> list[tuple[str, int | None, str]]:
    """(given, shard or None, stream id) of each distinct id."""
    if isinstance(ids, (str, bytes)):
        raise ConfigError(f"dead letter ids must be a list of ids or 'all', not {ids!r}")
    out = []
    for given in dict.fromkeys(ids):
        m = _ID.match(given)
        if m is None or (m[1] is not None and int(m[1]) >= hot.shards):
            raise ConfigError(
                f"{given!r} is not a dead letter id: ids look like 1712345678901-0 (a dead "
                "letter's id or its outbox entry's id), or 3:1712345678901-0 with the shard "
                f"(0 to {hot.shards - 1}), as `dead-letters list` shows them"
            )
        out.append((given, None if m[1] is None else int(m[1]), m[2]))
    return out


async def resolve(hot: HotTier, ids: Sequence[str]) -> list[Raw]:
    """The dead letters named by their own ids or their outbox entries' ids
    (`SHARD:ID` for one shard), in the order given, each once. Stream ids are
    per stream, so an id alone may name letters of several shards (or a
    letter and another's outbox entry): that is refused as ambiguous.
    Raises NotFoundError naming the ids that name nothing."""
    parsed = _parse_ids(hot, ids)
    if not parsed:
        return []
    sids = list(dict.fromkeys(sid for _, _, sid in parsed))
    async with hot.redis.pipeline(transaction=False) as pipe:
        for shard in range(hot.shards):
            pipe.hmget(hot.keys.dead_index[shard], sids)
            for sid in sids:
                pipe.xrange(hot.keys.dead[shard], sid, sid)
        replies = await pipe.execute()
    # stream id -> the letters it names: as a dead id, or through the index
    direct: dict[str, dict[int, Raw]] = {sid: {} for sid in sids}
    indexed: dict[tuple[int, str], str] = {}  # (shard, dead id) -> the outbox id naming it
    step = 1 + len(sids)
    for shard in range(hot.shards):
        for sid, dead_id in zip(sids, replies[shard * step], strict=True):
            if dead_id is not None:
                indexed[(shard, as_text(dead_id))] = sid
        for sid, found in zip(sids, replies[shard * step + 1 : (shard + 1) * step], strict=True):
            if found:
                direct[sid][shard] = Raw(shard, sid, found[0][1])
    via_index: dict[str, dict[int, Raw]] = {sid: {} for sid in sids}
    lookups = list(indexed.items())
    if lookups:
        async with hot.redis.pipeline(transaction=False) as pipe:
            for (shard, dead_id), _ in lookups:
                pipe.xrange(hot.keys.dead[shard], dead_id, dead_id)
            entries = await pipe.execute()
        for ((shard, dead_id), sid), found in zip(lookups, entries, strict=True):
            if found:  # else a stale index field: the letter is gone
                via_index[sid][shard] = Raw(shard, dead_id, found[0][1])
    out: dict[tuple[int, str], Raw] = {}
    missing = []
    for given, only, sid in parsed:
        if only is not None:  # one shard: its dead letter with this id first
            raw = direct[sid].get(only) or via_index[sid].get(only)
            if raw is None:
                missing.append(given)
            else:
                out.setdefault((raw.shard, raw.dead_id), raw)
            continue
        found = {(r.shard, r.dead_id): r for r in (*direct[sid].values(), *via_index[sid].values())}
        if not found:
            missing.append(given)
        elif len(found) > 1:
            named = ", ".join(f"{shard}:{dead_id}" for shard, dead_id in sorted(found))
            raise ConfigError(
                f"{given} names {len(found)} dead letters (stream ids are per shard): "
                f"{named}; name one as SHARD:ID (its shard and dead letter id)"
            )
        else:
            ((key, raw),) = found.items()
            out.setdefault(key, raw)
    if missing:
        raise NotFoundError(
            f"no dead letter has id {', '.join(missing)} (as its own id or its outbox "
            f"entry's) under key prefix {hot.prefix!r}: see `dead-letters list`"
        )
    return list(out.values())


async def show(hot: HotTier, dead_or_outbox_id: str) -> DeadLetterDetail:
    """One dead letter, by its id or its outbox entry's id (`SHARD:ID` when
    another shard has the same id), with its fields and the entry decoded as
    the reconciler would apply it (its large values read from their `p`
    keys). Raises NotFoundError for an unknown id, ConfigError for an
    ambiguous one."""
    (raw,) = await resolve(hot, [dead_or_outbox_id])
    now_ms = await _now_ms(hot)
    (sizes,) = await _large_sizes(hot, [raw])
    letter = _letter(raw, now_ms, sizes)
    views = []
    for name, value in raw.entry.items():
        shown = as_text(name).replace("\x00", "\\0")
        if name in sizes:
            n = sizes[name]
            views.append(
                FieldView(
                    shown, n or 0, None, as_text(raw.large_key(hot, name) or b""), missing=n is None
                )
            )
            continue
        text = None
        if name in (b"k", b"t", b"n", b"c", b"u"):
            text = as_text(value)
        views.append(FieldView(shown, len(value), text))
    operation, error = None, None
    try:
        large = (await Outbox(hot).large_values([(raw.outbox_id, raw.entry)]))[0]
        operation = _operation(decode_entry(raw.outbox_id, raw.entry, large))
    except (CorruptDataError, ValueError, TypeError) as e:
        error = str(e)
    return DeadLetterDetail(letter, views, operation, error)


def _operation(op: Op) -> dict[str, Any]:
    """A decoded entry as plain data: documents parsed, payloads as sizes."""
    if isinstance(op, DeleteThreadOp):
        return {"op": "delete", "thread_id": op.thread_id}
    if isinstance(op, PutOp):
        row = op.row
        return {
            "op": "checkpoint",
            "thread_id": row.thread_id,
            "checkpoint_ns": row.checkpoint_ns,
            "checkpoint_id": row.checkpoint_id,
            "parent_checkpoint_id": row.parent_checkpoint_id,
            "checkpoint": json.loads(row.checkpoint),
            "metadata": json.loads(row.metadata),
            "blobs": [
                {
                    "channel": b.channel,
                    "version": b.version,
                    "type": b.type,
                    "size": len(b.blob or b""),
                }
                for b in op.blobs
            ],
        }
    return {
        "op": "writes",
        "thread_id": op.thread_id,
        "checkpoint_ns": op.checkpoint_ns,
        "checkpoint_id": op.checkpoint_id,
        "upsert": op.upsert,
        "writes": [
            {
                "task_id": w.task_id,
                "idx": w.idx,
                "task_path": w.task_path,
                "channel": w.channel,
                "type": w.type,
                "size": len(w.blob),
            }
            for w in op.writes
        ],
    }
