-- Hands out what has come due in the scheduled and deferred indexes, leasing each entry
-- (its score moves to lease_until) so one lost on its way to a worker comes due again.
-- Whoever finishes it removes it. KEYS: scheduled index, deferred index.
-- ARGV: JSON {now, lease_until, limit}. Answers JSON {scheduled: [nid], deferred: [member]}.
local a = cjson.decode(ARGV[1])
local out = {}
for i, name in ipairs({'scheduled', 'deferred'}) do
  local due = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', a.now, 'LIMIT', 0, a.limit)
  for _, m in ipairs(due) do redis.call('ZADD', KEYS[i], a.lease_until, m) end
  out[name] = due
end
-- cjson writes an empty table as {}; the caller reads either.
return cjson.encode(out)
