#!lua
-- (No flags: Redis checks memory before the script starts, so under maxmemory with noeviction
-- the whole write is refused with OOM, never half done.)
-- Store one cache value within the user's quota, if its preconditions hold, in one atomic step:
-- no other write can come between the If-Match check and the SET.
-- KEYS[1] index, KEYS[2] sizes, KEYS[3] names (see cache_common.lua), KEYS[4] the value's key.
-- ARGV[1] JSON: {"member", "ttl_ms", "max_keys", "max_bytes", "if_match"?, "if_none_match"?},
-- each condition "*" or a list of entity tags (the SHA-1 hex of a value's bytes, unquoted);
-- ARGV[2] the value's bytes (kept out of the JSON so a megabyte is not escaped and parsed again).
-- Returns JSON: {"ok": true, "keys", "bytes"}, {"ok": false, "precondition": true}, or
-- {"ok": false, "limit": "keys" | "bytes", "max"}.
local a = cjson.decode(ARGV[1])
local index, sizes, names = KEYS[1], KEYS[2], KEYS[3]

if not preconditions_hold(KEYS[4], a) then
  return cjson.encode({ok = false, precondition = true})
end

local now = now_ms()
prune(index, sizes, names, now)
sync_names(index, names)
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
redis.call('SET', KEYS[4], ARGV[2], 'PX', a.ttl_ms)
redis.call('ZADD', index, expires, a.member)
redis.call('ZADD', names, 0, a.member)
redis.call('HSET', sizes, a.member, size)
redis.call('HINCRBY', sizes, '#bytes', size - old)
expire_with_last(index, sizes, names)
return cjson.encode({ok = true, keys = keys, bytes = bytes})
