-- Fair queues: the part every fair-queue script shares (prepended to each when it is loaded).
--
-- One queue's keys share the prefix P = 't:fq:<vhost>:<queue>:'; O = 't:fq:<vhost>:open:'.
--   P..'ring'       list: users with queued work, in turn order, each user once
--   P..'inring'     set: the users now in the ring
--   P..'u:'..user   zset: the user's queued task ids; score (9 - priority) * 1e12 + seq, so the
--                   user's highest priority comes first, then the oldest
--   P..'seq'        counter: first come, first served within one user and priority
--   P..'m:'..id     hash: user, score, msg (the broker message to publish, JSON)
--   P..'delayed'    zset: id -> due time (epoch seconds): countdowns wait here, not in a worker
--   P..'deadline'   zset: id -> queue_timeout deadline (epoch seconds), for tasks that have one
--   P..'inflight'   zset: id -> time popped: in the broker or running, not finished
--   P..'claimed'    zset: id -> time popped, until its publisher confirms the publish
--   P..'window'     how many may be in flight: the live worker slots times a few
--   P..'workers'    zset: node -> heartbeat expiry; P..'slots' hash: node -> slots;
--   P..'total'      the live slots summed
--   P..'done'       counter of tasks that left the window; P..'rate' hash: at, done, per_second
--   O..user         zset: the user's unfinished task ids -> submit time (all queues)
-- Users are quoted by the caller, so no user can reach another key. The scripts build the
-- per-user keys themselves: they need one Redis (not Redis Cluster).

local function fq_enqueue(P, id, user, score)
  redis.call('ZADD', P .. 'u:' .. user, score, id)
  if redis.call('SADD', P .. 'inring', user) == 1 then
    redis.call('RPUSH', P .. 'ring', user)
  end
end

local function fq_room(P)
  local window = tonumber(redis.call('GET', P .. 'window') or '0')
  return window - redis.call('ZCARD', P .. 'inflight')
end

-- Up to n tasks in turn: the user at the head of the ring gives one task (their highest
-- priority, then their oldest) and goes back to the tail while they have more.
local function fq_pop(P, n, now)
  local out = {}
  local ring = P .. 'ring'
  local tries = 0
  while #out < n and tries < n + 100 do
    tries = tries + 1
    local user = redis.call('LPOP', ring)
    if not user then break end
    local ukey = P .. 'u:' .. user
    local got = redis.call('ZPOPMIN', ukey)
    if redis.call('EXISTS', ukey) == 1 then
      redis.call('RPUSH', ring, user)
    else
      redis.call('SREM', P .. 'inring', user)
    end
    local id = got[1]
    if id then
      local msg = redis.call('HGET', P .. 'm:' .. id, 'msg')
      if msg then
        redis.call('ZADD', P .. 'inflight', now, id)
        redis.call('ZADD', P .. 'claimed', now, id)
        out[#out + 1] = msg
      end
    end
  end
  return out
end

-- Publishes confirmed: the ids are no longer claimed (a publisher sends them along with its next
-- call, or on their own within a second).
local function fq_confirm(P, ids)
  for _, id in ipairs(ids or {}) do redis.call('ZREM', P .. 'claimed', id) end
end

-- Tasks left the broker window. A finished one gives back its place and its owner's count;
-- a retried one only its place (Celery publishes its next attempt itself). Then the window
-- is filled again in turn: the messages popped are returned for the caller to publish.
local function fq_complete(P, open, ids, finished, now, max_pop)
  for _, id in ipairs(ids) do
    redis.call('ZREM', P .. 'inflight', id)
    redis.call('ZREM', P .. 'claimed', id)
    if finished then
      local mkey = P .. 'm:' .. id
      local user = redis.call('HGET', mkey, 'user')
      if user then redis.call('ZREM', open .. user, id) end
      redis.call('DEL', mkey)
      redis.call('ZREM', P .. 'deadline', id)
    end
  end
  redis.call('INCRBY', P .. 'done', #ids)
  local room = fq_room(P)
  if room <= 0 then return {} end
  return fq_pop(P, math.min(room, max_pop), now)
end
