-- KEYS: base. Namespaces of a thread.
return redis.call('SMEMBERS', KEYS[1] .. ':n')
