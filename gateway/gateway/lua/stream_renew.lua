-- Extend the leases of this replica's open streams of one user (gateway/streams.py).
-- KEYS[1] the user's sorted set of open streams
-- ARGV[1] JSON: {"lease_ms": lease length, "members": [this replica's stream ids in the set]}
-- A member that expired meanwhile (a Redis outage) is added again: the stream is still open,
-- so it still counts. Returns how many leases were written.
local a = cjson.decode(ARGV[1])
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(a.lease_ms)
for _, member in ipairs(a.members) do
  redis.call('ZADD', KEYS[1], until_ms, member)
end
redis.call('PEXPIRE', KEYS[1], a.lease_ms)
return #a.members
