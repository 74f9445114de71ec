-- Lands notifications: writes each once (SET NX), files it in its recipient's inbox and unread
-- zsets scored by the user's next sequence number, trims each inbox it touched to max_items,
-- and wakes the recipient's open streams (a PUBLISH of their last seq per user, after the
-- writes those streams will read).
-- KEYS: the inbox-users set, then per notification its record, inbox, unread and seq keys.
-- ARGV[1]: JSON {retention, max_items, channel_prefix, items: [{nid, user (quoted)}]};
-- ARGV[1 + i]: the record of items[i], as stored (kept out of the JSON: no second encoding).
-- Answers how many notifications were written now.
local a = cjson.decode(ARGV[1])
local touched = {}
local written = 0
for i, n in ipairs(a.items) do
  local b = 1 + (i - 1) * 4
  if redis.call('SET', KEYS[b + 1], ARGV[1 + i], 'EX', a.retention, 'NX') then
    local seq = redis.call('INCR', KEYS[b + 4])
    redis.call('ZADD', KEYS[b + 2], seq, n.nid)
    redis.call('ZADD', KEYS[b + 3], seq, n.nid)
    touched[KEYS[b + 2]] = {KEYS[b + 3], KEYS[b + 4], n.user}
    written = written + 1
  end
end
for ikey, other in pairs(touched) do
  local extra = redis.call('ZCARD', ikey) - a.max_items
  if extra > 0 then
    local old = redis.call('ZRANGE', ikey, 0, extra - 1)
    redis.call('ZREM', ikey, unpack(old))
    redis.call('ZREM', other[1], unpack(old))
  end
  redis.call('EXPIRE', ikey, a.retention)
  redis.call('EXPIRE', other[1], a.retention)
  redis.call('EXPIRE', other[2], a.retention)
  redis.call('SADD', KEYS[1], other[3])
  redis.call('PUBLISH', a.channel_prefix .. other[3], redis.call('GET', other[2]))
end
return written
