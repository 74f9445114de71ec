-- Cancels one delivery that has not gone out yet (queued for a retry, or deferred).
-- States: the prelude (ledger_keys.STATES_LUA) names them; UNSENT is the set it cancels.
-- KEYS: delivery, due index, deferred index, batch counts (or a placeholder).
-- ARGV: JSON {member, now, has_batch}. Answers the state it left, or the state it found.
local a = cjson.decode(ARGV[1])
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if not UNSENT[st] then return st end
redis.call('HSET', KEYS[1], 'status', CANCELLED, 'updated_at', a.now,
           'error', 'cancelled by its sender')
redis.call('HDEL', KEYS[1], 'next_at')
redis.call('ZREM', KEYS[2], a.member)
redis.call('ZREM', KEYS[3], a.member)
if a.has_batch then
  redis.call('HINCRBY', KEYS[4], st, -1)
  redis.call('HINCRBY', KEYS[4], CANCELLED, 1)
end
return CANCELLED
