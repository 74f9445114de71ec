-- A record written on its own (tests; a submission writes it in task_submit.lua).
-- In (JSON): the rec_create fields (records_lib.lua)
rec_create(cjson.decode(ARGV[1]))
return 1
