
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
local previous = redis.call('SET', KEYS[2], KEYS[1], 'EX', ARGV[1], 'GET')
if previous and previous ~= KEYS[1] then redis.call('DEL', previous) end
return 1
