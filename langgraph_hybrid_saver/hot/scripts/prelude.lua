-- Shared helpers for every script: key names and chunked HMGET/HSET (Lua's
-- unpack() has a stack limit of a few thousand values).
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
-- The shard's thread index (a set, no TTL): every thread written through
-- this key prefix, plus the member '\0complete' once a build loaded every
-- thread of the durable store. A thread missing from a complete index is in
-- neither tier. Lost with Redis (a restart, an eviction of the set): the
-- member goes with it, and reads ask the durable store until a new build.
local function index_key() return string.match(base, '^[^}]*}:') .. 'threads' end
local function index_thread(tid) redis.call('SADD', index_key(), tid) end
-- 2: the thread is certainly in neither tier; 1: the index is complete (the
-- thread is in it); 0: the index is not complete.
local function index_state(tid)
  local k = index_key()
  if redis.call('SISMEMBER', k, '\0complete') == 0 then return 0 end
  return redis.call('SISMEMBER', k, tid) == 1 and 1 or 2
end
local function large_key(ns, f) return nk('v', ns) .. ':' .. f end
-- Whether field `f` of the namespace's blob hash is a large value whose key
-- holds it (a key a drop of the thread held has no field: not this thread's).
local function has_large(ns, f)
  local bk = nk('b', ns)
  return redis.call('HEXISTS', bk, f) == 1 and redis.call('HSTRLEN', bk, f) == 0
    and redis.call('EXISTS', large_key(ns, f)) == 1
end
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
-- Delete the pending writes of a checkpoint.
local function drop_writes(ns, cid)
  local wf = redis.call('ZRANGEBYLEX', nk('z', ns), '[' .. cid .. '\0', '(' .. cid .. '\1')
  if #wf > 0 then
    call_chunked('HDEL', nk('w', ns), wf, 1, #wf, 4000)
    redis.call('ZREMRANGEBYLEX', nk('z', ns), '[' .. cid .. '\0', '(' .. cid .. '\1')
  end
end
local function read_writes(ns, cid)
  local fields = redis.call('ZRANGEBYLEX', nk('z', ns), '[' .. cid .. '\0', '(' .. cid .. '\1')
  if #fields == 0 then return {} end
  return call_chunked('HMGET', nk('w', ns), fields, 1, #fields, 4000)
end
-- Keep only the newest `window` checkpoints of a namespace: older records,
-- their writes and the blobs only they use leave Redis. Called only when the
-- thread has no pending entry but the caller's own (whose large fields are
-- in `mine`, never dropped), so everything dropped is durable.
local function trim_ns(ns, window, mine)
  local ik, ck, bk = nk('i', ns), nk('c', ns), nk('b', ns)
  local over = window > 0 and redis.call('ZCARD', ik) - window or 0
  if over <= 0 then return end
  local old = redis.call('ZRANGE', ik, 0, over - 1)
  redis.call('ZREMRANGEBYRANK', ik, 0, over - 1)
  redis.call('DEL', nk('f', ns))
  -- Channel versions only grow along a thread, so a blob the oldest kept
  -- checkpoint does not use is not used by a newer one either.
  local keep_f = mine or {}
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
    drop_writes(ns, gone)
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
  -- Large values a drop of the thread held for its pending entries.
  for _, lk in ipairs(redis.call('SMEMBERS', base .. ':h')) do redis.call('DEL', lk) end
  redis.call('DEL', base .. ':h')
end
