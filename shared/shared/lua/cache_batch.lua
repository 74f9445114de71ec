#!lua
-- (No flags: under maxmemory with noeviction the whole batch is refused with OOM, never half done.)
-- Read, delete and store several of one user's keys in one atomic step, within the user's quota:
-- if the sets would pass it, nothing at all is changed.
-- KEYS[1] index, KEYS[2] sizes, KEYS[3] names (see cache_common.lua), then the value keys of
-- "get", of "set" and of "delete", in that order.
-- ARGV[1] JSON: {"get": [member], "set": [{"member", "ttl_ms"}], "delete": [member], "max_keys",
-- "max_bytes", "max_get_bytes"}; ARGV[2..] the bytes of each set value, in the order of "set".
-- Returns an array: JSON {"ok": true, "set", "deleted"} (or {"ok": false, "limit", "max"}), then
-- the raw value of each "get" member as it was before this batch's writes (nil when absent).
local a = cjson.decode(ARGV[1])
local index, sizes, names = KEYS[1], KEYS[2], KEYS[3]
local gets, sets, dels = a.get, a.set, a.delete
local first_set = 4 + #gets
local first_del = first_set + #sets

local function refuse(limit, max)
  return {cjson.encode({ok = false, limit = limit, max = max})}
end

-- Reads first, bounded in total so one response cannot be a hundred megabytes.
local total = 0
for i = 1, #gets do
  total = total + redis.call('STRLEN', KEYS[3 + i])
end
if total > tonumber(a.max_get_bytes) then
  return refuse('get_bytes', tonumber(a.max_get_bytes))
end
local reply = {''}
for i = 1, #gets do
  reply[i + 1] = redis.call('GET', KEYS[3 + i])
end

local now = now_ms()
prune(index, sizes, names, now)
sync_names(index, names)

-- The quota after the whole batch, checked before anything is written.
if #sets > 0 then
  local keys, bytes = usage(index, sizes)
  local gone = {}
  for _, m in ipairs(dels) do
    local size = tonumber(redis.call('HGET', sizes, m))
    if size ~= nil then
      keys = keys - 1
      bytes = bytes - size
      gone[m] = true
    end
  end
  for i, s in ipairs(sets) do
    local old = nil
    if not gone[s.member] then old = tonumber(redis.call('HGET', sizes, s.member)) end
    if old == nil then
      keys = keys + 1
      old = 0
    end
    bytes = bytes - old + string.len(ARGV[1 + i])
  end
  if keys > tonumber(a.max_keys) then return refuse('keys', tonumber(a.max_keys)) end
  if bytes > tonumber(a.max_bytes) then return refuse('bytes', tonumber(a.max_bytes)) end
end

local deleted = 0
for i, m in ipairs(dels) do
  deleted = deleted + redis.call('DEL', KEYS[first_del + i - 1])
  local size = tonumber(redis.call('HGET', sizes, m))
  redis.call('ZREM', names, m)
  if size ~= nil then
    redis.call('ZREM', index, m)
    redis.call('HDEL', sizes, m)
    redis.call('HINCRBY', sizes, '#bytes', -size)
  end
end
for i, s in ipairs(sets) do
  local value = ARGV[1 + i]
  local size = string.len(value)
  local old = tonumber(redis.call('HGET', sizes, s.member)) or 0
  redis.call('SET', KEYS[first_set + i - 1], value, 'PX', s.ttl_ms)
  redis.call('ZADD', index, now + tonumber(s.ttl_ms), s.member)
  redis.call('ZADD', names, 0, s.member)
  redis.call('HSET', sizes, s.member, size)
  redis.call('HINCRBY', sizes, '#bytes', size - old)
end
expire_with_last(index, sizes, names)
reply[1] = cjson.encode({ok = true, set = #sets, deleted = deleted})
return reply
