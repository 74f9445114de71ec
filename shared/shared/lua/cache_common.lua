-- Shared head of the cache_*.lua scripts (put after their shebang line when loaded): forget the
-- user's entries whose expiry has passed, so the counts below are exact; and check If-Match.
-- KEYS[1] the user's index (zset: key -> expiry, ms since the epoch, Redis's clock)
-- KEYS[2] the user's sizes (hash: key -> value bytes, and '#bytes' -> their sum)
-- KEYS[3] the user's names (zset: every key at score 0, so ZRANGEBYLEX lists a prefix in order)
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function prune(index, sizes, names, now)
  local gone = redis.call('ZRANGEBYSCORE', index, '-inf', now)
  if #gone == 0 then return end
  local freed = 0
  for i = 1, #gone, 500 do
    local part = {unpack(gone, i, math.min(i + 499, #gone))}
    for _, size in ipairs(redis.call('HMGET', sizes, unpack(part))) do
      freed = freed + (tonumber(size) or 0)
    end
    redis.call('HDEL', sizes, unpack(part))
    redis.call('ZREM', names, unpack(part))
  end
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  redis.call('HINCRBY', sizes, '#bytes', -freed)
end

-- names follows index in every script; it can only differ when it is missing (written before
-- names existed, or evicted by an allkeys-lru cache Redis): then it is rebuilt from index.
local function sync_names(index, names)
  if redis.call('ZCARD', names) == redis.call('ZCARD', index) then return end
  redis.call('DEL', names)
  local all = redis.call('ZRANGE', index, 0, -1)
  for i = 1, #all, 500 do
    local args = {}
    for j = i, math.min(i + 499, #all) do
      args[#args + 1] = 0
      args[#args + 1] = all[j]
    end
    redis.call('ZADD', names, unpack(args))
  end
end

local function usage(index, sizes)
  return redis.call('ZCARD', index), tonumber(redis.call('HGET', sizes, '#bytes') or '0')
end

-- The index, sizes and names live as long as the user's last entry.
local function expire_with_last(index, sizes, names)
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if #last == 0 then
    redis.call('DEL', index, sizes, names)
    return
  end
  redis.call('PEXPIREAT', index, last[2])
  redis.call('PEXPIREAT', sizes, last[2])
  redis.call('PEXPIREAT', names, last[2])
end

-- RFC 9110 13.1.1/13.1.2, strong comparison: "*" matches any current value, a list matches when
-- it holds the current value's tag (the SHA-1 hex of its bytes). No current value matches nothing.
local function etag_matches(current, tags)
  if not current then return false end
  if tags == '*' then return true end
  local tag = redis.sha1hex(current)
  for _, t in ipairs(tags) do
    if t == tag then return true end
  end
  return false
end

-- a.if_match / a.if_none_match ("*" or a list of tags, absent when not sent) against the value.
local function preconditions_hold(value_key, a)
  if a.if_match == nil and a.if_none_match == nil then return true end
  local current = redis.call('GET', value_key)
  if a.if_match ~= nil and not etag_matches(current, a.if_match) then return false end
  if a.if_none_match ~= nil and etag_matches(current, a.if_none_match) then return false end
  return true
end
