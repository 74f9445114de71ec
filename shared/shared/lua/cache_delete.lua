#!lua flags=allow-oom
-- (allow-oom: a delete only frees memory, so it works even when the cache's Redis is full.)
-- Delete one cache value and release its share of the user's quota, in one atomic step.
-- KEYS[1] index, KEYS[2] sizes, KEYS[3] names (see cache_common.lua), KEYS[4] the value's key.
-- ARGV[1] JSON: {"member", "if_match"?} ("*" or a list of entity tags, as in cache_put.lua).
-- Returns JSON: {"deleted": true | false} or {"deleted": false, "precondition": true}.
local a = cjson.decode(ARGV[1])
if not preconditions_hold(KEYS[4], a) then
  return cjson.encode({deleted = false, precondition = true})
end
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
