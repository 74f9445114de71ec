-- Tasks left the broker window. A finished one gives back its place and its owner's count;
-- a retried one only its place (Celery publishes its next attempt itself). Then the window
-- is filled again in turn, and the messages popped are returned for the caller to publish.
-- In (JSON): prefix, open, ids, finished, now, max_pop
-- Out: {msg, ...}
local a = cjson.decode(ARGV[1])
local P = a.prefix
for _, id in ipairs(a.ids) do
  redis.call('ZREM', P .. 'inflight', id)
  redis.call('ZREM', P .. 'claimed', id)
  if a.finished then
    local mkey = P .. 'm:' .. id
    local user = redis.call('HGET', mkey, 'user')
    if user then redis.call('ZREM', a.open .. user, id) end
    redis.call('DEL', mkey)
    redis.call('ZREM', P .. 'deadline', id)
  end
end
redis.call('INCRBY', P .. 'done', #a.ids)
local room = fq_room(P)
if room <= 0 then return {} end
return fq_pop(P, math.min(room, a.max_pop), a.now)
