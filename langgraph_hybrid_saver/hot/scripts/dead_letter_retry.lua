-- KEYS: thread base, outbox, dead-letter stream, dead-letter index (one
-- shard). ARGV: dead letter id. Returns {'ok', new entry id}, {'gone'},
-- {'empty'}, {'deleted', tombstone}, {'written'} or {'superseded', what}; only
-- 'ok' changes anything.
local old, entry, f = read_letter(KEYS[3], ARGV[1])
if old == nil then return {'gone'} end
if not old or #entry == 0 then return {'empty'} end
if f['k'] == 'd' then
  -- The delete cleared the thread's hot keys (its namespace set with them):
  -- a namespace set now means the thread was written after the delete.
  if redis.call('EXISTS', base .. ':n') == 1 then return {'written'} end
elseif f['c'] then
  -- As check_tombstone: a checkpoint at or below the tombstone of a later
  -- delete, unless it is in Redis (written again since), was deleted.
  local t = redis.call('GET', base .. ':x')
  if t and f['c'] <= t and not redis.call('ZSCORE', nk('i', f['n'] or ''), f['c']) then
    return {'deleted', t}
  end
end
-- Upserts land last: one Redis holds a newer value of (a newer put of the
-- same checkpoint id, a special write of the same task and index) would be
-- overwritten in the durable store by this older one.
if f['k'] == 'p' and f['n'] and f['c'] then
  local cur, rec = redis.call('HGET', nk('c', f['n']), f['c']), f['V'] or f['R'] or f['r']
  if cur and rec and cur ~= rec then return {'superseded', 'checkpoint'} end
elseif f['k'] == 'w' and f['u'] == '1' and f['n'] then
  for i = 1, #entry, 2 do
    if string.find(entry[i], '\0', 1, true) then
      local cur = redis.call('HGET', nk('w', f['n']), entry[i])
      if cur and cur ~= entry[i + 1] then return {'superseded', 'special write'} end
    end
  end
end
local id = redis.call('XADD', KEYS[2], '*', unpack(entry))
for _, name in ipairs(large_fields(entry)) do
  local pk = base .. ':p:' .. old .. ':' .. name
  if redis.call('EXISTS', pk) == 1 then
    redis.call('RENAME', pk, base .. ':p:' .. id .. ':' .. name)
  end
end
redis.call('XDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], old)
return {'ok', id}
