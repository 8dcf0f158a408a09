
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tail = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[1] == 'give_back' then
  -- Nobody reserved after the unused slot: the next grant may have it (or now, if it
  -- passed). No call went out in it, so the spacing of the calls made is kept.
  local slot = tonumber(ARGV[2])
  if tail == slot + tonumber(ARGV[3]) then
    redis.call('SET', KEYS[1], slot, 'PX', math.max(math.floor((slot - now) / 1000), 0) + 60000)
    return {1, 1}
  end
  return {1, 0}
end
if tail < now then tail = now end
local ahead = tail - now
if ARGV[1] == 'pause' then
  local untl = now + tonumber(ARGV[2])
  if untl > tail then
    redis.call('SET', KEYS[1], untl, 'PX', math.floor((untl - now) / 1000) + 60000)
  end
  return {1, 0}
end
if ARGV[1] == 'leave' then
  redis.call('ZREM', KEYS[2], ARGV[2])
  return {1, 0}
end
local interval, horizon = tonumber(ARGV[2]), tonumber(ARGV[3])
local patience, token, is_read = tonumber(ARGV[4]), ARGV[5], ARGV[6] == '1'
local before = 0
if is_read then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[7]))
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
redis.call('PEXPIRE', KEYS[2], math.floor(tonumber(ARGV[7]) / 1000) + 1000)
local retry = ahead - horizon
if retry < 0 then retry = 0 end
return {2, retry + before * interval}
