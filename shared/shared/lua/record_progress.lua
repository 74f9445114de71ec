-- Progress carries a sequence number: an older update never overwrites a newer one. Nothing is
-- written or published once the task is final or its owner asked to cancel it: a step that was
-- running when the cancel came must not move the progress the owner was told it stopped at.
-- In (JSON): prog_key, key (the record), channel, seq, current, total, message, updated_at,
--            expires, event
-- Out: 1 written; 0 not (final, or an older update); -1 not, its owner asked to cancel it (so
--      the reporting task learns it in the same round trip)
local a = cjson.decode(ARGV[1])
local st, cancel = unpack(redis.call('HMGET', a.key, 'status', 'cancel'))
if cancel == '1' then return -1 end
if rec_final(st) then return 0 end
local cur = redis.call('HGET', a.prog_key, 'seq')
if cur and tonumber(cur) >= a.seq then return 0 end
redis.call('HSET', a.prog_key, 'seq', a.seq, 'current', a.current, 'total', a.total,
           'message', a.message, 'updated_at', a.updated_at, 'status', STATUS.PROGRESS)
redis.call('EXPIRE', a.prog_key, a.expires)
if st == STATUS.STARTED or st == STATUS.PENDING or st == STATUS.RETRY then
  redis.call('HSET', a.key, 'status', STATUS.PROGRESS)
end
redis.call('PUBLISH', a.channel, a.event)
return 1
