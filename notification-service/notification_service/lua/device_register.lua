-- Register a device, or answer the one this user already has for the same target, atomically:
-- two registrations of one webhook URL or push endpoint, even at once, make one device.
-- KEYS[1] n:uep:{user} hash target hash -> device_id
-- KEYS[2] n:udev:{user} zset of the user's device ids by creation time
-- KEYS[3] n:dev:{seen} the device the caller found for this target ("seen"), or KEYS[4]
-- KEYS[4] n:dev:{device_id} the new device's hash
-- ARGV[1] JSON: {"target", "seen", "device_id", "max_devices", "score",
--                "fields": {...} (the new device), "refresh": {...} (set on an existing one)}
-- Returns JSON: {"device_id", "created"}, {"retry": true} (the mapping moved since the caller
-- read it), or {"too_many": true}.
local a = cjson.decode(ARGV[1])
local current = redis.call('HGET', KEYS[1], a.target)
if (current or '') ~= a.seen then
  return cjson.encode({retry = true})
end
if current and redis.call('EXISTS', KEYS[3]) == 1 then
  local flat = {}
  for name, value in pairs(a.refresh) do
    flat[#flat + 1] = name
    flat[#flat + 1] = value
  end
  if #flat > 0 then redis.call('HSET', KEYS[3], unpack(flat)) end
  return cjson.encode({device_id = current, created = false})
end
-- No device for this target (or only a stale mapping to one that was deleted): a new one.
if redis.call('ZCARD', KEYS[2]) >= tonumber(a.max_devices) then
  return cjson.encode({too_many = true})
end
local flat = {}
for name, value in pairs(a.fields) do
  flat[#flat + 1] = name
  flat[#flat + 1] = value
end
redis.call('HSET', KEYS[4], unpack(flat))
redis.call('ZADD', KEYS[2], a.score, a.device_id)
redis.call('HSET', KEYS[1], a.target, a.device_id)
return cjson.encode({device_id = a.device_id, created = true})
