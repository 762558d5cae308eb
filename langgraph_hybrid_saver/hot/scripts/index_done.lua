-- KEYS: a shard's thread index. ARGV: the build's marker.
-- Completes the index if it still holds the marker this build added before
-- it began loading (a restart or an eviction since then lost the marker
-- with part of what was loaded: the index stays incomplete).
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('SADD', KEYS[1], '\0complete')
  return 1
end
return 0
