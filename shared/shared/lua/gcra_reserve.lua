-- Reserve the next `count` slots of one rate-limited key: GCRA, a token bucket kept as one
-- "theoretical arrival time" (TAT). The check and the reservation are one atomic step for
-- every process, with Redis's clock as the only clock. The caller never polls: it is told how
-- long to sleep before its first slot (slot i then comes i intervals later). The platform's one
-- GCRA: shared.Pacer paces hosts with it, the gateway's rate limit (max_wait_us 0) answers
-- allowed or refused with it.
-- KEYS[1] the bucket (TAT, microseconds since the epoch, Redis's clock)
-- KEYS[2] (optional) a cool-down marker (a Retry-After from the other side): its PTTL pushes
--   slots past it
-- ARGV[1] JSON: {"interval_us", "burst", "max_wait_us", "count"}
-- Returns JSON: {"ok": true, "wait_us", "remaining", "reset_us"} (reserved), or {"ok": false,
-- "wait_us", "remaining": 0, "reset_us"} when the first slot is further away than max_wait_us
-- (nothing reserved). remaining: the slots of the burst still free right after this call;
-- reset_us: until the whole burst is free again.
local a = cjson.decode(ARGV[1])
local interval = tonumber(a.interval_us)
local burst = tonumber(a.burst)
local count = tonumber(a.count)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local start = tat - (burst - 1) * interval
local cool = KEYS[2] and redis.call('PTTL', KEYS[2]) or -2
if cool > 0 and now + cool * 1000 > start then start = now + cool * 1000 end
if start < now then start = now end
local wait = start - now
if wait > tonumber(a.max_wait_us) then
  return cjson.encode({ok = false, wait_us = wait, remaining = 0, reset_us = tat - now})
end
local new_tat = math.max(tat, start) + count * interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
local remaining = math.max(0, math.floor((now - (new_tat - burst * interval)) / interval))
return cjson.encode({ok = true, wait_us = wait, remaining = remaining, reset_us = new_tat - now})
