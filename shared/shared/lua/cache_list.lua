#!lua flags=no-writes
-- (no-writes: a listing changes nothing, so it is answered even when the cache's Redis is full.)
-- One page of the user's own keys, in key order, from the user's own index: never a SCAN of the
-- keyspace, never another user's keys.
-- KEYS[1] index, KEYS[2] sizes, KEYS[3] names (see cache_common.lua).
-- ARGV[1] JSON: {"prefix", "after"?, "limit"}: keys starting with prefix, after `after` (the
-- last key of the previous page), at most limit of them.
-- Returns JSON: {"items": [{"key", "ttl", "size"}], "next"?}; "next" is the key to continue after,
-- absent on the last page. Expired keys not yet pruned are skipped, so a page may hold fewer
-- than limit items while next is still set.
local a = cjson.decode(ARGV[1])
local index, sizes, names = KEYS[1], KEYS[2], KEYS[3]
local now = now_ms()
local limit = tonumber(a.limit)
local prefix = a.prefix

local page
if redis.call('ZCARD', names) == redis.call('ZCARD', index) then
  -- Keys are ASCII, so every key that starts with prefix sorts below prefix .. "\255".
  local min = a.after and ('(' .. a.after) or (prefix == '' and '-' or ('[' .. prefix))
  local max = prefix == '' and '+' or ('(' .. prefix .. '\255')
  page = redis.call('ZRANGEBYLEX', names, min, max, 'LIMIT', 0, limit + 1)
else
  -- names is missing (written before it existed, or evicted) until the user's next write
  -- rebuilds it: sort the index instead (at most CACHE_MAX_KEYS_PER_USER members).
  page = {}
  for _, m in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    if string.sub(m, 1, #prefix) == prefix and (not a.after or m > a.after) then
      page[#page + 1] = m
    end
  end
  table.sort(page)
  page = {unpack(page, 1, math.min(#page, limit + 1))}
end

local out = {items = {}}
local seen = math.min(#page, limit)
if #page > limit then out.next = page[limit] end
if seen > 0 then
  local examined = {unpack(page, 1, seen)}
  local expiries = redis.call('ZMSCORE', index, unpack(examined))
  local bytes = redis.call('HMGET', sizes, unpack(examined))
  for i, key in ipairs(examined) do
    local expiry = tonumber(expiries[i])
    if expiry ~= nil and expiry > now then
      out.items[#out.items + 1] = {
        key = key,
        ttl = math.floor((expiry - now + 500) / 1000),
        size = tonumber(bytes[i]) or 0,
      }
    end
  end
end
return cjson.encode(out)
