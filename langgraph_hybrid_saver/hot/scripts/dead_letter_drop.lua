-- KEYS: thread base (the dead-letter stream when the entry names no thread),
-- dead-letter stream, dead-letter index. ARGV: dead letter id, '1' when the
-- entry names a thread. Deletes the dead letter and its large values and
-- uncounts it from the thread's pending entries as `ack.lua` does. Returns -1
-- when the dead letter is gone, else the thread's entries still pending.
local old, entry, f = read_letter(KEYS[2], ARGV[1])
if old == nil then return -1 end
redis.call('XDEL', KEYS[2], ARGV[1])
if old then redis.call('HDEL', KEYS[3], old) end
if ARGV[2] ~= '1' then return 0 end
if old then
  for _, name in ipairs(large_fields(entry)) do
    redis.call('DEL', base .. ':p:' .. old .. ':' .. name)
  end
end
local left = redis.call('HINCRBY', base .. ':o', 'n', -1)
if left <= 0 then
  settle()
  return 0
end
return left
