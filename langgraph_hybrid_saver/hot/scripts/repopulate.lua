-- KEYS: base. ARGV: ns, ttl, cid, record, generation, index ('1' when this is
-- the latest), n blob pairs, blob pairs..., write pairs...
-- Read-through: never overwrites hot data (hot is newer or equal; a large
-- value whose key expired is stored again, inline), but for a regular write
-- the store already holds under the same (task, idx): the store keeps the
-- first, so reads do. Gives up when the thread was deleted since the read
-- began. Returns the write values.
local ns, ttl, cid, rec, gen, index = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if (redis.call('GET', base .. ':g') or '0') ~= gen then return false end
local nb = tonumber(ARGV[7])
if index == '1' and redis.call('ZCARD', nk('i', ns)) == 0 then
  redis.call('ZADD', nk('i', ns), 0, cid)
end
redis.call('HSETNX', nk('c', ns), cid, rec)
for i = 8, 7 + nb, 2 do  -- stored inline, unless stored already (a pending
  -- entry may read a large value's key: it stays)
  if redis.call('HSTRLEN', nk('b', ns), ARGV[i]) == 0 and not has_large(ns, ARGV[i]) then
    redis.call('HSET', nk('b', ns), ARGV[i], ARGV[i + 1])
    drop_large(ns, ARGV[i])
  end
end
for i = 8 + nb, #ARGV, 2 do  -- a regular write (idx >= 0, the field's last
  -- part) as the store keeps it: the first; a special one as Redis has it
  if tonumber(string.match(ARGV[i], '(%-?%d+)$')) >= 0 then
    redis.call('HSET', nk('w', ns), ARGV[i], ARGV[i + 1])
  else
    redis.call('HSETNX', nk('w', ns), ARGV[i], ARGV[i + 1])
  end
  redis.call('ZADD', nk('z', ns), 0, ARGV[i])
end
redis.call('SADD', base .. ':n', ns)
expire_ns(ns, ttl)
return read_writes(ns, cid)
