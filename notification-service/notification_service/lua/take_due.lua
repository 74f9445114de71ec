-- Hands out the entries of the due index that have come due (retries, deliveries taken back
-- by the sweeper), leasing each (its score moves to lease_until) so one lost on its way to a
-- worker comes due again. Whoever claims it removes it.
-- KEYS: due index. ARGV: JSON {now, lease_until, limit}. Answers the members.
local a = cjson.decode(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', a.now, 'LIMIT', 0, a.limit)
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], a.lease_until, m) end
return due
