-- KEYS: base. ARGV: ns, cid or '', ttl to refresh (0: none), thread id.
-- Returns {cid|false, record|false, blob values, write values, generation,
-- dead letters, index state (see index_state) when the record is not hot}.
local ns, cid, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local gen = redis.call('GET', base .. ':g') or '0'
local dead = dead_letters()
if cid == '' then
  local top = redis.call('ZREVRANGEBYLEX', nk('i', ns), '+', '-', 'LIMIT', 0, 1)
  if #top == 0 then return {false, false, {}, {}, gen, dead, index_state(ARGV[4])} end
  cid = top[1]
end
local rec = redis.call('HGET', nk('c', ns), cid)
local blobs = {}
if rec then
  blobs = read_blobs(ns, rec, ttl)
  expire_ns(ns, ttl)
end
return {cid, rec, blobs, read_writes(ns, cid), gen, dead, rec and 1 or index_state(ARGV[4])}
