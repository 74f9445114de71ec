-- A worker picks the task up: one round trip answers the record as it was and, unless it is
-- final or cancelled, marks it STARTED, counts the attempt and publishes the new status.
-- In (JSON): key, channel, started_at, worker, event
-- Out: the record as it was (HGETALL's flat list; empty when there is none)
local a = cjson.decode(ARGV[1])
local rec = redis.call('HGETALL', a.key)
if #rec == 0 then return rec end
local st, cancel = unpack(redis.call('HMGET', a.key, 'status', 'cancel'))
if rec_final(st) or cancel == '1' then return rec end
redis.call('HSET', a.key, 'status', STATUS.STARTED, 'started_at', a.started_at, 'worker', a.worker)
redis.call('HINCRBY', a.key, 'attempts', 1)
redis.call('PUBLISH', a.channel, a.event)
return rec
