-- Holds a notification until its send_at: its record under the scheduled key (not yet in
-- the inbox) and its id in the scheduled index, scored by when it is due.
-- KEYS: scheduled record, scheduled index. ARGV: JSON {nid, record, send_at, retention}.
local a = cjson.decode(ARGV[1])
redis.call('SET', KEYS[1], a.record, 'EX', a.retention)
redis.call('ZADD', KEYS[2], a.send_at, a.nid)
return 1
