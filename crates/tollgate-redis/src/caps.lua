-- The spend caps of one API key; every command is this script with a different ARGV[1], so
-- that each is atomic and all share one way of expiring reservations. Every key carries the
-- API key's hash tag: one slot on Redis Cluster.
-- KEYS[1] holds      hash: reservation id -> "amount at_ms label label ..." (the windows held)
-- KEYS[2] held       hash: window label -> micro-units held by open reservations
-- KEYS[3] deadlines  sorted set: reservation id, scored by when it expires (ms, server time)
-- KEYS[4] expired    sorted set: reservation id, scored by when it expired (kept an hour, so
--                    that a late settlement still charges what was used)
-- KEYS[4 + i]        cap i's window: a string of micro-units spent (calendar), or a hash of
--                    slot -> micro-units spent (rolling)
-- ARGV[1] the command; ARGV[2..] its arguments, then per cap the six CAP fields below.
-- The gateway decides the windows (its clock, so that tests can move it); the server's clock
-- decides only when reservations expire.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local function words(text)
  local list = {}
  for word in string.gmatch(text, '%S+') do
    list[#list + 1] = word
  end
  return list
end

-- Gives back what a reservation's record holds, window by window.
local function unhold(record)
  local parts = words(record)
  if parts[1] == '0' then
    -- Held nothing (and HINCRBY takes no '-0').
    return
  end
  for i = 3, #parts do
    local left = redis.call('HINCRBY', KEYS[2], parts[i], '-' .. parts[1])
    if left <= 0 then
      redis.call('HDEL', KEYS[2], parts[i])
    end
  end
end

-- Reservations past their deadline stop holding.
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 256)
for _, id in ipairs(due) do
  local record = redis.call('HGET', KEYS[1], id)
  if record then
    unhold(record)
    redis.call('HDEL', KEYS[1], id)
  end
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZADD', KEYS[4], now, id)
end
if #due > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - 3600000)
end

-- CAP fields, from ARGV[base]: kind ('c' calendar, 'r' rolling), window label, limit, the slot
-- holding the reservation's instant and the first slot counted then (rolling), and how long
-- the window key is kept (ms).
local CAP = 6
local function cap(base, i)
  local at = base + (i - 1) * CAP
  return {
    key = KEYS[4 + i],
    kind = ARGV[at],
    label = ARGV[at + 1],
    limit = tonumber(ARGV[at + 2]),
    slot = ARGV[at + 3],
    oldest = tonumber(ARGV[at + 4]),
    keep = ARGV[at + 5],
  }
end

-- What a cap counts: spent (settled), held, and its counted slots oldest first (rolling).
-- Slots that can no longer count are deleted.
local function counted(c)
  local held = tonumber(redis.call('HGET', KEYS[2], c.label) or '0')
  if c.kind == 'c' then
    return tonumber(redis.call('GET', c.key) or '0'), held, {}
  end
  local spent, slots = 0, {}
  local all = redis.call('HGETALL', c.key)
  for i = 1, #all, 2 do
    local slot = tonumber(all[i])
    if slot < c.oldest then
      redis.call('HDEL', c.key, all[i])
    else
      local amount = tonumber(all[i + 1])
      spent = spent + amount
      slots[#slots + 1] = {slot, amount}
    end
  end
  table.sort(slots, function(a, b) return a[1] < b[1] end)
  return spent, held, slots
end

-- The slot whose leaving frees `over` (or the last one): {1, slot}, or {0, 0} with none.
local function freeing(slots, over)
  local freed = 0
  for i, entry in ipairs(slots) do
    freed = freed + entry[2]
    if freed >= over or i == #slots then
      return {1, entry[1]}
    end
  end
  return {0, 0}
end

local function spend(c, amount)
  -- As an integer: a Lua number would be written in exponent form past 14 digits.
  local text = string.format('%d', amount)
  if c.kind == 'c' then
    redis.call('INCRBY', c.key, text)
  else
    redis.call('HINCRBY', c.key, c.slot, text)
  end
  redis.call('PEXPIRE', c.key, c.keep)
end

local command = ARGV[1]

if command == 'reserve' then
  -- ARGV: id, amount, at (ms, gateway clock), time to live (ms), cap count, CAP fields.
  -- Returns {1, amount, at} (the reservation, as first made) or
  -- {0, index, spent, held, has slot, slot, ...} for each cap without room.
  local id, amount, at = ARGV[2], tonumber(ARGV[3]), ARGV[4]
  local record = redis.call('HGET', KEYS[1], id)
  if record then
    local parts = words(record)
    return {1, tonumber(parts[1]), tonumber(parts[2])}
  end
  local count = tonumber(ARGV[6])
  local refused = {0}
  local labels = {}
  for i = 1, count do
    local c = cap(7, i)
    local spent, held, slots = counted(c)
    local over = spent + held + amount - c.limit
    if over > 0 then
      local free = freeing(slots, over)
      for _, value in ipairs({i, spent, held, free[1], free[2]}) do
        refused[#refused + 1] = value
      end
    end
    labels[#labels + 1] = c.label
  end
  if #refused > 1 then
    return refused
  end
  if amount > 0 then
    for _, label in ipairs(labels) do
      redis.call('HINCRBY', KEYS[2], label, ARGV[3])
    end
  end
  redis.call('HSET', KEYS[1], id, ARGV[3] .. ' ' .. at .. ' ' .. table.concat(labels, ' '))
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), id)
  return {1, amount, tonumber(at)}
elseif command == 'settle' then
  -- ARGV: id, actual, unbacked (1: reserved while Redis was down), cap count, CAP fields (of
  -- the reservation's instant). Returns {what was charged}.
  local id, actual = ARGV[2], tonumber(ARGV[3])
  local record = redis.call('HGET', KEYS[1], id)
  local count = tonumber(ARGV[5])
  local charged
  if record then
    unhold(record)
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[3], id)
  elseif redis.call('ZREM', KEYS[4], id) == 0 then
    if ARGV[4] ~= '1' then
      -- Settled before: a retry charges nothing.
      return {0}
    end
    -- Let through unchecked: what it spent counts, whatever the room.
    charged = actual
  end
  if not charged then
    -- Open, or expired (its hold went back already): at most what every cap has room for.
    charged = actual
    for i = 1, count do
      local c = cap(6, i)
      local spent, held = counted(c)
      charged = math.min(charged, math.max(c.limit - spent - held, 0))
    end
  end
  if charged > 0 then
    for i = 1, count do
      spend(cap(6, i), charged)
    end
  end
  return {charged}
elseif command == 'usage' then
  -- ARGV: cap count, CAP fields. Returns {spent, held, has slot, last slot} per cap.
  local reply = {}
  for i = 1, tonumber(ARGV[2]) do
    local spent, held, slots = counted(cap(3, i))
    local last = slots[#slots]
    for _, value in ipairs({spent, held, last and 1 or 0, last and last[1] or 0}) do
      reply[#reply + 1] = value
    end
  end
  return reply
end
return redis.error_reply('unknown caps command ' .. tostring(command))
