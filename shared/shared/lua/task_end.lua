-- A task ended in a pool process, in one round trip: its record's final status (unless it is
-- final already) and the fair queue's end of it (fq_complete: its place and its owner's count
-- given back, the window filled again in turn).
-- In (JSON): id, record (rec_update's fields), prefix, open, now, max_pop,
--            confirm (ids published since)
-- Out: {updated (rec_update's answer), msg, ...}
local a = cjson.decode(ARGV[1])
local updated = rec_update(a.record)
fq_confirm(a.prefix, a.confirm)
local out = fq_complete(a.prefix, a.open, {a.id}, true, a.now, a.max_pop)
table.insert(out, 1, updated)
return out
