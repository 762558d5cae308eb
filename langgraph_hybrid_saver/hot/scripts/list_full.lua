-- KEYS: base. ARGV: all namespaces ('1') or one ('0'), ns, checkpoint id or
-- '', before or '', limit (0: all), ttl to refresh (0: none), thread id (''
-- to not trust the thread index). The newest
-- `limit` checkpoints of the thread (or namespace), each whole as `_GET`
-- reads it: {complete, generation, {{ns, id, record, blobs, writes}, ...}};
-- `complete` = 1 when Redis holds every checkpoint the query can match (also
-- when the thread is certainly in neither tier).
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
if #out == 0 and complete == 0 and ARGV[7] ~= '' and index_state(ARGV[7]) == 2 then
  complete = 1
end
if ttl > 0 then for _, ns in ipairs(nss) do expire_ns(ns, ttl) end end
return {complete, gen, out, dead_letters()}
