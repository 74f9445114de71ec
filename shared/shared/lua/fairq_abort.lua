-- The submitting API could not publish (the broker is down), or its submission failed midway:
-- the tasks it popped go back into their owners' turn, and the new task is taken out again,
-- its record too, so the API can answer 503 and leave nothing behind.
-- In (JSON): prefix, open, id (the new task), popped (ids), rec_key, user_key
local a = cjson.decode(ARGV[1])
local P = a.prefix
for _, pid in ipairs(a.popped) do
  redis.call('ZREM', P .. 'inflight', pid)
  redis.call('ZREM', P .. 'claimed', pid)
  if pid ~= a.id then
    local m = redis.call('HMGET', P .. 'm:' .. pid, 'user', 'score')
    if m[1] and m[2] then fq_enqueue(P, pid, m[1], m[2]) end
  end
end
local mkey = P .. 'm:' .. a.id
local user = redis.call('HGET', mkey, 'user')
if user then
  redis.call('ZREM', P .. 'u:' .. user, a.id)
  redis.call('ZREM', a.open .. user, a.id)
end
redis.call('ZREM', P .. 'delayed', a.id)
redis.call('ZREM', P .. 'deadline', a.id)
redis.call('DEL', mkey)
redis.call('DEL', a.rec_key)
redis.call('ZREM', a.user_key, a.id)
return 1
