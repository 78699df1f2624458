-- The ledger of one account; every command of the ledger is this script with a different
-- ARGV[1], so that each is atomic and all share one way of expiring reservations.
-- KEYS[1] balance      string: micro-units available (reservations excluded)
-- KEYS[2] holds        hash: reservation id -> micro-units held
-- KEYS[3] deadlines    sorted set: reservation id, scored by when it expires (ms, server time)
-- KEYS[4] expired      sorted set: reservation id, scored by when it expired (kept an hour, so
--                      that a late settlement still charges what was used)
-- ARGV[1] the command; ARGV[2..] its arguments (below).
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- Reservations past their deadline go back to the balance.
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 256)
for _, id in ipairs(due) do
  local held = redis.call('HGET', KEYS[2], id)
  if held then
    redis.call('INCRBY', KEYS[1], held)
    redis.call('HDEL', KEYS[2], id)
  end
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZADD', KEYS[4], now, id)
end
if #due > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - 3600000)
end

local balance = tonumber(redis.call('GET', KEYS[1]) or '0')
local command = ARGV[1]

-- Lua computes in doubles, exact only below 2^53: a larger balance would be stored as
-- "1e+18", which every later INCRBY refuses. Openings and top-ups never go above it.
local MAX_BALANCE = 9007199254740991
local TOO_LARGE = 'balance above 2^53 - 1 micro-units: not kept exactly by the ledger script'

if command == 'reserve' then
  -- ARGV: id, amount, time to live (ms). Returns {1, held, available} or {0, available}.
  local id, amount = ARGV[2], tonumber(ARGV[3])
  local held = redis.call('HGET', KEYS[2], id)
  if held then
    return {1, tonumber(held), balance}
  end
  if balance <= 0 or balance < amount then
    return {0, balance}
  end
  redis.call('DECRBY', KEYS[1], amount)
  redis.call('HSET', KEYS[2], id, amount)
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), id)
  return {1, amount, balance - amount}
elseif command == 'settle' then
  -- ARGV: id, actual, unbacked (1: reserved while Redis was down, charge the balance).
  -- Returns {charged, balance}.
  local id, actual = ARGV[2], tonumber(ARGV[3])
  local held = redis.call('HGET', KEYS[2], id)
  if held then
    local total = balance + tonumber(held)
    local charged = math.min(actual, total)
    redis.call('SET', KEYS[1], total - charged)
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
    return {charged, total - charged}
  end
  if redis.call('ZREM', KEYS[4], id) == 1 or ARGV[4] == '1' then
    -- Expired (its amount went back already) or never held: charge what is there.
    local charged = math.min(actual, math.max(balance, 0))
    redis.call('DECRBY', KEYS[1], charged)
    return {charged, balance - charged}
  end
  -- Settled before: a retry charges nothing.
  return {0, balance}
elseif command == 'top_up' then
  -- ARGV: amount. Returns the balance.
  if balance + tonumber(ARGV[2]) > MAX_BALANCE then
    return redis.error_reply(TOO_LARGE)
  end
  return redis.call('INCRBY', KEYS[1], ARGV[2])
elseif command == 'open' then
  -- ARGV: opening balance. Sets it only if the account has no balance yet; returns 1 if set.
  if tonumber(ARGV[2]) > MAX_BALANCE then
    return redis.error_reply(TOO_LARGE)
  end
  return redis.call('SETNX', KEYS[1], ARGV[2])
elseif command == 'balance' then
  return balance
elseif command == 'holds' then
  -- Returns {id, amount, id, amount, ...} of the open reservations.
  return redis.call('HGETALL', KEYS[2])
end
return redis.error_reply('unknown ledger command ' .. tostring(command))
