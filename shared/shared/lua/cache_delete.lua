#!lua flags=allow-oom
-- (allow-oom: a delete only frees memory, so it works even when the cache's Redis is full.)
-- Delete one cache value and release its share of the user's quota, in one atomic step.
-- KEYS[1] index, KEYS[2] sizes, KEYS[3] names (see cache_prune.lua), KEYS[4] the value's key.
-- ARGV[1] JSON: {"member"}. Returns JSON: {"deleted": true | false}.
local a = cjson.decode(ARGV[1])
local index, sizes, names = KEYS[1], KEYS[2], KEYS[3]
prune(index, sizes, names, now_ms())
local deleted = redis.call('DEL', KEYS[4]) == 1
local size = tonumber(redis.call('HGET', sizes, a.member))
redis.call('ZREM', names, a.member)
if size ~= nil then
  redis.call('ZREM', index, a.member)
  redis.call('HDEL', sizes, a.member)
  redis.call('HINCRBY', sizes, '#bytes', -size)
end
expire_with_last(index, sizes, names)
return cjson.encode({deleted = deleted})
