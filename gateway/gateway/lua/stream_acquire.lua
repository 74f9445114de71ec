-- Open one event stream of a user, if they have fewer than the cap open (gateway/streams.py).
-- KEYS[1] the user's sorted set of open streams (member -> end of its lease, epoch ms)
-- ARGV[1] JSON: {"cap": streams allowed, "lease_ms": lease length, "member": this stream's id}
-- Returns {opened (1 or 0), streams open now}. Times are Redis's clock, so replicas agree.
local a = cjson.decode(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(a.cap) then return {0, n} end
redis.call('ZADD', KEYS[1], now + tonumber(a.lease_ms), a.member)
redis.call('PEXPIRE', KEYS[1], a.lease_ms)
return {1, n + 1}
