-- Takes back a delivery whose worker was lost: one `sending` since before the cutoff goes
-- back to `queued`, due now. One no longer sending just leaves the sending index.
-- States: the prelude (ledger_keys.STATES_LUA) names them.
-- KEYS: delivery, sending index, due index, batch counts (or a placeholder).
-- ARGV: JSON {member, cutoff, now, has_batch} (now as a string: it is stored).
-- Answers 1 when taken back, else 0.
local a = cjson.decode(ARGV[1])
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= SENDING then redis.call('ZREM', KEYS[2], a.member) return 0 end
local since = tonumber(redis.call('HGET', KEYS[1], 'since') or '0') or 0
if since > a.cutoff then return 0 end
redis.call('HSET', KEYS[1], 'status', QUEUED, 'next_at', a.now, 'updated_at', a.now,
           'error', 'the worker was lost while sending; queued again')
redis.call('HDEL', KEYS[1], 'token', 'since')
redis.call('ZREM', KEYS[2], a.member)
redis.call('ZADD', KEYS[3], a.now, a.member)
if a.has_batch then
  redis.call('HINCRBY', KEYS[4], SENDING, -1)
  redis.call('HINCRBY', KEYS[4], QUEUED, 1)
end
return 1
