-- Shared head of cache_put.lua and cache_delete.lua (put after their shebang line when loaded): forget the
-- user's entries whose expiry has passed, so the counts below are exact.
-- KEYS[1] the user's index (zset: key -> expiry, ms since the epoch, Redis's clock)
-- KEYS[2] the user's sizes (hash: key -> value bytes, and '#bytes' -> their sum)
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function prune(index, sizes, now)
  local gone = redis.call('ZRANGEBYSCORE', index, '-inf', now)
  if #gone == 0 then return end
  local freed = 0
  for i = 1, #gone, 500 do
    local part = {unpack(gone, i, math.min(i + 499, #gone))}
    for _, size in ipairs(redis.call('HMGET', sizes, unpack(part))) do
      freed = freed + (tonumber(size) or 0)
    end
    redis.call('HDEL', sizes, unpack(part))
  end
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  redis.call('HINCRBY', sizes, '#bytes', -freed)
end

local function usage(index, sizes)
  return redis.call('ZCARD', index), tonumber(redis.call('HGET', sizes, '#bytes') or '0')
end

-- The index and sizes live as long as the user's last entry.
local function expire_with_last(index, sizes)
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if #last == 0 then
    redis.call('DEL', index, sizes)
    return
  end
  redis.call('PEXPIREAT', index, last[2])
  redis.call('PEXPIREAT', sizes, last[2])
end
