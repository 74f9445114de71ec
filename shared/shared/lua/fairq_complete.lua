-- Tasks left the broker window (fq_complete in fairq_lib.lua), seen by the worker's pass or by
-- a pool process whose task ended without a final record written here (a retry, a copy that
-- had already finished).
-- In (JSON): prefix, open, ids, finished, now, max_pop, confirm (ids published since)
-- Out: {msg, ...}
local a = cjson.decode(ARGV[1])
fq_confirm(a.prefix, a.confirm)
return fq_complete(a.prefix, a.open, a.ids, a.finished, a.now, a.max_pop)
