-- The periodic pass each worker's main process makes. It keeps the worker's heartbeat (the
-- window follows the live worker slots), moves due delayed tasks into their owners' turn, hands
-- back popped tasks whose publish was never confirmed (their publisher died), and fills the
-- window in turn. Every step is safe to run from many workers at once.
-- Tasks past their queue_timeout deadline and still waiting here (never popped, record PENDING)
-- are taken out and returned by id, for the caller to record EXPIRED; one already in the broker
-- is left to the worker, which checks the deadline when it picks the task up.
-- In (JSON): prefix, open, rec_prefix (the task records'), node, slots, per_slot, latency, ttl, leave, now, promote_max, reclaim_before,
--            max_pop
-- Out: {summary (JSON), msg, ...}
local a = cjson.decode(ARGV[1])
local P = a.prefix
local workers, slots, total = P .. 'workers', P .. 'slots', P .. 'total'

local old = tonumber(redis.call('HGET', slots, a.node) or '0')
if a.leave then
  redis.call('ZREM', workers, a.node)
  redis.call('HDEL', slots, a.node)
  redis.call('DECRBY', total, old)
else
  redis.call('ZADD', workers, a.now + a.ttl, a.node)
  redis.call('HSET', slots, a.node, a.slots)
  redis.call('INCRBY', total, a.slots - old)
end
for _, node in ipairs(redis.call('ZRANGEBYSCORE', workers, '-inf', a.now, 'LIMIT', 0, 100)) do
  redis.call('DECRBY', total, tonumber(redis.call('HGET', slots, node) or '0'))
  redis.call('HDEL', slots, node)
  redis.call('ZREM', workers, node)
end
local live = math.max(0, tonumber(redis.call('GET', total) or '0'))
-- Tasks leaving the window per second, measured over a second or more by whichever pass
-- comes first. The window covers the live slots a few times over, plus what the workers get
-- through while a publish is under way (a rate times a latency budget): short tasks never
-- wait for a publish, and long ones keep a window of a few per slot.
local rate = P .. 'rate'
local r = redis.call('HMGET', rate, 'at', 'done', 'per_second')
local done = tonumber(redis.call('GET', P .. 'done') or '0')
local per_second = tonumber(r[3] or '0')
if not r[1] then
  redis.call('HSET', rate, 'at', a.now, 'done', done, 'per_second', 0)
elseif a.now - tonumber(r[1]) >= 1 then
  per_second = math.max(0, done - tonumber(r[2])) / (a.now - tonumber(r[1]))
  redis.call('HSET', rate, 'at', a.now, 'done', done, 'per_second', per_second)
end
local window = live * a.per_slot
if live > 0 then window = window + math.min(live * 50, math.ceil(per_second * a.latency)) end
redis.call('SET', P .. 'window', window)

local due = redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', a.now, 'LIMIT', 0, a.promote_max)
for _, id in ipairs(due) do
  redis.call('ZREM', P .. 'delayed', id)
  local m = redis.call('HMGET', P .. 'm:' .. id, 'user', 'score')
  if m[1] and m[2] then fq_enqueue(P, id, m[1], m[2]) end
end

local expired = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'deadline', '-inf', a.now, 'LIMIT', 0, 200)) do
  redis.call('ZREM', P .. 'deadline', id)
  local mkey = P .. 'm:' .. id
  if not redis.call('ZSCORE', P .. 'inflight', id)
     and redis.call('HGET', a.rec_prefix .. id, 'status') == STATUS.PENDING then
    local user = redis.call('HGET', mkey, 'user')
    if user then
      redis.call('ZREM', P .. 'u:' .. user, id)
      redis.call('ZREM', a.open .. user, id)
    end
    redis.call('ZREM', P .. 'delayed', id)
    redis.call('DEL', mkey)
    expired[#expired + 1] = id
  end
end

local republish = {}
local stale = {}
if not a.leave then
  stale = redis.call('ZRANGEBYSCORE', P .. 'claimed', '-inf', a.reclaim_before, 'LIMIT', 0, 100)
end
for _, id in ipairs(stale) do
  local msg = redis.call('HGET', P .. 'm:' .. id, 'msg')
  if msg then
    redis.call('ZADD', P .. 'claimed', a.now, id)
    republish[#republish + 1] = msg
  else
    redis.call('ZREM', P .. 'claimed', id)
    redis.call('ZREM', P .. 'inflight', id)
  end
end

local popped = {}
local room = window - redis.call('ZCARD', P .. 'inflight')
if room > 0 and not a.leave then popped = fq_pop(P, math.min(room, a.max_pop), a.now) end

local out = {cjson.encode({
  window = window, per_second = per_second, promoted = #due, more_due = #due >= a.promote_max,
  republished = #republish, popped = #popped, expired = expired,
})}
for _, msg in ipairs(republish) do out[#out + 1] = msg end
for _, msg in ipairs(popped) do out[#out + 1] = msg end
return out
