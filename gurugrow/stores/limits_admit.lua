
local budget, cooldown = tonumber(ARGV[1]), tonumber(ARGV[2])
local cost_budget, price = tonumber(ARGV[3]), tonumber(ARGV[4])
if budget > 0 and tonumber(redis.call('GET', KEYS[1]) or '0') >= budget then
  return {'budget', 0}
end
if cost_budget > 0 and tonumber(redis.call('GET', KEYS[3]) or '0') >= cost_budget then
  return {'cost_budget', 0}
end
if cooldown > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  return {'cooldown', redis.call('TTL', KEYS[2])}
end
for i = 4, #KEYS do
  local limit = tonumber(ARGV[3 * i - 7])
  if limit > 0 and tonumber(redis.call('GET', KEYS[i]) or '0') >= limit then
    return {ARGV[3 * i - 5], 0}
  end
end
if cooldown > 0 then redis.call('SET', KEYS[2], '1', 'EX', cooldown) end
for i = 4, #KEYS do
  if tonumber(ARGV[3 * i - 7]) > 0 then
    local n = redis.call('INCR', KEYS[i])
    if n == 1 then redis.call('EXPIRE', KEYS[i], ARGV[3 * i - 6]) end
  end
end
local answer = 'ok'
if cost_budget > 0 and price > 0 then
  local spent = redis.call('INCRBY', KEYS[3], price)
  if spent == price then redis.call('EXPIRE', KEYS[3], 172800) end
  if spent >= cost_budget and spent - price < cost_budget then answer = 'cost_spent_now' end
end
if budget > 0 then
  local spent = redis.call('INCR', KEYS[1])
  if spent == 1 then redis.call('EXPIRE', KEYS[1], 172800) end
  if spent == budget then answer = 'budget_spent_now' end
end
return {answer, 0}
