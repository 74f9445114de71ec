-- A failed attempt that will be retried: its message waits in the delayed set until due, and
-- it keeps its owner's count (it is not finished). Its place in the broker window is given back.
-- In (JSON): prefix, id, due, keep
-- Out: 1, or 0 when its message is gone (then it cannot be retried)
local a = cjson.decode(ARGV[1])
local P = a.prefix
local mkey = P .. 'm:' .. a.id
if redis.call('EXISTS', mkey) == 0 then return 0 end
redis.call('ZREM', P .. 'inflight', a.id)
redis.call('ZREM', P .. 'claimed', a.id)
redis.call('EXPIRE', mkey, a.keep)
redis.call('ZADD', P .. 'delayed', a.due, a.id)
return 1
