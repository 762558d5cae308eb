-- KEYS: base, outbox. ARGV: thread_id, queue ('1': add a delete entry to the
-- outbox), tombstone (a checkpoint id of now, or ''). Drops every hot key of
-- the thread and bumps its generation; with a tombstone, writes naming older
-- checkpoints that are not in Redis are refused for 7 days. The pending count
-- `base:o` stays (the reconciler uncounts entries as it applies them), and
-- so do the large values pending entries read (`v` keys, held in the set
-- `base:h` until the thread settles; legacy `p` keys go with their entries).
-- The tombstone covers every id deleted here, even one made by a writer whose
-- clock runs ahead of the deleting client's.
local tomb = ARGV[3]
local hold = pending()
for _, ns in ipairs(redis.call('SMEMBERS', base .. ':n')) do
  local top = redis.call('ZREVRANGEBYLEX', nk('i', ns), '+', '-', 'LIMIT', 0, 1)[1]
  if tomb ~= '' and top and top > tomb then tomb = top end
  for _, f in ipairs(redis.call('SMEMBERS', nk('V', ns))) do
    if hold then redis.call('SADD', base .. ':h', large_key(ns, f))
    else redis.call('DEL', large_key(ns, f)) end
  end
  for _, k in ipairs({'i', 'c', 'b', 'w', 'z', 'f', 'V'}) do redis.call('DEL', nk(k, ns)) end
end
redis.call('DEL', base .. ':n')
redis.call('INCR', base .. ':g')
redis.call('PEXPIRE', base .. ':g', 604800000)
if tomb ~= '' then redis.call('SET', base .. ':x', tomb, 'PX', 604800000) end
if ARGV[2] == '1' then
  redis.call('SREM', index_key(), ARGV[1])
  enqueue()
  return redis.call('XADD', KEYS[2], '*', 'k', 'd', 't', ARGV[1])
end
return false
