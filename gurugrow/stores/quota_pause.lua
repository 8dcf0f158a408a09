-- No slot is granted to anyone for a while (RetailCRM answered 503/429).
-- KEYS[1] tail: µs (server time) of the next free slot.
-- ARGV[1] pause µs.
-- Answers {1, 0}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tail = tonumber(redis.call('GET', KEYS[1]) or '0')
if tail < now then tail = now end
local untl = now + tonumber(ARGV[1])
if untl > tail then
  redis.call('SET', KEYS[1], untl, 'PX', math.floor((untl - now) / 1000) + 60000)
end
return {1, 0}
