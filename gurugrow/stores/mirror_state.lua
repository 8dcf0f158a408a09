-- The mirror's sync state, written only by the poller holding the lease.
-- KEYS[1] state hash, KEYS[2] lease; ARGV[1] the holder's token, ARGV[2] the state's TTL
-- (seconds), ARGV[3] "set" or "add", then field/value pairs: "set" writes them, "add"
-- adds each value to its field (counts). Answers 1, or 0 when the lease is not held
-- (lapsed, taken over, or Redis was flushed): nothing is written then.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
for i = 4, #ARGV, 2 do
  if ARGV[3] == 'add' then
    redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
