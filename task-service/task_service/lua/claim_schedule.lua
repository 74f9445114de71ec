-- Claim one due tick of a schedule: compare-and-set of its next run, so that of any number of
-- schedulers that saw the same due tick, exactly one runs it. The run is recorded in flight in
-- the same step: a claimer that dies before finishing it leaves it there for another to finish.
-- KEYS[1] the due index (sorted set: schedule id -> next run, epoch milliseconds)
-- KEYS[2] the schedule's hash
-- KEYS[3] the runs in flight (sorted set: task id -> claim time, epoch milliseconds)
-- KEYS[4] what each run in flight submits (hash: task id -> run JSON)
-- ARGV[1] JSON: {"id", "due": ms the caller saw, "next": ms of the run after now,
--                "now": ISO time of this run, "task_id": the task this run starts,
--                "claimed_ms": now in epoch milliseconds, "run": the run JSON to keep}
-- Returns 1 when this caller won the tick (the schedule now points at `next`), else 0.
local a = cjson.decode(ARGV[1])
local score = redis.call('ZSCORE', KEYS[1], a.id)
if not score or tonumber(score) ~= tonumber(a.due) then
  return 0  -- another scheduler ran it, or the schedule was paused, edited or deleted
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], a.id)
  return 0
end
redis.call('ZADD', KEYS[1], a.next, a.id)
redis.call('HSET', KEYS[2], 'next_run', a.next, 'last_run_at', a.now, 'last_task_id', a.task_id)
redis.call('HINCRBY', KEYS[2], 'runs', 1)
redis.call('ZADD', KEYS[3], a.claimed_ms, a.task_id)
redis.call('HSET', KEYS[4], a.task_id, a.run)
return 1
