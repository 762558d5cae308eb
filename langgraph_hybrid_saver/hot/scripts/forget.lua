-- KEYS: base. ARGV: triples (namespace, checkpoint id, how) of the
-- checkpoints a prune of the durable store deleted (how 'd') or changed
-- (how 'u': it lost its parent). Their records leave Redis, so a read asks
-- the store for them (a changed one is read through again, as the store has
-- it); a deleted one's writes go too, and so do the blobs no record left in
-- Redis refers to, and a namespace with nothing left leaves `base:n`. What
-- the thread gained after the prune's flush (not yet in the store) stays.
-- The generation stays too: a read-through in flight
-- goes on (bumping it would make that read report the thread absent); one
-- that read a checkpoint before the prune deleted it can copy it back, to
-- leave with the thread's TTL. Returns the number of records removed.
local removed, refs = 0, {}
for i = 1, #ARGV, 3 do
  local ns, cid, how = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local r = redis.call('HGET', nk('c', ns), cid)
  if r then
    removed = removed + 1
    redis.call('HDEL', nk('c', ns), cid)
    local ok, rec = pcall(cmsgpack.unpack, r)
    refs[ns] = refs[ns] or {}
    if ok and type(rec) == 'table' then
      for _, f in ipairs(rec[4] or {}) do table.insert(refs[ns], f) end
    end
  end
  redis.call('ZREM', nk('i', ns), cid)
  redis.call('DEL', nk('f', ns))
  if how == 'd' then drop_writes(ns, cid) end
end
for ns, fields in pairs(refs) do
  local used = {}
  for _, r in ipairs(redis.call('HVALS', nk('c', ns))) do
    local ok, rec = pcall(cmsgpack.unpack, r)
    if ok and type(rec) == 'table' then
      for _, f in ipairs(rec[4] or {}) do used[f] = true end
    end
  end
  for _, f in ipairs(fields) do
    if not used[f] then
      redis.call('HDEL', nk('b', ns), f)
      drop_large(ns, f)
    end
  end
  -- A namespace left with nothing in Redis (a subgraph call that went with
  -- its root checkpoint) leaves the thread's set of namespaces.
  if redis.call('EXISTS', nk('c', ns), nk('i', ns), nk('w', ns), nk('b', ns), nk('V', ns)) == 0 then
    redis.call('SREM', base .. ':n', ns)
  end
end
return removed
