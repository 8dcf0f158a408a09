
local first, last = 1, #KEYS
if ARGV[1] == '1' then
  redis.call('DEL', KEYS[1])
  first = 2
end
local price = tonumber(ARGV[2])
if price > 0 then
  local spent = tonumber(redis.call('GET', KEYS[last]) or '0')
  if spent > 0 then redis.call('DECRBY', KEYS[last], math.min(price, spent)) end
  last = last - 1
end
for i = first, last do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end
end
return 1
