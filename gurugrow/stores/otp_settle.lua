
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[3] then return 0 end
if redis.call('HGET', KEYS[1], 'state') == 'claimed' then
  redis.call('HSET', KEYS[1], 'state', ARGV[1])
  if ARGV[1] == 'done' then redis.call('HSET', KEYS[1], 'answer', ARGV[2]) end
end
redis.call('DEL', KEYS[2])
return 1
