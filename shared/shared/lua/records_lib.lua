-- Task records: the part every script that writes one shares (put in front of it when loaded,
-- after TERMINAL, the set of final statuses rendered from Python's TERMINAL_STATUSES).
--   t:rec:{id}    hash: the record (the key is given to each script, as are the others)
--   t:user:{own}  zset: the owner's task ids scored by creation time
--   t:ev:{id}     pub/sub channel of the task's status and progress events

local function rec_final(status)
  return status and TERMINAL[status] == true
end

local function rec_hset(key, fields)
  local flat = {}
  for k, v in pairs(fields) do
    flat[#flat + 1] = k
    flat[#flat + 1] = v
  end
  redis.call('HSET', key, unpack(flat))
end

-- A new record, listed for its owner; entries older than the records fall off the list.
-- r: key, fields (name -> string), user_key, created (score, a string), now, expires
local function rec_create(r)
  rec_hset(r.key, r.fields)
  redis.call('EXPIRE', r.key, r.expires)
  redis.call('ZADD', r.user_key, r.created, r.id)
  redis.call('ZREMRANGEBYSCORE', r.user_key, 0, r.now - r.expires)
  redis.call('EXPIRE', r.user_key, r.expires)
end

-- Set fields unless the record is final: a late STARTED or PROGRESS from a redelivered copy
-- must never turn a finished task back into a running one. Publishes the event.
-- u: key, channel, fields (name -> string), count_attempt, keep (seconds, 0: none), event
-- Returns -1 (no record), 0 (already final) or 1.
local function rec_update(u)
  if redis.call('EXISTS', u.key) == 0 then return -1 end
  if rec_final(redis.call('HGET', u.key, 'status')) then return 0 end
  rec_hset(u.key, u.fields)
  if u.count_attempt then redis.call('HINCRBY', u.key, 'attempts', 1) end
  if u.keep > 0 then redis.call('EXPIRE', u.key, u.keep, 'GT') end
  redis.call('PUBLISH', u.channel, u.event)
  return 1
end
