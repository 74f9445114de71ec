-- A webhook that answered 410 is disabled, only if it still has that URL.
-- KEYS[1] device. ARGV[1] JSON: {"endpoint", "reason", "now"}. Returns 1 when disabled, else 0.
local a = cjson.decode(ARGV[1])
if redis.call('HGET', KEYS[1], 'endpoint') ~= a.endpoint then return 0 end
redis.call('HSET', KEYS[1], 'status', 'disabled', 'disabled_reason', a.reason, 'disabled_at', a.now)
return 1
