-- KEYS: outbox, dead-letter stream, its index. ARGV: entry id, reason, the
-- shard's key root ("<prefix>:v1:{<shard>}:"). Moves an entry the durable
-- store cannot take out of the outbox, keeping every field, so the shard's
-- later entries are not held up behind it and nothing is lost. It stays
-- counted as pending on its thread (whose hot copy therefore stays) and is
-- counted as a dead letter there (field d), for reads to report.
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
