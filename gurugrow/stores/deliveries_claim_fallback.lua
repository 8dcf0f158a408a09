
local cur = redis.call('HMGET', KEYS[1], 'request_id', 'state', 'fallback_until')
if cur[1] ~= ARGV[1] then return 0 end
if cur[2] ~= 'watching' and not (cur[2] == 'fallen_back'
    and tonumber(cur[3] or '0') <= tonumber(ARGV[2])) then return 0 end
redis.call('HSET', KEYS[1], 'state', 'fallen_back', 'fallback_until', ARGV[3],
           'undeliverable', ARGV[4])
return 1
