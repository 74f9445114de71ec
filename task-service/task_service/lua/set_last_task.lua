-- A run's task id, once the target chose it: never recreates a schedule deleted in between.
-- KEYS[1]: the schedule's hash; ARGV[1]: the task id.
if redis.call('exists', KEYS[1]) == 1 then
  redis.call('hset', KEYS[1], 'last_task_id', ARGV[1])
end
