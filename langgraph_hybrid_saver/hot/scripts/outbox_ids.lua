-- KEYS: an outbox stream. ARGV: max ids. Returns {oldest ids..., newest id or
-- false}. Ids only: an entry carries a whole checkpoint, the id is all we need.
-- Walks in chunks of 100 without exclusive ranges, which need Redis 6.2.
local out, start, left = {}, '-', tonumber(ARGV[1])
while left > 0 do
  local batch = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', math.min(left, 100))
  if #batch == 0 then break end
  for _, e in ipairs(batch) do out[#out + 1] = e[1] end
  left = left - #batch
  local ms, seq = string.match(batch[#batch][1], '(%d+)-(%d+)')
  start = ms .. '-' .. string.format('%d', tonumber(seq) + 1)
end
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
out[#out + 1] = newest[1] and newest[1][1] or false
return out
