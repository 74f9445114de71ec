#!lua
-- (No flags: Redis checks memory before the script starts, so under maxmemory with noeviction
-- the whole write is refused with OOM, never half done.)
-- Store one cache value within the user's quota, in one atomic step.
-- KEYS[1] index, KEYS[2] sizes (see cache_prune.lua), KEYS[3] the value's key.
-- ARGV[1] JSON: {"member", "ttl_ms", "max_keys", "max_bytes"}; ARGV[2] the value's bytes (kept
-- out of the JSON so a megabyte is not escaped and parsed again).
-- Returns JSON: {"ok": true, "keys", "bytes"} or {"ok": false, "limit": "keys" | "bytes", ...}.
local a = cjson.decode(ARGV[1])
local index, sizes = KEYS[1], KEYS[2]
local now = now_ms()
prune(index, sizes, now)
local keys, bytes = usage(index, sizes)
local size = string.len(ARGV[2])
local old = tonumber(redis.call('HGET', sizes, a.member))
if old == nil then
  keys = keys + 1
  old = 0
end
bytes = bytes - old + size
if keys > tonumber(a.max_keys) then
  return cjson.encode({ok = false, limit = 'keys', keys = keys - 1, max = tonumber(a.max_keys)})
end
if bytes > tonumber(a.max_bytes) then
  return cjson.encode({ok = false, limit = 'bytes', bytes = bytes - size + old, max = tonumber(a.max_bytes)})
end
local expires = now + tonumber(a.ttl_ms)
redis.call('SET', KEYS[3], ARGV[2], 'PX', a.ttl_ms)
redis.call('ZADD', index, expires, a.member)
redis.call('HSET', sizes, a.member, size)
redis.call('HINCRBY', sizes, '#bytes', size - old)
expire_with_last(index, sizes)
return cjson.encode({ok = true, keys = keys, bytes = bytes})
