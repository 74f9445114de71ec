-- Records attempts and moves their deliveries out of `sending`, many per call, each only if it
-- still holds the claim token it was sent under (else the sweeper took it back meanwhile).
-- A retry (status QUEUED) goes back to the due index at its next_at; an attempt that carries
-- a `failure` (decided by the caller) goes on its batch's failure list, the first few kept.
-- States and call_in_slices: the prelude (ledger_keys.LEDGER_PRELUDE).
-- KEYS: due index, sending index, a (counts, failures) pair per batch, then per attempt its
-- delivery key and attempts key.
-- ARGV: JSON {now, retention, batches (how many pairs), failures_kept, attempts: [{member,
-- token, status, error, http_status, attempt (JSON), next_at, batch (its pair, 0: none),
-- failure (JSON or '')}]}.
-- Answers per attempt 1 when recorded, 0 when the claim was lost.
local a = cjson.decode(ARGV[1])
local now, ttl = a.now, a.retention
local k = 3 + 2 * a.batches
local out, done, due, moves = {}, {}, {}, {}
for i, e in ipairs(a.attempts) do
  local dkey, akey = KEYS[k], KEYS[k + 1]
  k = k + 2
  local cur = redis.call('HMGET', dkey, 'status', 'token')
  if cur[1] ~= SENDING or cur[2] ~= e.token then
    out[i] = 0
  else
    out[i] = 1
    local new, b = e.status, e.batch
    if new == QUEUED then
      redis.call('HSET', dkey, 'status', new, 'updated_at', now, 'error', e.error,
                 'http_status', e.http_status, 'next_at', e.next_at)
      due[#due + 1] = e.next_at
      due[#due + 1] = e.member
    else
      redis.call('HSET', dkey, 'status', new, 'updated_at', now, 'error', e.error,
                 'http_status', e.http_status)
    end
    redis.call('HDEL', dkey, 'token', 'since')
    redis.call('RPUSH', akey, e.attempt)
    redis.call('EXPIRE', akey, ttl)
    done[#done + 1] = e.member
    if b > 0 then
      local m = moves[b] or {[SENDING] = 0}
      moves[b] = m
      m[SENDING] = m[SENDING] - 1
      m[new] = (m[new] or 0) + 1
      local fkey = KEYS[2 + 2 * b]
      if e.failure ~= '' and redis.call('LLEN', fkey) < a.failures_kept then
        redis.call('RPUSH', fkey, e.failure)
        redis.call('EXPIRE', fkey, ttl)
      end
    end
  end
end
call_in_slices('ZREM', KEYS[2], done)
call_in_slices('ZADD', KEYS[1], due)
for b, m in pairs(moves) do
  for state, v in pairs(m) do redis.call('HINCRBY', KEYS[1 + 2 * b], state, v) end
end
return out
