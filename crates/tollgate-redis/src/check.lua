-- GCRA over every rule of one request, all or nothing, on the Redis server's clock.
-- KEYS[i]: rule i's theoretical arrival time (TAT), in microseconds since the epoch below, which
--          keeps the numbers small enough for a Lua double to hold them to a hundredth of a
--          microsecond.
-- ARGV[3i-2], ARGV[3i-1], ARGV[3i]: rule i's microseconds per unit (fractional), the request's
--          cost in units, the rule's burst in units.
-- Returns {1, remaining_1, reset_1, remaining_2, reset_2, ...} (resets in microseconds) when
-- every rule had room and each was charged, or {0, i, remaining, reset, wait} for the first
-- rule without room, charging nothing (wait -1: the cost exceeds the burst, it never fits).
local EPOCH = 1700000000
local time = redis.call('TIME')
local now = (tonumber(time[1]) - EPOCH) * 1000000 + tonumber(time[2])
local arrivals = {}
local answer = {1}
for i, key in ipairs(KEYS) do
  local per = tonumber(ARGV[3 * i - 2])
  local cost = tonumber(ARGV[3 * i - 1])
  local burst = tonumber(ARGV[3 * i])
  local capacity = per * burst
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  if cost > burst then
    return {0, i, 0, math.ceil(tat - now), -1}
  end
  local arrival = tat + per * cost
  -- A hundredth of a microsecond absorbs the rounding of fractional intervals.
  if arrival - now > capacity + 0.01 then
    local wait = arrival - now - capacity
    local remaining = cost - math.ceil(wait / per - 1e-9)
    if remaining < 0 then remaining = 0 end
    if remaining > burst then remaining = burst end
    return {0, i, remaining, math.ceil(tat - now), math.ceil(wait)}
  end
  arrivals[i] = arrival
  answer[#answer + 1] = math.floor((capacity - (arrival - now)) / per + 1e-9)
  answer[#answer + 1] = math.ceil(arrival - now)
end
for i, key in ipairs(KEYS) do
  -- The key lives until its rule is full again: then it is the same as no key.
  local ttl = math.ceil((arrivals[i] - now) / 1000) + 1
  redis.call('SET', key, string.format('%.3f', arrivals[i]), 'PX', ttl)
end
return answer
