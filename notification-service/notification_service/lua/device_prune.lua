-- Compare-and-delete: prune the device only if it still points at the endpoint that
-- answered 404/410, so a re-subscription that happened meanwhile is kept.
-- KEYS[1] device, KEYS[2] user devices, KEYS[3] user targets.
-- ARGV[1] JSON: {"endpoint", "device_id", "target"}. Returns 1 when pruned, else 0.
local a = cjson.decode(ARGV[1])
if redis.call('HGET', KEYS[1], 'endpoint') ~= a.endpoint then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], a.device_id)
if redis.call('HGET', KEYS[3], a.target) == a.device_id then redis.call('HDEL', KEYS[3], a.target) end
return 1
