
local all = redis.call('HGETALL', KEYS[1])
if #all == 0 then return {'missing', 0} end
local s = {}
for i = 1, #all, 2 do s[all[i]] = all[i + 1] end
if s['state'] == 'used' or not s['hash'] or s['channel'] ~= ARGV[9]
    or s['account_id'] ~= ARGV[10] or s['purpose'] ~= ARGV[11] then
  return {'missing', 0}
end
local function failed(result)
  local max_failures = tonumber(ARGV[4])
  if max_failures > 0 then
    local failures = redis.call('INCR', KEYS[3])
    if failures == 1 then redis.call('EXPIRE', KEYS[3], 3600) end
    if failures >= max_failures then
      local level = redis.call('INCR', KEYS[4])
      if level == 1 then redis.call('EXPIRE', KEYS[4], 86400) end
      redis.call('DEL', KEYS[3])
      local seconds = math.min(tonumber(ARGV[5]) * 2 ^ (level - 1), tonumber(ARGV[6]))
      redis.call('SET', KEYS[2], '1', 'EX', math.floor(seconds))
      return {result, math.floor(seconds), all}
    end
  end
  return {result, 0, all}
end
local lock = redis.call('TTL', KEYS[2])
if lock > 0 then return {'identity_locked', lock, all} end
local state = s['state']
if state == 'done' or (state == 'claimed' and redis.call('EXISTS', KEYS[5]) == 1) then
  if s['hash'] == ARGV[1] then return {state == 'done' and 'replay' or 'busy', 0, all} end
  return failed('missing')
end
if state == 'locked' then return {'locked', 0, all} end
if tonumber(ARGV[3]) > tonumber(s['expires_at']) then return {'expired', 0, all} end
if s['hash'] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', 'claimed')
  redis.call('SET', KEYS[5], ARGV[7], 'PX', ARGV[8])
  return {'ok', 0, all}
end
local result = 'invalid'
if redis.call('HINCRBY', KEYS[1], 'attempts', 1) >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'locked')
  result = 'locked'
end
return failed(result)
