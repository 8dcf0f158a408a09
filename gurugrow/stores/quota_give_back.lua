-- An unused slot taken ahead goes back, when nobody reserved after it: the next grant
-- may have it (or now, if it passed). No call went out in it, so the spacing of the
-- calls made is kept.
-- KEYS[1] tail: µs (server time) of the next free slot.
-- ARGV[1] the slot µs; ARGV[2] interval µs.
-- Answers {1, 1} when it went back, {1, 0} when not.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tail = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = tonumber(ARGV[1])
if tail == slot + tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], slot, 'PX', math.max(math.floor((slot - now) / 1000), 0) + 60000)
  return {1, 1}
end
return {1, 0}
