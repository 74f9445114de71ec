-- Reserve the next `count` slots of one rate-limited key: GCRA, a token bucket kept as one
-- "theoretical arrival time" (TAT). The check and the reservation are one atomic step for
-- every process, with Redis's clock as the only clock. The caller never polls: it is told how
-- long to sleep before its first slot (slot i then comes i intervals later).
-- KEYS[1] the bucket (TAT, microseconds since the epoch, Redis's clock)
-- KEYS[2] a cool-down marker (a Retry-After from the other side): its PTTL pushes slots past it
-- ARGV[1] JSON: {"interval_us", "burst", "max_wait_us", "count"}
-- Returns JSON: {"ok": true, "wait_us"} (reserved), or {"ok": false, "wait_us"} when the first
-- slot is further away than max_wait_us (nothing reserved).
local a = cjson.decode(ARGV[1])
local interval = tonumber(a.interval_us)
local burst = tonumber(a.burst)
local count = tonumber(a.count)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local start = tat - (burst - 1) * interval
local cool = redis.call('PTTL', KEYS[2])
if cool > 0 and now + cool * 1000 > start then start = now + cool * 1000 end
if start < now then start = now end
local wait = start - now
if wait > tonumber(a.max_wait_us) then
  return cjson.encode({ok = false, wait_us = wait})
end
local new_tat = math.max(tat, start) + count * interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return cjson.encode({ok = true, wait_us = wait})
