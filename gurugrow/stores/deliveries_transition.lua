
local cur = redis.call('HMGET', KEYS[1], 'request_id', 'state')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[3], unpack(ARGV, 4))
return 1
