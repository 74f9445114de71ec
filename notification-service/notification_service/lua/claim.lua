-- Claims one delivery for an attempt: a queued one (a retry) or a deferred one (the recipient's
-- quiet hours) whose next_at has come moves to `sending` under the caller's token; one past
-- its TTL moves to `expired` instead. Either way it leaves the due and deferred indexes.
-- States: the prelude (ledger_keys.STATES_LUA) names them; UNSENT is the set a claim takes.
-- KEYS: delivery, due index, sending index, batch counts (or a placeholder), deferred index.
-- ARGV: JSON {member, now, token, expires_at, has_batch} (now as a string: it is stored).
-- Answers the attempt number when claimed, else the state it found ('missing', 'not_due', ...).
local a = cjson.decode(ARGV[1])
local now = tonumber(a.now)
local st = redis.call('HGET', KEYS[1], 'status')
if not st then
  redis.call('ZREM', KEYS[2], a.member)
  redis.call('ZREM', KEYS[5], a.member)
  return 'missing'
end
if not UNSENT[st] then
  redis.call('ZREM', KEYS[2], a.member)
  redis.call('ZREM', KEYS[5], a.member)
  return st
end
local nxt = tonumber(redis.call('HGET', KEYS[1], 'next_at') or '0') or 0
if nxt > now + 0.5 then return 'not_due' end
redis.call('ZREM', KEYS[2], a.member)
redis.call('ZREM', KEYS[5], a.member)
if now >= a.expires_at then
  redis.call('HSET', KEYS[1], 'status', EXPIRED, 'updated_at', a.now,
             'error', 'the TTL passed before it could be delivered')
  if a.has_batch then
    redis.call('HINCRBY', KEYS[4], st, -1)
    redis.call('HINCRBY', KEYS[4], EXPIRED, 1)
  end
  return EXPIRED
end
redis.call('HSET', KEYS[1], 'status', SENDING, 'since', a.now, 'token', a.token, 'updated_at', a.now)
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('ZADD', KEYS[3], a.now, a.member)
if a.has_batch then
  redis.call('HINCRBY', KEYS[4], st, -1)
  redis.call('HINCRBY', KEYS[4], SENDING, 1)
end
return n
