"""The hot tier: checkpoints in plain Redis (>= 6) or Valkey, no modules.

Layout (LAYOUT_VERSION in every key, so a later layout can migrate). A thread
is assigned to one of `shards` hash tags by crc32; every key of the thread and
the outbox stream of its shard carry that tag, so each Lua script touches one
slot and works on Redis Cluster.

    {prefix}:v1:{<shard>}:<len>:<thread_id>           thread base
      base:n                  set     namespaces of the thread
      base:g                  string  generation, bumped by delete/invalidate
      base:L / base:T         string  per-thread lease "token|owner" / token counter
      base:x                  string  tombstone of the last delete (a checkpoint id)
      base:i:<len>:<ns>       zset    checkpoint ids (score 0, ordered by id)
      base:c:<len>:<ns>       hash    checkpoint id -> record
      base:b:<len>:<ns>       hash    channel NUL version -> type NUL blob, or '' when
                                      the value is large and in a key of its own:
      base:v:<len>:<ns>:<field>  string  a large blob value (type NUL blob)
      base:V:<len>:<ns>       set     the fields whose values are in such keys
      base:p:<entry id>:<field>  string  a large value of an outbox entry, until applied
      base:w:<len>:<ns>       hash    checkpoint id NUL task NUL idx -> write
      base:z:<len>:<ns>       zset    the same write fields, for a range by id
      base:f:<len>:<ns>       string  set while Redis holds every checkpoint of the ns
    {prefix}:v1:{<shard>}:outbox    stream  entries not yet in the durable store
    {prefix}:v1:lease:<shard>       string  the reconciler that owns the shard
    {prefix}:v1:meta                hash    layout facts every process must share

The keys of one (thread, namespace) are written together and expire
together, so a namespace is either hot as a whole or read from the durable
store (a large value's key expires on its own once no newer checkpoint uses
it; a read that misses it reads that value from the durable store).

Large values (PIN_MIN_BYTES and more) never pass through Lua, where turning
a 140 KB argument into a Lua string costs Redis more than storing it: `put`
sends each one in a plain SET to a temporary key in the MULTI that runs the
put script, and the script COPYs it to its `v` key and RENAMEs it to the
outbox entry's `p` key (no TTL; the reconciler deletes it with the entry).

A record is msgpack [checkpoint json, metadata json, parent, blob fields].
Lengths are UTF-8 byte lengths (Lua's `#`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ormsgpack
from langgraph.checkpoint.base.id import uuid6
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError, ResponseError

from langgraph_hybrid_saver.core import (
    BlobRow,
    CheckpointRow,
    DeleteThreadOp,
    Op,
    PutOp,
    StoredCheckpoint,
    WriteRow,
    WritesOp,
    blob_field,
    seq_key,
)
from langgraph_hybrid_saver.errors import (
    ConfigError,
    CorruptDataError,
    SerializationError,
    ThreadBusyError,
    ThreadDeletedError,
)
from langgraph_hybrid_saver.lanes import LaneBroken, Lanes

logger = logging.getLogger("langgraph_hybrid_saver.hot")

LAYOUT_VERSION = "v1"
DEFAULT_PREFIX = "lhs"
DEFAULT_SHARDS = 16
DEFAULT_MAX_BULK = 512 * 1024 * 1024  # Redis' proto-max-bulk-len default
# A blob value this large goes beside the put script, not through it (a
# `pinned` experiment measures both ways).
PIN_MIN_BYTES = 16 * 1024
DEAD_WARN_INTERVAL = 60.0  # seconds between reports of one thread's dead letters
_TEMP_TTL_MS = 600_000  # a temporary key the put script did not consume (it crashed)

# Shared helpers for every script: key names and chunked HMGET/HSET (Lua's
# unpack() has a stack limit of a few thousand values).
_LUA_PRELUDE = """
local base = KEYS[1]
local function nk(kind, ns) return base .. ':' .. kind .. ':' .. #ns .. ':' .. ns end
local function call_chunked(cmd, key, list, first, last, step)
  local out = {}
  for i = first, last, step do
    local j = math.min(i + step - 1, last)
    local r = redis.call(cmd, key, unpack(list, i, j))
    if type(r) == 'table' then for _, v in ipairs(r) do out[#out + 1] = v end end
  end
  return out
end
-- A thread's outbox entries not yet in the durable store (`base:o` field n,
-- beside the ttl t and window w the ack applies once n is back to 0): while
-- there are any, its hot keys carry no TTL and no window trims them, so what
-- was acknowledged stays readable until it is durable.
local function pending()
  return tonumber(redis.call('HGET', base .. ':o', 'n') or '0') > 0
end
-- Start (or refresh) a key's TTL, unless the thread has pending entries.
local function keep(key, ttl, held)
  if ttl <= 0 then return end
  if held then redis.call('PERSIST', key) else redis.call('PEXPIRE', key, ttl) end
end
local function expire_ns(ns, ttl)
  if ttl > 0 then
    local held = pending()
    for _, k in ipairs({'i', 'c', 'b', 'w', 'z', 'f', 'V'}) do keep(nk(k, ns), ttl, held) end
    keep(base .. ':n', ttl, held)
  end
end
-- How many of the thread's entries wait in the dead-letter stream (field d).
local function dead_letters() return tonumber(redis.call('HGET', base .. ':o', 'd') or '0') end
-- Count an outbox entry of the thread as pending (the ack script uncounts it).
local function enqueue(ttl, window)
  redis.call('HINCRBY', base .. ':o', 'n', 1)
  if ttl then redis.call('HSET', base .. ':o', 't', ttl, 'w', window) end
