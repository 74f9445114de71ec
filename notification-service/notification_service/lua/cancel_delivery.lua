-- Cancels one delivery that has not gone out yet (queued for a retry, or deferred).
-- KEYS: delivery, due index, deferred index, batch counts (or a placeholder).
-- ARGV: JSON {member, now, has_batch}. Answers the state it left, or the state it found.
local a = cjson.decode(ARGV[1])
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'queued' and st ~= 'deferred' then return st or 'missing' end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'updated_at', a.now,
           'error', 'cancelled by its sender')
redis.call('HDEL', KEYS[1], 'next_at')
redis.call('ZREM', KEYS[2], a.member)
redis.call('ZREM', KEYS[3], a.member)
if a.has_batch then
  redis.call('HINCRBY', KEYS[4], st, -1)
  redis.call('HINCRBY', KEYS[4], 'cancelled', 1)
end
return 'cancelled'
