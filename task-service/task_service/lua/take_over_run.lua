-- Take over a run left in flight (lua/claim_schedule.lua) by a scheduler that stopped before
-- finishing it: compare-and-set of its claim time, so one scheduler of any number takes it,
-- and the lease starts again for the taker.
-- KEYS[1] the runs in flight (sorted set: task id -> claim time, epoch milliseconds)
-- KEYS[2] what each run in flight submits (hash: task id -> run JSON)
-- ARGV[1] JSON: {"task_id", "seen": the claim time the caller read, "now": epoch milliseconds}
-- Returns the run JSON when this caller took it over, else false.
local a = cjson.decode(ARGV[1])
local score = redis.call('ZSCORE', KEYS[1], a.task_id)
if not score or tonumber(score) ~= tonumber(a.seen) then
  return false  -- finished, or another scheduler took it over
end
local run = redis.call('HGET', KEYS[2], a.task_id)
if not run then
  redis.call('ZREM', KEYS[1], a.task_id)
  return false
end
redis.call('ZADD', KEYS[1], a.now, a.task_id)
return run
