
local m = redis.call('HMGET', KEYS[1], 'result', 'notes')
if m[1] then return {'done', m[1]} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'running', ''} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
local resumed = redis.call('HSETNX', KEYS[1], 'claimed', '1') == 0
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {resumed and 'resumed' or 'claimed', m[2] or ''}
