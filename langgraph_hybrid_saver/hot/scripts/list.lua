-- KEYS: base. ARGV: ns, before or '', limit (0: all). Records newest first,
-- and whether the namespace is complete in Redis.
local ns, before, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local hi = '+'
if before ~= '' then hi = '(' .. before end
local ids
if limit > 0 then ids = redis.call('ZREVRANGEBYLEX', nk('i', ns), hi, '-', 'LIMIT', 0, limit)
else ids = redis.call('ZREVRANGEBYLEX', nk('i', ns), hi, '-') end
local complete = redis.call('EXISTS', nk('f', ns))
if #ids == 0 then return {{}, {}, complete} end
return {ids, call_chunked('HMGET', nk('c', ns), ids, 1, #ids, 4000), complete}
