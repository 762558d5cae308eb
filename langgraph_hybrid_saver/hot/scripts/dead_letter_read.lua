-- Shared by dead_letter_retry and dead_letter_drop: the dead letter `id` of
-- `stream` as (outbox id, original fields in order, field -> value), or nil
-- when it is gone.
local function read_letter(stream, id)
  local e = redis.call('XRANGE', stream, id, id)[1]
  if not e then return nil end
  local old, entry, f = false, {}, {}
  local raw = e[2]
  for i = 1, #raw, 2 do
    local k, v = raw[i], raw[i + 1]
    if k == 'outbox_id' then old = v
    elseif string.sub(k, 1, 6) == 'entry:' then
      k = string.sub(k, 7)
      entry[#entry + 1] = k
      entry[#entry + 1] = v
      f[k] = v
    end
  end
  return old, entry, f
end
-- The fields of an entry whose values are in keys of their own (`v` keys for
-- record 'V', `p` keys for record 'R').
local function large_fields(entry)
  local out = {}
  for i = 1, #entry, 2 do
    local name = entry[i]
    if entry[i + 1] == '' and string.find(name, '\0', 1, true) then out[#out + 1] = name end
  end
  return out
end
