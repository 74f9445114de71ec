-- Helpers every ledger script may call; prepended with the states (ledger_keys.LEDGER_PRELUDE).

-- redis.call(cmd, key, items...) a thousand items at a time: unpack() is bounded by Lua's C
-- stack and a call's items can be more. A thousand is even, so (score, member) pairs stay whole.
local function call_in_slices(cmd, key, items)
  for s = 1, #items, 1000 do
    redis.call(cmd, key, unpack(items, s, math.min(s + 999, #items)))
  end
end
