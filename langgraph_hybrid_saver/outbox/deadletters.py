"""Dead letters: outbox entries that are not durable, for operators to list,
show, retry or drop (`langgraph-hybrid-saver dead-letters ...`).

The reconciler moves an outbox entry to its shard's dead-letter stream
(`Outbox.dead_letter`) when the durable store refuses its data or the entry
cannot be decoded, so that one bad entry never holds up the others. A dead
letter keeps every field of the entry (prefixed `entry:`), the entry's id
(`outbox_id`) and why (`reason`); the large values of a put stay in their
`<thread base>:p:<outbox id>:<field>` keys; and the entry still counts as
pending for its thread (`<thread base>:o`), so the thread's hot copy neither
expires nor is trimmed while something of it is not durable.

Each change here is one Lua script per dead letter, on keys of one shard
(one hash tag, one Redis Cluster slot):

* `retry` puts the entry back at the tail of its shard's outbox as a new
  entry with its original fields (its large values' keys renamed to the new
  id) and deletes the dead letter; the thread stays pending. The reconciler
  then applies it like any other entry (its new id is above the thread's
  durable watermark).
* `drop` deletes the dead letter and its large values and uncounts it from
  the thread's pending entries as an applied entry is (`hot._ACK`): a thread
  left with none gets the TTL and window held back. Its checkpoint (or
  writes, or delete) will never be durable.

Reading (`list_dead_letters`, `show`) changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from langgraph_hybrid_saver.core import DeleteThreadOp, Op, PutOp
from langgraph_hybrid_saver.errors import ConfigError, CorruptDataError, NotFoundError
from langgraph_hybrid_saver.hot import HotTier
from langgraph_hybrid_saver.hot.lua import source
from langgraph_hybrid_saver.outbox.codec import decode_entry
from langgraph_hybrid_saver.outbox.stream import Outbox

ALL: Literal["all"] = "all"
Selection = Sequence[str] | Literal["all"]

KINDS = {b"p": "checkpoint", b"w": "writes", b"d": "delete"}
PAGE = 200  # dead letters read (and changed) per round trip

_ID = re.compile(r"^(?:(\d+):)?(\d+-\d+)$")  # [shard:]stream id

# Shared by both scripts: the dead letter KEYS[dead] ARGV[1] as (outbox id,
# original fields in order, field -> value), or nil when it is gone.
_READ_LETTER = """
local function read_letter(stream, id)
  local e = redis.call('XRANGE', stream, id, id)[1]
  if not e then return nil end
  local old, entry, f = false, {}, {}
  local raw = e[2]
  for i = 1, #raw, 2 do
    local k, v = raw[i], raw[i + 1]
    if k == 'outbox_id' then old = v
    elseif string.sub(k, 1, 6) == 'entry:' then
      k = string.sub(k, 7)
      entry[#entry + 1] = k
      entry[#entry + 1] = v
      f[k] = v
    end
  end
  return old, entry, f
end
-- The fields of an entry whose values are in `p` keys of their own.
local function large_fields(entry)
  local out = {}
  for i = 1, #entry, 2 do
    local name = entry[i]
    if entry[i + 1] == '' and string.find(name, '\\0', 1, true) then out[#out + 1] = name end
  end
  return out
end
"""

# KEYS: thread base, outbox, dead-letter stream, dead-letter index (one
# shard). ARGV: dead letter id. Returns {'ok', new entry id}, {'gone'},
# {'empty'}, {'deleted', tombstone}, {'written'} or {'superseded', what}; only
# 'ok' changes anything.
_RETRY = (
    source("prelude")
    + _READ_LETTER
    + """
local old, entry, f = read_letter(KEYS[3], ARGV[1])
if old == nil then return {'gone'} end
if not old or #entry == 0 then return {'empty'} end
if f['k'] == 'd' then
  -- The delete cleared the thread's hot keys (its namespace set with them):
  -- a namespace set now means the thread was written after the delete.
  if redis.call('EXISTS', base .. ':n') == 1 then return {'written'} end
elseif f['c'] then
  -- As check_tombstone: a checkpoint at or below the tombstone of a later
  -- delete, unless it is in Redis (written again since), was deleted.
  local t = redis.call('GET', base .. ':x')
  if t and f['c'] <= t and not redis.call('ZSCORE', nk('i', f['n'] or ''), f['c']) then
    return {'deleted', t}
  end
end
-- Upserts land last: one Redis holds a newer value of (a newer put of the
-- same checkpoint id, a special write of the same task and index) would be
-- overwritten in the durable store by this older one.
if f['k'] == 'p' and f['n'] and f['c'] then
  local cur, rec = redis.call('HGET', nk('c', f['n']), f['c']), f['R'] or f['r']
  if cur and rec and cur ~= rec then return {'superseded', 'checkpoint'} end
elseif f['k'] == 'w' and f['u'] == '1' and f['n'] then
  for i = 1, #entry, 2 do
    if string.find(entry[i], '\\0', 1, true) then
      local cur = redis.call('HGET', nk('w', f['n']), entry[i])
      if cur and cur ~= entry[i + 1] then return {'superseded', 'special write'} end
    end
  end
end
local id = redis.call('XADD', KEYS[2], '*', unpack(entry))
for _, name in ipairs(large_fields(entry)) do
  local pk = base .. ':p:' .. old .. ':' .. name
  if redis.call('EXISTS', pk) == 1 then
    redis.call('RENAME', pk, base .. ':p:' .. id .. ':' .. name)
  end
end
redis.call('XDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], old)
return {'ok', id}
"""
)

# KEYS: thread base (the dead-letter stream when the entry names no thread),
# dead-letter stream, dead-letter index. ARGV: dead letter id, '1' when the
# entry names a thread. Deletes the dead letter and its large values and
# uncounts it from the thread's pending entries as `_ACK` does. Returns -1
# when the dead letter is gone, else the thread's entries still pending.
_DROP = (
    source("prelude")
    + _READ_LETTER
    + """
local old, entry, f = read_letter(KEYS[2], ARGV[1])
if old == nil then return -1 end
redis.call('XDEL', KEYS[2], ARGV[1])
if old then redis.call('HDEL', KEYS[3], old) end
if ARGV[2] ~= '1' then return 0 end
if old then
  for _, name in ipairs(large_fields(entry)) do
    redis.call('DEL', base .. ':p:' .. old .. ':' .. name)
  end
end
local left = redis.call('HINCRBY', base .. ':o', 'n', -1)
if left <= 0 then
  settle()
  return 0
end
return left
"""
)


def _s(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _ms(stream_id: str) -> int:
    return int(stream_id.partition("-")[0])


def _order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(slots=True)
class DeadLetter:
    """One dead letter, as `list` shows it."""

    shard: int
    dead_id: str  # its id in the shard's dead-letter stream
    outbox_id: str  # the id the entry had in the outbox
    thread_id: str | None  # None: the entry names none (undecodable)
    kind: str  # "checkpoint", "writes", "delete" or "unknown"
    checkpoint_ns: str | None
    checkpoint_id: str | None
    reason: str
    age_seconds: float  # since it was dead-lettered (Redis time)
    size: int  # bytes of the entry's fields and values, large values included

    @property
    def ref(self) -> str:
        """SHARD:DEAD_ID, which names it unambiguously (stream ids are per shard)."""
        return f"{self.shard}:{self.dead_id}"

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, **asdict(self)}


@dataclass(slots=True)
class FieldView:
    """One field of the original entry, printable."""

    name: str  # NUL (between a channel and its version) shown as "\\0"
    size: int  # bytes of the value (of the large value, when it has its own key)
    value: str | None  # the text of short text fields; None for binary payloads
    large_key: str | None = None  # the `p` key holding the value
    missing: bool = False  # that key is gone: the entry cannot be applied whole


@dataclass(slots=True)
class DeadLetterDetail:
    """One dead letter with its entry decoded where possible (`show`)."""

    letter: DeadLetter
    fields: list[FieldView]
    operation: dict[str, Any] | None  # the decoded entry; None when it cannot be
    decode_error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.letter.to_json(),
            "fields": [asdict(f) for f in self.fields],
            "operation": self.operation,
            "decode_error": self.decode_error,
        }


@dataclass(slots=True)
class Outcome:
    """What `retry` or `drop` did to one dead letter."""

    dead_id: str
    outbox_id: str
    shard: int
    thread_id: str | None
    kind: str
    checkpoint_id: str | None
    status: str  # "retried", "dropped", "refused" or "gone" (retried or dropped meanwhile)
    message: str
    new_outbox_id: str | None = None  # retried: its id in the outbox now
    pending: int | None = None  # dropped: the thread's entries still pending

    @property
    def ref(self) -> str:
        return f"{self.shard}:{self.dead_id}"

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, **asdict(self)}


@dataclass(slots=True)
class _Raw:
    """A dead letter as read: its stream position and fields."""

    shard: int
    dead_id: str
    fields: dict[bytes, bytes]
    entry: dict[bytes, bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.entry = {k[6:]: v for k, v in self.fields.items() if k.startswith(b"entry:")}

    @property
    def outbox_id(self) -> str:
        return _s(self.fields.get(b"outbox_id", b""))

    @property
    def thread_id(self) -> str | None:
        t = self.entry.get(b"t")
        return None if t is None else _s(t)

    def text(self, name: bytes) -> str | None:
        v = self.entry.get(name)
        return None if v is None else _s(v)

    @property
    def kind(self) -> str:
        return KINDS.get(self.entry.get(b"k", b""), "unknown")

    def large_fields(self) -> list[bytes]:
        """The fields whose values are in `p` keys of their own."""
        return [f for f, v in self.entry.items() if v == b"" and b"\x00" in f]

    def p_key(self, hot: HotTier, name: bytes) -> bytes:
        assert self.thread_id is not None
        return f"{hot.base(self.thread_id)}:p:{self.outbox_id}:".encode() + name


# --- reading ----------------------------------------------------------------------


async def _pages(hot: HotTier, shard: int, upto: str = "+") -> AsyncGenerator[list[_Raw], None]:
    """The dead letters of a shard oldest first, PAGE at a time, up to `upto`
    (exclusive starts without '(' ranges, which need Redis 6.2)."""
    start = "-"
    while True:
        batch = await hot.redis.xrange(hot.keys.dead[shard], start, upto, count=PAGE)
        if not batch:
            return
        yield [_Raw(shard, _s(i), f) for i, f in batch]
        if len(batch) < PAGE:
            return
        ms, _, seq = _s(batch[-1][0]).partition("-")
        start = f"{ms}-{int(seq) + 1}"


def _shards(hot: HotTier, thread: str | None) -> list[int]:
    return list(range(hot.shards)) if thread is None else [hot.shard(thread)]


async def _read_all(hot: HotTier, thread: str | None, limit: int | None) -> list[_Raw]:
    """Dead letters (of `thread`), oldest first; at most `limit`."""
    found: list[_Raw] = []
    for shard in _shards(hot, thread):
        kept = 0
        async with aclosing(_pages(hot, shard)) as pages:
            async for page in pages:
                for raw in page:
                    if thread is None or raw.thread_id == thread:
                        found.append(raw)
                        kept += 1
                if limit is not None and kept >= limit:
                    break
    found.sort(key=lambda r: (_order(r.dead_id), r.shard))
    return found if limit is None else found[:limit]


async def _now_ms(hot: HotTier) -> int:
    sec, usec = await hot.redis.time()
    return int(sec) * 1000 + int(usec) // 1000


async def _large_sizes(hot: HotTier, raws: Sequence[_Raw]) -> list[dict[bytes, int | None]]:
    """Per dead letter: large field -> bytes of its `p` key (None: gone)."""
    keys = [[(f, r.p_key(hot, f)) for f in r.large_fields()] if r.thread_id else [] for r in raws]
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


def _letter(raw: _Raw, now_ms: int, large: dict[bytes, int | None]) -> DeadLetter:
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
        reason=_s(raw.fields.get(b"reason", b"")),
        age_seconds=round(max(now_ms - _ms(raw.dead_id), 0) / 1000, 3),
        size=size,
    )


async def list_dead_letters(
    hot: HotTier, *, thread: str | None = None, limit: int | None = None
) -> list[DeadLetter]:
    """The dead letters (of `thread`), oldest first; at most `limit`."""
    return await _letters(hot, await _read_all(hot, thread, limit))


async def find(hot: HotTier, ids: Sequence[str]) -> list[DeadLetter]:
    """The dead letters named by their own ids or their outbox entries' ids
    (see `_resolve`). Raises NotFoundError naming the ids that are neither."""
    return await _letters(hot, await _resolve(hot, ids))


async def _letters(hot: HotTier, raws: Sequence[_Raw]) -> list[DeadLetter]:
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


async def _resolve(hot: HotTier, ids: Sequence[str]) -> list[_Raw]:
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
    direct: dict[str, dict[int, _Raw]] = {sid: {} for sid in sids}
    indexed: dict[tuple[int, str], str] = {}  # (shard, dead id) -> the outbox id naming it
    step = 1 + len(sids)
    for shard in range(hot.shards):
        for sid, dead_id in zip(sids, replies[shard * step], strict=True):
            if dead_id is not None:
                indexed[(shard, _s(dead_id))] = sid
        for sid, found in zip(sids, replies[shard * step + 1 : (shard + 1) * step], strict=True):
            if found:
                direct[sid][shard] = _Raw(shard, sid, found[0][1])
    via_index: dict[str, dict[int, _Raw]] = {sid: {} for sid in sids}
    lookups = list(indexed.items())
    if lookups:
        async with hot.redis.pipeline(transaction=False) as pipe:
            for (shard, dead_id), _ in lookups:
                pipe.xrange(hot.keys.dead[shard], dead_id, dead_id)
            entries = await pipe.execute()
        for ((shard, dead_id), sid), found in zip(lookups, entries, strict=True):
            if found:  # else a stale index field: the letter is gone
                via_index[sid][shard] = _Raw(shard, dead_id, found[0][1])
    out: dict[tuple[int, str], _Raw] = {}
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
    (raw,) = await _resolve(hot, [dead_or_outbox_id])
    now_ms = await _now_ms(hot)
    (sizes,) = await _large_sizes(hot, [raw])
    letter = _letter(raw, now_ms, sizes)
    views = []
    for name, value in raw.entry.items():
        shown = _s(name).replace("\x00", "\\0")
        if name in sizes:
            n = sizes[name]
            views.append(
                FieldView(shown, n or 0, None, _s(raw.p_key(hot, name)), missing=n is None)
            )
            continue
        text = None
        if name in (b"k", b"t", b"n", b"c", b"u"):
            text = _s(value)
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


# --- changing -----------------------------------------------------------------


async def _selected(hot: HotTier, ids: Selection, thread: str | None) -> AsyncIterator[list[_Raw]]:
    """The dead letters to change, a page at a time. With "all": those there
    now (of `thread`), never ones dead-lettered while this runs (a retried
    entry refused again must not be retried in a loop)."""
    if ids != ALL:
        if thread is not None:
            raise ConfigError("thread selects dead letters only with 'all', not with ids")
        raws = await _resolve(hot, ids)
        for i in range(0, len(raws), PAGE):
            yield raws[i : i + PAGE]
        return
    for shard in _shards(hot, thread):
        newest = await hot.redis.xrevrange(hot.keys.dead[shard], count=1)
        if not newest:
            continue
        async for page in _pages(hot, shard, _s(newest[0][0])):
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


def _outcome(raw: _Raw, status: str, message: str) -> Outcome:
    return Outcome(
        raw.dead_id, raw.outbox_id, raw.shard, raw.thread_id, raw.kind, raw.text(b"c"),
        status, message,
    )  # fmt: skip


def _what(raw: _Raw) -> str:
    if raw.kind == "delete":
        return f"delete of thread {raw.thread_id!r}"
    what = {"checkpoint": "checkpoint", "writes": "pending writes of checkpoint"}.get(
        raw.kind, "entry of checkpoint"
    )
    return f"{what} {raw.text(b'c')!r} (thread {raw.thread_id!r}, namespace {raw.text(b'n')!r})"


def _unmovable(hot: HotTier, raw: _Raw) -> str | None:
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
    stream as a new entry with its original fields (its large values' `p`
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
    script = hot.redis.register_script(_RETRY)
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
            status, *rest = [_s(x) for x in reply]
            out.append(_retried(raw, status, rest))
    return out


def _retried(raw: _Raw, status: str, rest: list[str]) -> Outcome:
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
    """Delete dead letters for good: the dead letter, its index field and its
    large values' `p` keys, and uncount it from its thread's pending entries
    (as an applied entry is); a thread left with none gets its TTL and
    window now. What the entry held will NEVER be in the durable store:
    the thread's hot copy, once it expires, is all there was. `ids` as for
    `retry`; an unknown id raises NotFoundError before anything changes."""
    script = hot.redis.register_script(_DROP)
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
