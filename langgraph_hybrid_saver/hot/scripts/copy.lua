-- KEYS: base, outbox. ARGV: ttl, window, lease token, thread_id, msgpack list of
-- [ns, cid, record, [blob field, value, ...], [write field, value, ...]].
-- A whole thread copied in one atomic step: the target is never half-copied.
local ttl, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local denied = check_lease(ARGV[3])
if denied then return denied end
local tid, last = ARGV[4], false
index_thread(tid)
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
