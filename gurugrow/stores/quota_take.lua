-- One look at RetailCRM's shared bucket: a slot, a place in the readers' line, or busy.
-- KEYS[1] tail: µs (server time) of the next free slot.
-- KEYS[2] waiting: the readers in line, token → arrival µs (same hash tag as KEYS[1]).
-- ARGV[1] interval µs between two slots; ARGV[2] horizon µs (how far ahead a slot may
-- be reserved); ARGV[3] patience µs; ARGV[4] token (a reader's place in line, "-"
-- otherwise); ARGV[5] "1" for a reader; ARGV[6] max patience µs (a silent reader's place
-- lapses after it).
-- Answers {1, wait µs, slot µs}: granted, sleep that long (the slot's server time);
-- {2, retry µs}: in line, look again then; {0, estimated wait µs}: no slot within the
-- patience (busy).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tail = tonumber(redis.call('GET', KEYS[1]) or '0')
if tail < now then tail = now end
local ahead = tail - now
local interval, horizon = tonumber(ARGV[1]), tonumber(ARGV[2])
local patience, token, is_read = tonumber(ARGV[3]), ARGV[4], ARGV[5] == '1'
local before = 0
if is_read then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[6]))
  local mine = redis.call('ZSCORE', KEYS[2], token)
  if mine then
    before = redis.call('ZCOUNT', KEYS[2], '-inf', '(' .. mine)
  else
    before = redis.call('ZCARD', KEYS[2])
  end
end
if ahead <= horizon and before == 0 then
  local nxt = tail + interval
  redis.call('SET', KEYS[1], nxt, 'PX', math.floor((nxt - now) / 1000) + 60000)
  if is_read then redis.call('ZREM', KEYS[2], token) end
  return {1, ahead, tail}
end
local estimate = ahead + before * interval
if estimate > patience then
  if is_read then redis.call('ZREM', KEYS[2], token) end
  return {0, estimate}
end
redis.call('ZADD', KEYS[2], 'NX', now, token)
redis.call('PEXPIRE', KEYS[2], math.floor(tonumber(ARGV[6]) / 1000) + 1000)
local retry = ahead - horizon
if retry < 0 then retry = 0 end
return {2, retry + before * interval}
