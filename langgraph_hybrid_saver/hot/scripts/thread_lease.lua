-- KEYS: base. ARGV: ttl ms, owner. Returns {1, token} or {0, current holder}.
local cur = redis.call('GET', KEYS[1] .. ':L')
if cur then return {0, cur} end
local token = redis.call('INCR', KEYS[1] .. ':T')
redis.call('PEXPIRE', KEYS[1] .. ':T', 604800000)
redis.call('SET', KEYS[1] .. ':L', token .. '|' .. ARGV[2], 'PX', ARGV[1])
return {1, tostring(token)}
