
local cur = redis.call('HMGET', KEYS[1], 'request_id', 'status')
if cur[1] ~= ARGV[1] or cur[2] == ARGV[2] then return 0 end
if cur[2] == 'delivered' or cur[2] == 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
return 1
