-- KEYS: base, outbox. ARGV: ttl, window, lease token, thread_id, ns, cid,
-- record, parent id or '', n, n blob fields that must already be stored, the
-- large values ('' or msgpack [field, temporary key, ...]: values SET in the
-- same MULTI), blob field/value pairs. Returns the entry id, or the list of
-- required fields that are missing (then nothing is written). With a window,
-- only the newest `window` checkpoints of the namespace stay hot: older
-- records, their writes and the blobs only they used are dropped from Redis
-- once the durable store has them (here when nothing of the thread was
-- pending, else by the ack that empties its backlog). Whatever it returns, no
-- temporary key is left. A large value is stored once: its `v` key is both
-- the hot copy and what the outbox entry (record 'V') reads until applied.
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
    if has_large(ns, f) then unchanged_large[#unchanged_large + 1] = large_key(ns, f)
    else missing[#missing + 1] = f end
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
index_thread(tid)
if #ARGV >= first then call_chunked('HSET', bk, ARGV, first, #ARGV, 4000) end
-- A put with large values names its record 'V' (values in the thread's `v`
-- keys; 'R' was a `p` key per entry): a reconciler that predates it cannot
-- decode it and dead-letters it instead of applying it without them.
local entry = {'k', 'p', 't', tid, 'n', ns, 'c', cid, #large > 0 and 'V' or 'r', rec}
for i = first, #ARGV do entry[#entry + 1] = ARGV[i] end
local mine = {}
for i = 1, #large, 2 do
  local f, lk = large[i], large_key(ns, large[i])
  redis.call('RENAME', large[i + 1], lk)
  redis.call('PERSIST', lk)  -- the temporary key's TTL goes: the entry is pending
  redis.call('SREM', base .. ':h', lk)  -- in use again, if a drop held it
  redis.call('HSET', bk, f, '')
  redis.call('SADD', nk('V', ns), f)
  entry[#entry + 1] = f
  entry[#entry + 1] = ''
  mine[f] = true
end
local id = redis.call('XADD', KEYS[2], '*', unpack(entry))
if durable_before then trim_ns(ns, window, mine) end
expire_ns(ns, ttl)
return id