end
-- Fencing: while a thread is leased, only the current token may write; a
-- writer carrying a token that is no longer the lease's (it expired, was
-- taken over, maybe released since) may not write at all.
local function check_lease(tok)
  local lease = redis.call('GET', base .. ':L')
  if lease then
    if string.sub(lease, 1, #tok + 1) ~= tok .. '|' then
      return redis.error_reply('LEASED ' .. lease)
    end
  elseif tok ~= '' then
    return redis.error_reply('LEASED by nobody: token ' .. tok .. ' expired')
  end
end
-- A write naming a checkpoint of a deleted generation (a late writer that
-- still holds a pre-delete config) must not bring the thread back.
local function check_tombstone(ns, ref)
  if ref == '' then return end
  local t = redis.call('GET', base .. ':x')
  if t and ref <= t and not redis.call('ZSCORE', nk('i', ns), ref) then
    return redis.error_reply('DELETED ' .. t)
  end
end
local function large_key(ns, f) return nk('v', ns) .. ':' .. f end
-- The blob values a record refers to (a corrupt record: none; the client
-- names the key in its error); a large value from its own key.
local function read_blobs(ns, rec, ttl)
  local ok, r = pcall(cmsgpack.unpack, rec)
  local fields = ok and type(r) == 'table' and r[4] or {}
  if #fields == 0 then return {} end
  local values = call_chunked('HMGET', nk('b', ns), fields, 1, #fields, 4000)
  local held = ttl > 0 and pending()
  for i, v in ipairs(values) do
    if v == '' then
      local lk = large_key(ns, fields[i])
      values[i] = redis.call('GET', lk)
      keep(lk, ttl, held)
    end
  end
  return values
end
-- A blob value no longer stored as a large value of its own.
local function drop_large(ns, f)
  if redis.call('SREM', nk('V', ns), f) == 1 then redis.call('DEL', large_key(ns, f)) end
end
local function read_writes(ns, cid)
  local fields = redis.call('ZRANGEBYLEX', nk('z', ns), '[' .. cid .. '\\0', '(' .. cid .. '\\1')
  if #fields == 0 then return {} end
  return call_chunked('HMGET', nk('w', ns), fields, 1, #fields, 4000)
end
-- Keep only the newest `window` checkpoints of a namespace: older records,
-- their writes and the blobs only they use leave Redis. Called only when the
-- thread has no pending entry, so everything dropped is durable.
local function trim_ns(ns, window)
  local ik, ck, bk = nk('i', ns), nk('c', ns), nk('b', ns)
  local over = window > 0 and redis.call('ZCARD', ik) - window or 0
  if over <= 0 then return end
  local old = redis.call('ZRANGE', ik, 0, over - 1)
  redis.call('ZREMRANGEBYRANK', ik, 0, over - 1)
  redis.call('DEL', nk('f', ns))
  -- Channel versions only grow along a thread, so a blob the oldest kept
  -- checkpoint does not use is not used by a newer one either.
  local keep_f = {}
  local newest = redis.call('ZRANGE', ik, -1, -1)[1]
  for _, kept in ipairs({redis.call('ZRANGE', ik, 0, 0)[1], newest}) do
    local r = redis.call('HGET', ck, kept)
    if r then for _, f in ipairs(cmsgpack.unpack(r)[4]) do keep_f[f] = true end end
  end
  for _, gone in ipairs(old) do
    local r = redis.call('HGET', ck, gone)
    if r then
      for _, f in ipairs(cmsgpack.unpack(r)[4]) do
        if not keep_f[f] then
          redis.call('HDEL', bk, f)
          drop_large(ns, f)
        end
      end
    end
    redis.call('HDEL', ck, gone)
    local wf = redis.call('ZRANGEBYLEX', nk('z', ns), '[' .. gone .. '\\0', '(' .. gone .. '\\1')
    if #wf > 0 then
      call_chunked('HDEL', nk('w', ns), wf, 1, #wf, 4000)
      redis.call('ZREMRANGEBYLEX', nk('z', ns), '[' .. gone .. '\\0', '(' .. gone .. '\\1')
    end
  end
end
-- The thread's last pending entry is durable: apply the window and the TTL
-- (of the saver that wrote it) that were held back while entries were pending.
local function settle()
  if pending() then return end
  local o = redis.call('HMGET', base .. ':o', 't', 'w')
  redis.call('DEL', base .. ':o')
  local ttl, window = tonumber(o[1] or '0'), tonumber(o[2] or '0')
  for _, ns in ipairs(redis.call('SMEMBERS', base .. ':n')) do
    trim_ns(ns, window)
    expire_ns(ns, ttl)
    for _, f in ipairs(redis.call('SMEMBERS', nk('V', ns))) do
      keep(large_key(ns, f), ttl, false)
    end
  end
end
"""

# KEYS: base, outbox. ARGV: ttl, window, lease token, thread_id, ns, cid,
# record, parent id or '', n, n blob fields that must already be stored, the
# large values ('' or msgpack [field, temporary key, ...]: values SET in the
# same MULTI), blob field/value pairs. Returns the entry id, or the list of
# required fields that are missing (then nothing is written). With a window,
# only the newest `window` checkpoints of the namespace stay hot: older
# records, their writes and the blobs only they used are dropped from Redis
# once the durable store has them (here when nothing of the thread was
# pending, else by the ack that empties its backlog). Whatever it returns, no
# temporary key is left.
_PUT = (
    _LUA_PRELUDE
    + """
local ttl, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local tid, ns, cid, rec, parent = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local nc = tonumber(ARGV[9])
local large = {}
if ARGV[10 + nc] ~= '' then large = cmsgpack.unpack(ARGV[10 + nc]) end
local function refuse(reply)
  for i = 2, #large, 2 do redis.call('DEL', large[i]) end
  return reply
end
local denied = check_lease(ARGV[3]) or check_tombstone(ns, parent)
if denied then return refuse(denied) end
local ik, ck, bk = nk('i', ns), nk('c', ns), nk('b', ns)
-- Unchanged channels must still be stored: after a Redis restart a value
-- that was only in the lost outbox is gone, and the caller must send it again.
-- A large one is kept as long as the namespace while checkpoints use it.
local missing = {}
local unchanged_large = {}
for i = 10, 9 + nc do
  local f = ARGV[i]
  if redis.call('HSTRLEN', bk, f) == 0 then  -- absent, or a large value
    local lk = large_key(ns, f)
    if redis.call('EXISTS', lk) == 0 then missing[#missing + 1] = f
    else unchanged_large[#unchanged_large + 1] = lk end
  end
end
if #missing > 0 then return refuse(missing) end
local first = 11 + nc
-- Trimming to the window only drops durable checkpoints: with no entry of the
-- thread pending before this put, every checkpoint already in Redis is one.
local durable_before = not pending()
enqueue(ttl, window)
for _, lk in ipairs(unchanged_large) do keep(lk, ttl, true) end
-- A namespace that starts here, with its root checkpoint, is complete in
-- Redis: `list` need not ask the durable store while this flag lives.
if parent == '' and redis.call('EXISTS', ik) == 0 then redis.call('SET', nk('f', ns), '1') end
redis.call('ZADD', ik, 0, cid)
redis.call('HSET', ck, cid, rec)
redis.call('SADD', base .. ':n', ns)
if #ARGV >= first then call_chunked('HSET', bk, ARGV, first, #ARGV, 4000) end
-- A put with large values names its record 'R': a reconciler that predates
-- them cannot decode it and dead-letters it instead of applying it without them.
local entry = {'k', 'p', 't', tid, 'n', ns, 'c', cid, #large > 0 and 'R' or 'r', rec}
for i = first, #ARGV do entry[#entry + 1] = ARGV[i] end
for i = 1, #large, 2 do
  local f, lk = large[i], large_key(ns, large[i])
  redis.call('COPY', large[i + 1], lk, 'REPLACE')
  redis.call('PERSIST', lk)
  redis.call('HSET', bk, f, '')
  redis.call('SADD', nk('V', ns), f)
  entry[#entry + 1] = f
  entry[#entry + 1] = ''
end
local id = redis.call('XADD', KEYS[2], '*', unpack(entry))
for i = 1, #large, 2 do
  local pk = base .. ':p:' .. id .. ':' .. large[i]
  redis.call('RENAME', large[i + 1], pk)
  redis.call('PERSIST', pk)
end
if durable_before then trim_ns(ns, window) end
expire_ns(ns, ttl)
return id
"""
)

# KEYS: base, outbox. ARGV: ttl, window, lease token, thread_id, ns, cid,
# upsert, field/value pairs.
# Regular writes never overwrite (HSETNX), special ones do, like PostgresSaver.
_PUT_WRITES = (
    _LUA_PRELUDE
    + """
local ttl, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local denied = check_lease(ARGV[3])
if denied then return denied end
local tid, ns, cid, upsert = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
denied = check_tombstone(ns, cid)
if denied then return denied end
local wk, zk = nk('w', ns), nk('z', ns)
for i = 8, #ARGV, 2 do
  if upsert == '1' then redis.call('HSET', wk, ARGV[i], ARGV[i + 1])
  else redis.call('HSETNX', wk, ARGV[i], ARGV[i + 1]) end
  redis.call('ZADD', zk, 0, ARGV[i])
end
redis.call('SADD', base .. ':n', ns)
enqueue(ttl, window)
local entry = {'k', 'w', 't', tid, 'n', ns, 'c', cid, 'u', upsert}
for i = 8, #ARGV do entry[#entry + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[2], '*', unpack(entry))
expire_ns(ns, ttl)
return id
"""
)

# KEYS: base, outbox. ARGV: ttl, window, lease token, thread_id, msgpack list of
# [ns, cid, record, [blob field, value, ...], [write field, value, ...]].
# A whole thread copied in one atomic step: the target is never half-copied.
_COPY = (
    _LUA_PRELUDE
    + """
local ttl, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local denied = check_lease(ARGV[3])
if denied then return denied end
local tid, last = ARGV[4], false
for _, it in ipairs(cmsgpack.unpack(ARGV[5])) do
  local ns, cid, rec, bp, wp = it[1], it[2], it[3], it[4], it[5]
  redis.call('ZADD', nk('i', ns), 0, cid)
  redis.call('HSET', nk('c', ns), cid, rec)
  redis.call('SADD', base .. ':n', ns)
  if #bp > 0 then call_chunked('HSET', nk('b', ns), bp, 1, #bp, 4000) end
  local entry = {'k', 'p', 't', tid, 'n', ns, 'c', cid, 'r', rec}
  for _, v in ipairs(bp) do entry[#entry + 1] = v end
  enqueue(ttl, window)
  last = redis.call('XADD', KEYS[2], '*', unpack(entry))
  if #wp > 0 then
    call_chunked('HSET', nk('w', ns), wp, 1, #wp, 4000)
    local w = {'k', 'w', 't', tid, 'n', ns, 'c', cid, 'u', '1'}
    for i = 1, #wp, 2 do
      redis.call('ZADD', nk('z', ns), 0, wp[i])
      w[#w + 1] = wp[i]
      w[#w + 1] = wp[i + 1]
    end
    enqueue(ttl, window)
    last = redis.call('XADD', KEYS[2], '*', unpack(w))
  end
  expire_ns(ns, ttl)
end
return last
"""
)

# KEYS: base. ARGV: ns, cid or '', ttl to refresh (0: none).
# Returns {cid|false, record|false, blob values, write values, generation}.
_GET = (
    _LUA_PRELUDE
    + """
local ns, cid, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local gen = redis.call('GET', base .. ':g') or '0'
local dead = dead_letters()
if cid == '' then
  local top = redis.call('ZREVRANGEBYLEX', nk('i', ns), '+', '-', 'LIMIT', 0, 1)
  if #top == 0 then return {false, false, {}, {}, gen, dead} end
  cid = top[1]
end
local rec = redis.call('HGET', nk('c', ns), cid)
local blobs = {}
if rec then
  blobs = read_blobs(ns, rec, ttl)
  expire_ns(ns, ttl)
end
return {cid, rec, blobs, read_writes(ns, cid), gen, dead}
"""
)

# KEYS: base. ARGV: all namespaces ('1') or one ('0'), ns, checkpoint id or
# '', before or '', limit (0: all), ttl to refresh (0: none). The newest
# `limit` checkpoints of the thread (or namespace), each whole as `_GET`
# reads it: {complete, generation, {{ns, id, record, blobs, writes}, ...}};
# `complete` = 1 when Redis holds every checkpoint the query can match.
_LIST_FULL = (
    _LUA_PRELUDE
    + """
local cid, before, limit, ttl = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local gen = redis.call('GET', base .. ':g') or '0'
local nss = {ARGV[2]}
if ARGV[1] == '1' then nss = redis.call('SMEMBERS', base .. ':n') end
local complete = #nss > 0 and 1 or 0
local hi = '+'
if before ~= '' then hi = '(' .. before end
local found = {}
for _, ns in ipairs(nss) do
  local ik, ids = nk('i', ns), {}
  if cid ~= '' then
    if redis.call('ZSCORE', ik, cid) and (before == '' or cid < before) then ids = {cid} end
  elseif limit > 0 then ids = redis.call('ZREVRANGEBYLEX', ik, hi, '-', 'LIMIT', 0, limit)
  else ids = redis.call('ZREVRANGEBYLEX', ik, hi, '-') end
  if redis.call('EXISTS', nk('f', ns)) == 0 then complete = 0 end
  for _, id in ipairs(ids) do found[#found + 1] = {id, ns} end
end
table.sort(found, function(a, b) return a[1] > b[1] end)
local out = {}
for _, f in ipairs(found) do
  if limit > 0 and #out >= limit then break end
  local id, ns = f[1], f[2]
  local rec = redis.call('HGET', nk('c', ns), id)
  if rec then out[#out + 1] = {ns, id, rec, read_blobs(ns, rec, ttl), read_writes(ns, id)}
  else complete = 0 end  -- a record evicted alone: the durable store has it
end
if ttl > 0 then for _, ns in ipairs(nss) do expire_ns(ns, ttl) end end
return {complete, gen, out, dead_letters()}
"""
)

# KEYS: base. ARGV: ns, before or '', limit (0: all). Records newest first,
# and whether the namespace is complete in Redis.
_LIST = (
    _LUA_PRELUDE
    + """
local ns, before, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local hi = '+'
if before ~= '' then hi = '(' .. before end
local ids
if limit > 0 then ids = redis.call('ZREVRANGEBYLEX', nk('i', ns), hi, '-', 'LIMIT', 0, limit)
else ids = redis.call('ZREVRANGEBYLEX', nk('i', ns), hi, '-') end
local complete = redis.call('EXISTS', nk('f', ns))
if #ids == 0 then return {{}, {}, complete} end
return {ids, call_chunked('HMGET', nk('c', ns), ids, 1, #ids, 4000), complete}
"""
)

# KEYS: base. ARGV: ns, ttl, cid, record, generation, index ('1' when this is
# the latest), n blob pairs, blob pairs..., write pairs...
# Read-through: never overwrites hot data (hot is newer or equal; a large
# value whose key expired is stored again, inline) and gives up
# when the thread was deleted since the read began. Returns the write values.
_REPOPULATE = (
    _LUA_PRELUDE
    + """
local ns, ttl, cid, rec, gen, index = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if (redis.call('GET', base .. ':g') or '0') ~= gen then return false end
local nb = tonumber(ARGV[7])
if index == '1' and redis.call('ZCARD', nk('i', ns)) == 0 then
  redis.call('ZADD', nk('i', ns), 0, cid)
end
redis.call('HSETNX', nk('c', ns), cid, rec)
for i = 8, 7 + nb, 2 do  -- stored inline, unless stored already
  if redis.call('HSTRLEN', nk('b', ns), ARGV[i]) == 0 then
    redis.call('HSET', nk('b', ns), ARGV[i], ARGV[i + 1])
    drop_large(ns, ARGV[i])
  end
end
for i = 8 + nb, #ARGV, 2 do
  redis.call('HSETNX', nk('w', ns), ARGV[i], ARGV[i + 1])
  redis.call('ZADD', nk('z', ns), 0, ARGV[i])
end
redis.call('SADD', base .. ':n', ns)
expire_ns(ns, ttl)
return read_writes(ns, cid)
"""
)

# KEYS: base, outbox. ARGV: thread_id, queue ('1': add a delete entry to the
# outbox), tombstone (a checkpoint id of now, or ''). Drops every hot key of
# the thread and bumps its generation; with a tombstone, writes naming older
# checkpoints that are not in Redis are refused for 7 days. The `p` keys of
# unreconciled entries and the pending count `base:o` stay: the reconciler
# deletes and uncounts them with their entries.
_DROP_THREAD = (
    _LUA_PRELUDE
    + """
-- The tombstone covers every id deleted here, even one made by a writer whose
-- clock runs ahead of the deleting client's.
local tomb = ARGV[3]
for _, ns in ipairs(redis.call('SMEMBERS', base .. ':n')) do
  local top = redis.call('ZREVRANGEBYLEX', nk('i', ns), '+', '-', 'LIMIT', 0, 1)[1]
  if tomb ~= '' and top and top > tomb then tomb = top end
  for _, f in ipairs(redis.call('SMEMBERS', nk('V', ns))) do redis.call('DEL', large_key(ns, f)) end
  for _, k in ipairs({'i', 'c', 'b', 'w', 'z', 'f', 'V'}) do redis.call('DEL', nk(k, ns)) end
end
redis.call('DEL', base .. ':n')
redis.call('INCR', base .. ':g')
redis.call('PEXPIRE', base .. ':g', 604800000)
if tomb ~= '' then redis.call('SET', base .. ':x', tomb, 'PX', 604800000) end
if ARGV[2] == '1' then
  enqueue()
  return redis.call('XADD', KEYS[2], '*', 'k', 'd', 't', ARGV[1])
end
return false
"""
)

# KEYS: base. ARGV: ttl ms, owner. Returns {1, token} or {0, current holder}.
_THREAD_LEASE = """
local cur = redis.call('GET', KEYS[1] .. ':L')
if cur then return {0, cur} end
local token = redis.call('INCR', KEYS[1] .. ':T')
redis.call('PEXPIRE', KEYS[1] .. ':T', 604800000)
redis.call('SET', KEYS[1] .. ':L', token .. '|' .. ARGV[2], 'PX', ARGV[1])
return {1, tostring(token)}
"""

# KEYS: base. ARGV: token, ttl ms (0: release). Renew or release our lease.
_THREAD_LEASE_KEEP = """
local cur = redis.call('GET', KEYS[1] .. ':L')
if not cur or string.sub(cur, 1, #ARGV[1] + 1) ~= ARGV[1] .. '|' then return 0 end
if ARGV[2] == '0' then redis.call('DEL', KEYS[1] .. ':L')
else redis.call('PEXPIRE', KEYS[1] .. ':L', ARGV[2]) end
return 1
"""

# KEYS: base. Namespaces of a thread.
_NAMESPACES = "return redis.call('SMEMBERS', KEYS[1] .. ':n')"

# KEYS: lease. ARGV: owner, ttl ms. Take a free lease or renew our own.
_LEASE = """
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

# KEYS: lease. ARGV: owner.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: outbox, dead-letter stream, its index. ARGV: entry id, reason, the
# shard's key root ("<prefix>:v1:{<shard>}:"). Moves an entry the durable
# store cannot take out of the outbox, keeping every field, so the shard's
# later entries are not held up behind it and nothing is lost. It stays
# counted as pending on its thread (whose hot copy therefore stays) and is
# counted as a dead letter there (field d), for reads to report.
_DEAD_LETTER = """
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])[1]
if not e then return 0 end
local fields = {'outbox_id', ARGV[1], 'reason', ARGV[2]}
local tid
for i, v in ipairs(e[2]) do
  fields[#fields + 1] = (i % 2 == 1) and ('entry:' .. v) or v
  if i % 2 == 0 and e[2][i - 1] == 't' then tid = v end
end
local dead = redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('HSET', KEYS[3], ARGV[1], dead)
redis.call('XDEL', KEYS[1], ARGV[1])
if tid then redis.call('HINCRBY', ARGV[3] .. #tid .. ':' .. tid .. ':o', 'd', 1) end
return 1
"""

# KEYS: outbox. ARGV: entry id, thread base, ... of applied entries. Deletes
# them and uncounts each from its thread's pending entries; a thread left with
# none gets its TTL and window now (`settle`): what is durable may expire.
_ACK = (
    _LUA_PRELUDE
    + """
local settled = {}
for i = 1, #ARGV, 2 do
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then
    local o = ARGV[i + 1] .. ':o'
    if redis.call('HINCRBY', o, 'n', -1) <= 0 then settled[#settled + 1] = ARGV[i + 1] end
  end
end
for _, b in ipairs(settled) do
  base = b
  settle()
end
return #settled
"""
)


def _b(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _where(redis: Any) -> str:
    """host:port of a client, for error messages (never its password)."""
    try:
        if isinstance(redis, RedisCluster):
            node = redis.get_default_node() or redis.get_nodes()[0]
            return f"{node.host}:{node.port}"
        kw = redis.connection_pool.connection_kwargs
        return str(kw.get("path") or f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}")
    except Exception:
        return "redis"


def pack_for_lua(value: list[Any] | str | bytes) -> bytes:
    """msgpack of nested lists of strings/bytes, every string as msgpack `str`:
    Redis' Lua cmsgpack cannot decode the `bin` type other packers use for
    bytes, and a Lua string holds any bytes."""
    if isinstance(value, list):
        n = len(value)
        head = bytes([0x90 | n]) if n < 16 else b"\xdd" + n.to_bytes(4, "big")
        return head + b"".join(pack_for_lua(v) for v in value)
    raw = value.encode() if isinstance(value, str) else value
    return b"\xdb" + len(raw).to_bytes(4, "big") + raw


def pack_blob(type_: str, blob: bytes | None) -> bytes:
    return type_.encode() + b"\x00" + (blob or b"")


def unpack_blob(value: bytes) -> tuple[str, bytes]:
    type_, _, blob = value.partition(b"\x00")
    return type_.decode(), blob


def write_field(checkpoint_id: str, w: WriteRow) -> str:
    return f"{checkpoint_id}\x00{w.task_id}\x00{w.idx}"


def pack_write(w: WriteRow) -> bytes:
    return ormsgpack.packb([w.task_id, w.idx, w.task_path, w.channel, w.type, w.blob])


def unpack_write(value: bytes) -> WriteRow:
    task_id, idx, task_path, channel, type_, blob = ormsgpack.unpackb(value)
    return WriteRow(task_id, idx, task_path, channel, type_, blob)


def pack_record(row: CheckpointRow, refs: Sequence[str]) -> bytes:
    return ormsgpack.packb(
        [row.checkpoint, row.metadata, row.parent_checkpoint_id or "", list(refs)]
    )


# An applied outbox entry: (shard, entry id, thread id).
Applied = tuple[int, str, str]


@dataclass(slots=True)
class HotRead:
    """What one `get` found: `stored` is None when the record is not hot;
    `writes` are the hot pending writes of `checkpoint_id` either way;
    `missing` names blobs the record refers to that Redis no longer has (after
    a restart or an eviction) — the durable store has them."""

    checkpoint_id: str | None
    stored: StoredCheckpoint | None
    writes: list[WriteRow]
    generation: bytes
    missing: list[tuple[str, str]] = field(default_factory=list)  # (channel, version)


def pack_stored(s: StoredCheckpoint) -> tuple[bytes, list[Any], list[Any]]:
    """A whole checkpoint as Redis keeps it under its thread (whichever that
    is: the record does not name it): its record, its blob field/value pairs
    and its pending-write field/value pairs."""
    versions = s.checkpoint.get("channel_versions", {})
    row = CheckpointRow(
        s.thread_id,
        s.checkpoint_ns,
        s.checkpoint_id,
        s.parent_checkpoint_id,
        json.dumps(s.checkpoint, separators=(",", ":")),
        json.dumps(s.metadata, separators=(",", ":")),
    )
    blobs: list[Any] = []
    for channel, (type_, blob) in s.blobs.items():
        blobs += (blob_field(channel, str(versions[channel])), pack_blob(type_, blob))
    writes: list[Any] = []
    for w in s.writes:
        writes += (write_field(s.checkpoint_id, w), pack_write(w))
    return pack_record(row, blobs[::2]), blobs, writes


def _decode_record(
    thread_id: str, ns: str, cid: str, rec: bytes, where: str
) -> tuple[StoredCheckpoint, list[str]]:
    try:
        doc, md, parent, refs = ormsgpack.unpackb(rec)
        stored = StoredCheckpoint(
            thread_id, ns, cid, parent or None, json.loads(doc), json.loads(md)
        )
    except (ValueError, TypeError, ormsgpack.MsgpackDecodeError) as e:
        raise CorruptDataError(
            f"hot record of checkpoint {cid!r} in {where} cannot be decoded ({e}); "
            "delete that key and the durable copy will be read through"
        ) from e
    return stored, refs


class HotTier:
    """All Redis I/O of the saver and the reconciler; one round trip per call."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        prefix: str = DEFAULT_PREFIX,
        shards: int = DEFAULT_SHARDS,
        ttl: float | None = 3600.0,
        refresh_on_read: bool = False,
        window: int | None = None,
    ) -> None:
        if not prefix or any(c in prefix for c in "{}"):
            raise ConfigError(
                f"key_prefix {prefix!r} must be non-empty and free of '{{' and '}}' "
                "(they delimit Redis Cluster hash tags)"
            )
        get_encoder = getattr(redis, "get_encoder", None)
        if get_encoder is not None and get_encoder().decode_responses:
            raise ConfigError(
                "this Redis client decodes replies to str (decode_responses=True), but "
                "checkpoints are binary: create it with decode_responses=False (and drop "
                "decode_responses from the redis_url)"
            )
        if not isinstance(shards, int) or not 1 <= shards <= 16384:
            raise ConfigError(f"shards must be an int in 1..16384, got {shards!r}")
        if ttl is not None and ttl <= 0:
            raise ConfigError(f"ttl must be a positive number of seconds or None, got {ttl!r}")
        if window is not None and (not isinstance(window, int) or window < 1):
            raise ConfigError(f"hot_window must be a positive int or None, got {window!r}")
        self.redis: Any = redis
        # Redis Cluster: scripts and single-stream reads route by key slot;
        # reads of several shards cannot share one command there.
        self.cluster = isinstance(redis, RedisCluster)
        self.where = _where(redis)
        self.window = window or 0
        self.prefix = prefix
        self.shards = shards
        self.ttl_ms = int(ttl * 1000) if ttl else 0
        self.refresh_ms = self.ttl_ms if refresh_on_read else 0
        root = f"{prefix}:{LAYOUT_VERSION}"
        self.meta_key = f"{root}:meta"
        self.outboxes = [f"{root}:{{{s}}}:outbox" for s in range(shards)]
        self.leases = [f"{root}:lease:{s}" for s in range(shards)]
        self.dead = [f"{root}:{{{s}}}:dead" for s in range(shards)]
        # outbox entry id -> its dead letter's id, per shard
        self.dead_index = [f"{root}:{{{s}}}:dead:idx" for s in range(shards)]
        self.max_bulk = DEFAULT_MAX_BULK  # the server's, read by check_layout
        self.pin_min = 0  # PIN_MIN_BYTES once check_layout finds COPY (Redis >= 6.2)
        self._warned: dict[str, float] = {}  # thread -> when its dead letters were reported
        self._pins: dict[str, list[bytes]] = {}  # entry id -> its `p` keys, read, not yet deleted
        self._root = root
        r = redis
        self._put = r.register_script(_PUT)
        self._put_writes = r.register_script(_PUT_WRITES)
        self._copy = r.register_script(_COPY)
        self._get = r.register_script(_GET)
        self._list = r.register_script(_LIST)
        self._list_full = r.register_script(_LIST_FULL)
        self._repopulate = r.register_script(_REPOPULATE)
        self._drop = r.register_script(_DROP_THREAD)
        self._namespaces = r.register_script(_NAMESPACES)
        self._lease = r.register_script(_LEASE)
        self._thread_lease = r.register_script(_THREAD_LEASE)
        self._thread_lease_keep = r.register_script(_THREAD_LEASE_KEEP)
        self._release = r.register_script(_RELEASE)
        self._dead_letter = r.register_script(_DEAD_LETTER)
        self._ack = r.register_script(_ACK)
        self._lanes = Lanes(r) if not self.cluster and Lanes.usable(r) else None

    async def aclose(self) -> None:
        """Close the hot path's own connections (not the client)."""
        if self._lanes is not None:
            await self._lanes.aclose()

    async def _eval(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Run one registered script (scripts in a pipeline or on a cluster
        go through redis-py): on a lane when there are lanes, else (and when
        the lane fails or the server does not know the script yet) through
        redis-py, which loads it and retries by its policy."""
        if self._lanes is not None:
            try:
                return await self._lanes.call("EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:
                pass
            except LaneBroken as e:
                if e.unsupported:
                    self._lanes = None
        return await script(keys=keys, args=args)

    async def _eval_after(
        self, sets: Sequence[tuple[str, bytes]], script: Any, keys: list[str], args: list[Any]
    ) -> Any:
        """`_eval`, in one MULTI after plain SETs of `sets` (with a TTL in case
        the script fails before it takes them): values that never pass through
        Lua. The same keys on a retry overwrite what a failed attempt set;
        when the call fails, they are deleted (the script's own refusals have
        done so already; keys it took are gone, so deleting them is harmless)."""
        try:
            return await self._transaction(sets, script, keys, args)
        except Exception:
            try:
                await self.redis.delete(*(k for k, _ in sets))
            except Exception:  # the TTL deletes them
                logger.warning("could not delete the temporary keys of a failed put")
            raise

    async def _transaction(
        self, sets: Sequence[tuple[str, bytes]], script: Any, keys: list[str], args: list[Any]
    ) -> Any:
        sets_cmds = [("SET", k, v, "PX", _TEMP_TTL_MS) for k, v in sets]
        if self._lanes is not None:
            try:
                *_, reply = await self._lanes.transaction(
                    [*sets_cmds, ("EVALSHA", script.sha, len(keys), *keys, *args)]
                )
                if isinstance(reply, Exception):
                    raise reply
                return reply
            except NoScriptError:
                pass
            except LaneBroken as e:
                if e.unsupported:
                    self._lanes = None
        async with self.redis.pipeline(transaction=True) as pipe:
            for k, v in sets:
                pipe.set(k, v, px=_TEMP_TTL_MS)
            await script(keys=keys, args=args, client=pipe)
            replies = await pipe.execute(raise_on_error=False)  # errors as the server said them
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies[-1]

    # --- keys -----------------------------------------------------------------

    def shard(self, thread_id: str) -> int:
        return zlib.crc32(thread_id.encode()) % self.shards

    def base(self, thread_id: str) -> str:
        return f"{self._root}:{{{self.shard(thread_id)}}}:{len(thread_id.encode())}:{thread_id}"

    def outbox(self, thread_id: str) -> str:
        return self.outboxes[self.shard(thread_id)]

    async def check_layout(self) -> None:
        """Refuse to share a prefix with a process that shards threads differently;
        learn the largest value the server accepts."""
        try:  # managed services may refuse CONFIG: keep the default then
            reply = await self.redis.config_get("proto-max-bulk-len")
            self.max_bulk = int(reply.get(b"proto-max-bulk-len") or reply["proto-max-bulk-len"])
        except Exception:
            pass
        if not self.cluster:  # large values need COPY (Redis 6.2, Valkey)
            try:
                await self.redis.copy(f"{self.meta_key}:none", f"{self.meta_key}:none2")
                self.pin_min = PIN_MIN_BYTES
            except ResponseError:
                self.pin_min = 0
        await self.redis.hsetnx(self.meta_key, "shards", self.shards)
        stored = await self.redis.hget(self.meta_key, "shards")
        if stored is not None and int(stored) != self.shards:
            raise ConfigError(
                f"key_prefix {self.prefix!r} is in use with shards={int(stored)}, "
                f"this saver has shards={self.shards}: use the same value everywhere "
                "or another key_prefix"
            )

    # --- writes ---------------------------------------------------------------

    async def put(
        self, row: CheckpointRow, refs: Sequence[str], blobs: Sequence[BlobRow], token: str = ""
    ) -> str | list[str]:
        """Write a checkpoint, its new blobs and its outbox entry atomically.

        Returns the outbox entry id, or the blob fields among `refs` that are
        neither sent nor stored (nothing is written then: resend with them).
        """
        sent = {blob_field(b.channel, b.version) for b in blobs}
        required = [r for r in refs if r not in sent]
        head: list[Any] = [
            self.ttl_ms,
            self.window,
            token,
            row.thread_id,
            row.checkpoint_ns,
            row.checkpoint_id,
            pack_record(row, refs),
            row.parent_checkpoint_id or "",
            len(required),
            *required,
        ]
        self._fits(head[6], f"checkpoint {row.checkpoint_id!r} (without its blobs)")
        inline: list[Any] = []
        large: list[tuple[str, bytes]] = []  # (field, value)
        for b in blobs:
            packed = self._fits(pack_blob(b.type, b.blob), f"channel {b.channel!r}")
            if self.pin_min and len(packed) >= self.pin_min:
                large.append((blob_field(b.channel, b.version), packed))
            else:
                inline += (blob_field(b.channel, b.version), packed)
        if not large:
            reply = await self._fenced(self._put, row.thread_id, [*head, "", *inline])
        else:  # each large value under a temporary key of the thread's slot
            # secrets, not uuid4: LangGraph's deterministic tests patch uuid4
            temp = f"{self.base(row.thread_id)}:t:{secrets.token_hex(16)}:"
            sets = [(f"{temp}{i}", value) for i, (_, value) in enumerate(large)]
            named = pack_for_lua(
                [x for (f, _), (k, _) in zip(large, sets, strict=True) for x in (f, k)]
            )
            reply = await self._fenced(self._put, row.thread_id, [*head, named, *inline], sets)
        return [_b(f) for f in reply] if isinstance(reply, list) else reply

    async def put_writes(
        self,
        thread_id: str,
        ns: str,
        cid: str,
        writes: Sequence[WriteRow],
        upsert: bool,
        token: str = "",
    ) -> str:
        args: list[Any] = [
            self.ttl_ms, self.window, token, thread_id, ns, cid, "1" if upsert else "0"
        ]
        for w in writes:
            packed = self._fits(pack_write(w), f"write {w.idx} to channel {w.channel!r}")
            args += (write_field(cid, w), packed)
        return str(await self._fenced(self._put_writes, thread_id, args))

    def _fits(self, value: bytes, what: str) -> bytes:
        """`value`, if Redis accepts a value that large (else nothing is sent)."""
        if len(value) > self.max_bulk:
            raise SerializationError(
                f"{what} is {len(value):,} bytes serialized, over this Redis server's "
                f"proto-max-bulk-len of {self.max_bulk:,} bytes; nothing was written: keep "
                "large data out of the state (store a reference) or raise proto-max-bulk-len"
            )
        return value

    async def put_thread(
        self, thread_id: str, checkpoints: Sequence[StoredCheckpoint], token: str = ""
    ) -> str:
        """Write whole checkpoints (with blobs and writes) of one thread, oldest
        first, with their outbox entries, in one atomic script."""
        items = [[s.checkpoint_ns, s.checkpoint_id, *pack_stored(s)] for s in checkpoints]
        packed = self._fits(pack_for_lua(items), f"thread {thread_id!r} as one atomic copy")
        args = [self.ttl_ms, self.window, token, thread_id, packed]
        return str(await self._fenced(self._copy, thread_id, args))

    async def _fenced(
        self, script: Any, thread_id: str, args: list[Any], sets: Sequence[tuple[str, bytes]] = ()
    ) -> Any:
        keys = [self.base(thread_id), self.outbox(thread_id)]
        try:
            if sets:
                reply = await self._eval_after(sets, script, keys, args)
            else:
                reply = await self._eval(script, keys, args)
            return reply if isinstance(reply, list) else _b(reply)
        except ResponseError as e:
            if not str(e).startswith(("LEASED", "DELETED")):
                raise
            if str(e).startswith("DELETED"):
                raise ThreadDeletedError(
                    f"thread {thread_id!r} was deleted and this write names one of its "
                    "deleted checkpoints (a late writer with a pre-delete config): nothing "
                    "was written; start the thread again without a checkpoint_id"
                ) from None
            holder = str(e).removeprefix("LEASED ")
            raise ThreadBusyError(
                f"thread {thread_id!r} is leased by {holder!r} and this writer does not "
                "hold the lease (or its lease expired): nothing was written; retry once "
                "the holder is done, or take the lease with saver.alease(thread_id)"
            ) from None

    async def acquire_thread(self, thread_id: str, owner: str, ttl_ms: int) -> str:
        """Take a thread's lease; returns its fencing token."""
        ok, value = await self._eval(self._thread_lease, [self.base(thread_id)], [ttl_ms, owner])
        if not ok:
            raise ThreadBusyError(
                f"thread {thread_id!r} is already leased by {_b(value)!r}; another process "
                "is running it. Retry after it finishes or after the lease expires"
            )
        return _b(value)

    async def keep_thread(self, thread_id: str, token: str, ttl_ms: int) -> bool:
        """Renew (ttl_ms > 0) or release (0) our lease; False if we lost it."""
        kept = await self._eval(self._thread_lease_keep, [self.base(thread_id)], [token, ttl_ms])
        return bool(kept)

    async def drop_thread(self, thread_id: str, *, queue: bool) -> str | None:
        """Remove the thread from Redis; with `queue`, also enqueue its deletion."""
        keys = [self.base(thread_id), self.outbox(thread_id)]
        tombstone = str(uuid6()) if queue else ""
        sid = await self._eval(self._drop, keys, [thread_id, "1" if queue else "0", tombstone])
        return _b(sid) if sid else None

    # --- reads ----------------------------------------------------------------

    async def get(self, thread_id: str, ns: str, cid: str | None) -> HotRead:
        args = [ns, cid or "", self.refresh_ms]
        reply = await self._eval(self._get, [self.base(thread_id)], args)
        return self._read(thread_id, ns, reply)

    def _read(self, thread_id: str, ns: str, reply: list[Any]) -> HotRead:
        found, rec, blob_values, write_values, gen, *dead = reply
        if dead and dead[0]:
            self._report_dead(thread_id, int(dead[0]))
        found_id = _b(found) if found else None
        writes = [unpack_write(v) for v in write_values if v is not None]
        if found_id is None or rec is None:
            return HotRead(found_id, None, writes, gen)
        stored, refs = _decode_record(thread_id, ns, found_id, rec, self.base(thread_id))
        missing = []
        for ref, value in zip(refs, blob_values, strict=True):
            channel, _, version = ref.partition("\x00")
            if value is None:
                missing.append((channel, version))
            else:
                stored.blobs[channel] = unpack_blob(value)
        stored.writes = writes
        return HotRead(found_id, stored, writes, gen, missing)

    def _report_dead(self, thread_id: str, count: int) -> None:
        """Say, at most once a minute per thread, that a thread being read
        holds entries the durable store refused: its reads come from Redis,
        and the store lacks them until an operator retries them."""
        now = time.monotonic()
        if now - self._warned.get(thread_id, -DEAD_WARN_INTERVAL) < DEAD_WARN_INTERVAL:
            return
        self._warned[thread_id] = now
        logger.warning(
            "thread %r holds %d outbox entries the durable store refused (dead letters): "
            "they are readable from Redis only, not durable; see "
            "`langgraph-hybrid-saver dead-letters list --thread %s`",
            thread_id, count, thread_id,
        )  # fmt: skip

    async def get_many(self, keys: Sequence[tuple[str, str, str]]) -> list[HotRead]:
        """`get` of several (thread_id, ns, checkpoint_id) in one round trip
        (concurrent per-slot calls on Redis Cluster)."""
        if not keys:
            return []
        if self.cluster:
            replies = await asyncio.gather(
                *(
                    self._get(keys=[self.base(t)], args=[ns, cid, self.refresh_ms])
                    for t, ns, cid in keys
                )
            )
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for t, ns, cid in keys:
                    await self._get(
                        keys=[self.base(t)], args=[ns, cid, self.refresh_ms], client=pipe
                    )
                replies = await pipe.execute()
        return [self._read(t, ns, reply) for (t, ns, _), reply in zip(keys, replies, strict=True)]

    async def namespaces(self, thread_id: str) -> list[str]:
        return sorted(_b(n) for n in await self._eval(self._namespaces, [self.base(thread_id)], []))

    async def list_full(
        self,
        thread_id: str,
        ns: str | None,
        cid: str | None,
        before: str | None,
        limit: int | None,
    ) -> tuple[list[HotRead], bool]:
        """The newest `limit` checkpoints of a thread (every namespace when `ns`
        is None) with their blobs and writes, in one round trip; and whether
        Redis holds every checkpoint the query can match."""
        args = ["1" if ns is None else "0", ns or "", cid or "", before or "", limit or 0]
        complete, gen, items, dead = await self._eval(
            self._list_full, [self.base(thread_id)], [*args, self.refresh_ms]
        )
        if dead:
            self._report_dead(thread_id, int(dead))
        reads = [
            self._read(thread_id, _b(item_ns), [found, rec, blobs, writes, gen])
            for item_ns, found, rec, blobs, writes in items
        ]
        return reads, bool(complete)

    async def list_headers(
        self, thread_id: str, ns: str, before: str | None, limit: int | None
    ) -> tuple[list[StoredCheckpoint], bool]:
        """Checkpoints of one namespace newest first, without blobs or writes,
        and whether Redis holds every checkpoint of the namespace."""
        base = self.base(thread_id)
        ids, recs, complete = await self._eval(self._list, [base], [ns, before or "", limit or 0])
        out = []
        for cid, rec in zip(ids, recs, strict=True):
            if rec is None:  # a record evicted alone is read from the durable store
                complete = 0
            else:
                out.append(_decode_record(thread_id, ns, _b(cid), rec, base)[0])
        return out, bool(complete)

    async def repopulate(
        self, stored: StoredCheckpoint, generation: bytes, *, latest: bool
    ) -> list[WriteRow] | None:
        """Copy a durable checkpoint into Redis; None if the thread was deleted
        meanwhile. Returns the union of durable and hot pending writes."""
        record, blobs, writes = pack_stored(stored)
        args: list[Any] = [
            stored.checkpoint_ns,
            self.ttl_ms,
            stored.checkpoint_id,
            record,
            generation,
            "1" if latest else "0",
            len(blobs),
            *blobs,
            *writes,
        ]
        values = await self._eval(self._repopulate, [self.base(stored.thread_id)], args)
        if values is None:
            return None
        return [unpack_write(v) for v in values if v is not None]

    # --- outbox ---------------------------------------------------------------

    async def try_leases(self, shards: Sequence[int], owner: str, ttl_ms: int) -> list[int]:
        """Take (free) or renew (ours) the leases of `shards` in one round trip;
        returns the shards whose lease `owner` now holds."""
        held = await self._per_lease(self._lease, shards, [owner, ttl_ms])
        return [s for s, ok in zip(shards, held, strict=True) if ok]

    async def release(self, shards: Sequence[int], owner: str) -> None:
        """Let go of the leases of `shards` that `owner` holds, in one round trip."""
        await self._per_lease(self._release, shards, [owner])

    async def _per_lease(self, script: Any, shards: Sequence[int], args: list[Any]) -> list[Any]:
        if self.cluster:  # the lease keys live in different slots
            calls = (script(keys=[self.leases[s]], args=args) for s in shards)
            return list(await asyncio.gather(*calls))
        async with self.redis.pipeline(transaction=False) as pipe:
            for s in shards:
                await script(keys=[self.leases[s]], args=args, client=pipe)
            return list(await pipe.execute())

    async def read_outbox(
        self,
        shards: Sequence[int],
        count: int,
        block_ms: int | None,
        ack: Sequence[Applied] = (),
    ) -> list[tuple[int, str, Op]]:
        """The oldest entries of the given shards (applied ones are deleted, so
        the head of a stream is always the oldest unapplied entry), after
        deleting the applied entries `ack` in the same round trip."""
        if not shards:
            await self.ack(ack)
            return []
        index = {self.outboxes[s]: s for s in shards}
        if self.cluster:
            await self.ack(ack)
            replies = await asyncio.gather(
                *(self.redis.xread({self.outboxes[s]: "0-0"}, count=count) for s in shards)
            )
            reply = [r for rs in replies for r in (rs or [])]
            if not reply and block_ms:
                await asyncio.sleep(min(block_ms, 20) / 1000)
        else:
            streams = {self.outboxes[s]: "0-0" for s in shards}
            async with self.redis.pipeline(transaction=False) as pipe:
                await self._queue_ack(pipe, ack)
                pipe.xread(streams, count=count, block=block_ms)
                *_, reply = await pipe.execute()
        read = [(index[_b(stream)], _b(sid), f) for stream, es in reply or [] for sid, f in es]
        large = await self._large_values([(sid, f) for _, sid, f in read])
        out = []
        for (shard, sid, fields), values in zip(read, large, strict=True):
            try:
                out.append((shard, sid, decode_entry(sid, fields, values)))
            except CorruptDataError as e:
                await self.dead_letter(shard, sid, str(e))
            else:
                if values:
                    self._pins[sid] = [key for key, _ in values.values()]
        return out

    async def _large_values(
        self, entries: Sequence[tuple[str, dict[bytes, bytes]]]
    ) -> list[dict[bytes, tuple[bytes, bytes | None]]]:
        """The large values of outbox entries (field -> (`p` key, value or
        None when the key is gone)), read in one round trip when any has one."""
        keys: list[list[tuple[bytes, bytes]]] = []
        for sid, fields in entries:
            keys.append([])
            if b"R" in fields and b"t" in fields:
                base = self.base(fields[b"t"].decode(errors="replace"))
                for f, v in fields.items():
                    if v == b"" and b"\x00" in f:
                        keys[-1].append((f, f"{base}:p:{sid}:".encode() + f))
        flat = [key for ks in keys for _, key in ks]
        if not flat:
            return [{} for _ in entries]
        if self.cluster:
            values = list(await asyncio.gather(*(self.redis.get(k) for k in flat)))
        else:
            values = await self.redis.mget(flat)
        found = iter(values)
        return [{f: (key, next(found)) for f, key in ks} for ks in keys]

    async def dead_letter(self, shard: int, sid: str, reason: str) -> None:
        """Move an outbox entry the durable store cannot take (undecodable, or
        refused by the store) to the shard's dead-letter stream, whole. Its
        large values' `p` keys stay for a retry; its thread stays pending, so
        its hot copy neither expires nor is trimmed."""
        logger.error(
            "outbox entry %s of shard %d is not durable; moved to %s: %s",
            sid, shard, self.dead[shard], reason,
        )  # fmt: skip
        self._pins.pop(sid, None)
        keys = [self.outboxes[shard], self.dead[shard], self.dead_index[shard]]
        await self._eval(self._dead_letter, keys, [sid, reason, f"{self._root}:{{{shard}}}:"])

    async def dead_reason(self, shard: int, sid: str) -> str | None:
        """Why outbox entry `sid` was dead-lettered, or None if it was not."""
        dead_id = await self.redis.hget(self.dead_index[shard], sid)
        if dead_id is None:
            return None
        entries = await self.redis.xrange(self.dead[shard], dead_id, dead_id)
        fields = entries[0][1] if entries else {}
        return _b(fields.get(b"reason", b"dead-lettered, then dropped by an operator"))

    async def dead_letters(self) -> int:
        """How many entries the dead-letter streams hold."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in self.dead:
                pipe.xlen(stream)
            return sum(await pipe.execute())

    async def ack(self, applied: Sequence[Applied]) -> None:
        """Delete applied entries; the durable store has committed them."""
        if not applied:
            return
        if self.cluster:  # one slot per shard: one call each
            calls = [self._ack(keys=k, args=a) for k, a in self._ack_calls(applied)]
            await asyncio.gather(*calls, *(self.redis.delete(*p) for p in self._unpin(applied)))
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            await self._queue_ack(pipe, applied)
            await pipe.execute()

    def _ack_calls(self, applied: Sequence[Applied]) -> list[tuple[list[str], list[str]]]:
        """(keys, args) of the ack script, one call per shard."""
        by_shard: dict[int, list[str]] = {}
        for shard, sid, thread_id in applied:
            by_shard.setdefault(shard, []).extend((sid, self.base(thread_id)))
        return [([self.outboxes[shard]], args) for shard, args in by_shard.items()]

    def _unpin(self, applied: Sequence[Applied]) -> list[list[bytes]]:
        """The `p` keys of applied entries, one list (one slot) per entry."""
        return [large for _, sid, _ in applied if (large := self._pins.pop(sid, None))]

    async def _queue_ack(self, pipe: Any, applied: Sequence[Applied]) -> None:
        for keys, args in self._ack_calls(applied):
            await self._ack(keys=keys, args=args, client=pipe)
        for large in self._unpin(applied):
            pipe.delete(*large)

    async def outbox_heads(self) -> list[str | None]:
        """The newest entry id of every shard's outbox (None when empty)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in self.outboxes:
                pipe.xrevrange(stream, count=1)
            replies = await pipe.execute()
        return [_b(r[0][0]) if r else None for r in replies]

    async def pending_upto(self, heads: Sequence[str | None]) -> int:
        """How many entries at or before `heads` are still in the outbox."""
        async with self.redis.pipeline(transaction=False) as pipe:
            todo = [(s, h) for s, h in enumerate(heads) if h is not None]
            for shard, head in todo:
                pipe.xrange(self.outboxes[shard], "-", head, count=1)
            replies = await pipe.execute()
        return sum(1 for r in replies if r)

    async def backlog(self) -> tuple[int, float | None]:
        """Entries in the outbox and the age in seconds of the oldest one."""
        total, age, _ = await self.outbox_state()
        return total, age

    async def outbox_state(self) -> tuple[int, float | None, int]:
        """Entries in the outbox, the age in seconds of the oldest one, and the
        entries in the dead-letter streams: one round trip (two on a cluster,
        where TIME has no slot to go with the streams)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, dead in zip(self.outboxes, self.dead, strict=True):
                pipe.xlen(stream)
                pipe.xrange(stream, count=1)
                pipe.xlen(dead)
            if not self.cluster:
                pipe.time()
            replies = await pipe.execute()
        now_s, now_us = replies.pop() if not self.cluster else await self.redis.time()
        now_ms = now_s * 1000 + now_us // 1000
        total, oldest, dead_letters = 0, None, 0
        for i in range(0, len(replies), 3):
            total += replies[i]
            if replies[i + 1]:
                ms = int(_b(replies[i + 1][0][0]).split("-")[0])
                oldest = ms if oldest is None else min(oldest, ms)
            dead_letters += replies[i + 2]
        age = None if oldest is None else max(now_ms - oldest, 0) / 1000
        return total, age, dead_letters

    async def unreconciled(self) -> tuple[list[PutOp], set[tuple[str, str, str]]]:
        """What the outbox still holds (for `list(None, ...)` across threads):
        the puts, and the checkpoints with pending writes not yet reconciled."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in self.outboxes:
                pipe.xrange(stream)
            replies = await pipe.execute()
        puts, written = [], set()
        for entries in replies:
            entries = [(_b(sid), f) for sid, f in entries]
            for (sid, f), large in zip(entries, await self._large_values(entries), strict=True):
                try:
                    op = decode_entry(sid, f, large)
                except CorruptDataError:
                    continue  # the reconciler moves it to the dead-letter stream
                if isinstance(op, PutOp):
                    puts.append(op)
                elif isinstance(op, WritesOp):
                    written.add((op.thread_id, op.checkpoint_ns, op.checkpoint_id))
        return puts, written


def decode_entry(
    sid: str,
    fields: dict[bytes, bytes],
    large: dict[bytes, tuple[bytes, bytes | None]] | None = None,
) -> Op:
    """An outbox entry as the operation the durable store must apply; `large`:
    the values of its large blobs (`HotTier._large_values`)."""
    try:
        kind = fields[b"k"]
        thread_id = fields[b"t"].decode()
        seq = seq_key(sid)
        if kind == b"d":
            return DeleteThreadOp(seq, thread_id)
        ns, cid = fields[b"n"].decode(), fields[b"c"].decode()
        if kind == b"w":
            writes = tuple(unpack_write(v) for f, v in fields.items() if b"\x00" in f)
            return WritesOp(seq, thread_id, ns, cid, fields[b"u"] == b"1", writes)
        doc, md, parent, _ = ormsgpack.unpackb(fields[b"R" if b"R" in fields else b"r"])
        blobs = []
        for f, v in fields.items():
            if b"\x00" in f:
                channel, _, version = f.decode().partition("\x00")
                if v == b"":  # a large value, in a key of its own
                    key, value = (large or {}).get(f, (b"(not read)", None))
                    if value is None:
                        raise CorruptDataError(
                            f"outbox entry {sid}: the value of channel {channel!r} (key "
                            f"{key!r}) is gone from Redis (evicted or deleted); the "
                            "checkpoint cannot be applied whole"
                        )
                    v = value
                type_, blob = unpack_blob(v)
                blobs.append(BlobRow(channel, version, type_, blob))
        row = CheckpointRow(thread_id, ns, cid, parent or None, doc, md)
        return PutOp(seq, row, tuple(blobs))
    except (KeyError, ValueError, ormsgpack.MsgpackDecodeError) as e:
        raise CorruptDataError(
            f"outbox entry {sid} cannot be decoded ({e}); it is moved to the shard's "
            "dead-letter stream (`langgraph-hybrid-saver dead-letters list` shows them)"
        ) from e
