-- KEYS: base. ARGV: token, ttl ms (0: release). Renew or release our lease.
local cur = redis.call('GET', KEYS[1] .. ':L')
if not cur or string.sub(cur, 1, #ARGV[1] + 1) ~= ARGV[1] .. '|' then return 0 end
if ARGV[2] == '0' then redis.call('DEL', KEYS[1] .. ':L')
else redis.call('PEXPIRE', KEYS[1] .. ':L', ARGV[2]) end
return 1
