-- A status change of a record (rec_update in records_lib.lua).
-- In (JSON): key, channel, fields, count_attempt, keep, event
-- Out: -1 (no record), 0 (already final, nothing written) or 1
return rec_update(cjson.decode(ARGV[1]))
