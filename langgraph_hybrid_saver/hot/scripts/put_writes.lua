-- KEYS: base, outbox. ARGV: ttl, window, lease token, thread_id, ns, cid,
-- upsert, field/value pairs.
-- Regular writes never overwrite (HSETNX), special ones do, like PostgresSaver.
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
index_thread(tid)
enqueue(ttl, window)
local entry = {'k', 'w', 't', tid, 'n', ns, 'c', cid, 'u', upsert}
for i = 8, #ARGV do entry[#entry + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[2], '*', unpack(entry))
expire_ns(ns, ttl)
return id
