-- KEYS: outbox. ARGV: entry id, thread base, ... of applied entries. Deletes
-- them and uncounts each from its thread's pending entries; a thread left with
-- none gets its TTL and window now (`settle`): what is durable may expire.
local settled = {}
for i = 1, #ARGV, 2 do
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then
    local o = ARGV[i + 1] .. ':o'
    if redis.call('HINCRBY', o, 'n', -1) <= 0 then settled[#settled + 1] = ARGV[i + 1] end
  end
end
for _, b in ipairs(settled) do
  base = b
  settle()
end
return #settled
