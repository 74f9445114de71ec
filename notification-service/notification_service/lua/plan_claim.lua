-- Plans notifications and claims their deliveries for a first attempt, a slice per call.
-- A delivery is created in the state its recipient's preferences give it: SENDING (claimed
-- by the caller's token, attempt 1), DEFERRED (quiet hours: due at next_at, in the
-- deferred index) or SKIPPED (its channel is switched off; final).
-- States and call_in_slices: the prelude (ledger_keys.LEDGER_PRELUDE).
-- KEYS: sending index, deferred index, the batch-count keys, then per notification its plan
-- key followed by one delivery key per device.
-- ARGV: JSON {now, retention, token, batches (how many batch-count keys), notifications:
-- [{batch (its count key, 0: none), bid, nid, devices: [{dev, channel, state, next_at}]}]}.
-- Answers per notification 1 when planned now, 0 when already planned (or cancelled).
local a = cjson.decode(ARGV[1])
local now, ttl, token = a.now, a.retention, a.token
local k = 3 + a.batches
local out, claims, later, counts = {}, {}, {}, {}
for i, n in ipairs(a.notifications) do
  local plan, devices = KEYS[k], n.devices
  if redis.call('HSETNX', plan, '_planned', now) == 0 then
    out[i] = 0
  else
    out[i] = 1
    redis.call('EXPIRE', plan, ttl)
    local tally = nil
    if n.batch > 0 then
      tally = counts[n.batch] or {_planned = 0}
      counts[n.batch] = tally
      tally._planned = tally._planned + 1
    end
    for j, d in ipairs(devices) do
      local dkey = KEYS[k + j]
      redis.call('HSET', plan, d.dev, d.channel)
      -- One HSET per delivery (the fields in the same order whatever the state).
      if d.state == SENDING then
        redis.call('HSET', dkey, 'status', d.state, 'channel', d.channel, 'created_at', now,
                   'updated_at', now, 'batch_id', n.bid, 'error', '',
                   'attempts', 1, 'since', now, 'token', token)
        claims[#claims + 1] = now
        claims[#claims + 1] = n.nid .. '|' .. d.dev
      elseif d.state == DEFERRED then
        redis.call('HSET', dkey, 'status', d.state, 'channel', d.channel, 'created_at', now,
                   'updated_at', now, 'batch_id', n.bid, 'error', 'quiet hours of the recipient',
                   'attempts', 0, 'next_at', d.next_at)
        later[#later + 1] = d.next_at
        later[#later + 1] = n.nid .. '|' .. d.dev
      else
        redis.call('HSET', dkey, 'status', d.state, 'channel', d.channel, 'created_at', now,
                   'updated_at', now, 'batch_id', n.bid,
                   'error', 'the channel is switched off in the recipient\'s preferences',
                   'attempts', 0)
      end
      redis.call('EXPIRE', dkey, ttl)
      if tally then tally[d.state] = (tally[d.state] or 0) + 1 end
    end
  end
  k = k + 1 + #devices
end
call_in_slices('ZADD', KEYS[1], claims)
call_in_slices('ZADD', KEYS[2], later)
for c, tally in pairs(counts) do
  for state, v in pairs(tally) do
    if v > 0 then redis.call('HINCRBY', KEYS[2 + c], state, v) end
  end
end
return out
