-- Gives back what an allowed check charged (a layer further in refused the request).
-- KEYS[i]: rule i's theoretical arrival time, as in check.lua.
-- ARGV[2i-1], ARGV[2i]: rule i's microseconds per unit, the units to give back.
local EPOCH = 1700000000
local time = redis.call('TIME')
local now = (tonumber(time[1]) - EPOCH) * 1000000 + tonumber(time[2])
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key))
  if tat then
    local back = tat - tonumber(ARGV[2 * i - 1]) * tonumber(ARGV[2 * i])
    if back > now then
      redis.call('SET', key, string.format('%.3f', back), 'PX', math.ceil((back - now) / 1000) + 1)
    else
      redis.call('DEL', key)
    end
  end
end
return 0
