-- A new task, in one round trip: counted against its owner's limit of unfinished tasks; under
-- it, its record is written (and listed for its owner), then it is held until due (countdown)
-- or queued in its owner's turn. When the broker window has room, the next task in turn (not
-- necessarily this one) is popped for the caller to publish. A task over the limit leaves
-- nothing behind.
-- In (JSON): record (rec_create's fields), prefix, open, id, user, priority, msg, now, due,
--            limit, keep, max_pop, deadline (0: none), confirm (ids published since)
-- Out: {'too_many'} | {'delayed'} | {'queued', msg, ...} | {'exists'}
-- 'exists': this id was submitted before (queued, held, running or ended): nothing is written.
-- A submitter that repeats an id it chose (task-service's scheduler, stalled past its lease
-- while another took its run over) can then never run a task twice, nor turn an ended task's
-- record back to PENDING. A PENDING record that is not among its owner's unfinished tasks
-- was never queued: it is submitted.
local a = cjson.decode(ARGV[1])
local P = a.prefix
fq_confirm(P, a.confirm)
local okey = a.open .. a.user
local was = redis.call('HGET', a.record.key, 'status')
if was and (was ~= STATUS.PENDING or redis.call('ZSCORE', okey, a.id)) then return {'exists'} end
redis.call('ZREMRANGEBYSCORE', okey, '-inf', a.now - a.keep)
if redis.call('ZCARD', okey) >= a.limit then return {'too_many'} end
rec_create(a.record)
redis.call('ZADD', okey, a.now, a.id)
redis.call('EXPIRE', okey, a.keep)
local seq = redis.call('INCR', P .. 'seq')
local score = string.format('%.0f', (9 - a.priority) * 1e12 + seq)
local mkey = P .. 'm:' .. a.id
redis.call('HSET', mkey, 'user', a.user, 'score', score, 'msg', a.msg)
redis.call('EXPIRE', mkey, a.keep)
if a.deadline > 0 then redis.call('ZADD', P .. 'deadline', a.deadline, a.id) end
if a.due > a.now then
  redis.call('ZADD', P .. 'delayed', a.due, a.id)
  return {'delayed'}
end
fq_enqueue(P, a.id, a.user, score)
local out = {'queued'}
local room = fq_room(P)
if room > 0 then
  for _, msg in ipairs(fq_pop(P, math.min(room, a.max_pop), a.now)) do out[#out + 1] = msg end
end
return out
