
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'result', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
if holder then redis.call('DEL', KEYS[2]) end
return 1
