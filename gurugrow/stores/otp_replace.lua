
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local state = redis.call('HGET', KEYS[1], 'state')
if state and state ~= 'pending' then return -1 end
if tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') >= tonumber(ARGV[6]) then
  return -1
end
local sends = redis.call('HINCRBY', KEYS[1], 'sends', 1)
redis.call('HSET', KEYS[1], 'route', ARGV[1], 'expires_at', ARGV[2], 'salt', ARGV[3],
           'hash', ARGV[4], 'attempts', 0, 'state', 'pending')
redis.call('EXPIRE', KEYS[1], ARGV[5])
return sends
