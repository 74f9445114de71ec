-- A worker picks the task up: one round trip answers the record as it was and, unless it is
-- final or cancelled, marks it STARTED, counts the attempt and publishes the new status.
-- In (JSON): key, channel, started_at, worker, event, omit (fields the worker never reads)
-- Out: the record as it was, without the omitted fields (a flat list; empty when there is none)
local a = cjson.decode(ARGV[1])
local rec = redis.call('HGETALL', a.key)
if #rec == 0 then return rec end
local omit, out, st, cancel = {}, {}, nil, nil
for _, name in ipairs(a.omit) do omit[name] = true end
for i = 1, #rec, 2 do
  local name, value = rec[i], rec[i + 1]
  if name == 'status' then st = value elseif name == 'cancel' then cancel = value end
  if not omit[name] then
    out[#out + 1] = name
    out[#out + 1] = value
  end
end
if rec_final(st) or cancel == '1' then return out end
redis.call('HSET', a.key, 'status', STATUS.STARTED, 'started_at', a.started_at, 'worker', a.worker)
redis.call('HINCRBY', a.key, 'attempts', 1)
redis.call('PUBLISH', a.channel, a.event)
return out
