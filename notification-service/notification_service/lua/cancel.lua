-- Cancels a notification before it is planned: it leaves the scheduled index, and its plan
-- is marked done and cancelled, so a delivery task that still runs for it plans nothing.
-- KEYS: plan, scheduled index, batch counts (or a placeholder).
-- ARGV: JSON {nid, now, retention, has_batch}.
-- Answers 'cancelled', or 'planned' when its deliveries exist (cancel them one by one).
local a = cjson.decode(ARGV[1])
redis.call('ZREM', KEYS[2], a.nid)
if redis.call('HSETNX', KEYS[1], '_planned', a.now) == 0 then return 'planned' end
redis.call('HSET', KEYS[1], '_cancelled', a.now)
redis.call('EXPIRE', KEYS[1], a.retention)
if a.has_batch then redis.call('HINCRBY', KEYS[3], '_planned', 1) end
return 'cancelled'
