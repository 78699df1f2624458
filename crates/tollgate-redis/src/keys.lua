-- Changes one API key and tells every replica, atomically.
-- KEYS[1] the key's hash, KEYS[2] the index of key ids (id -> digest), in the same slot
-- ARGV[1] the channel, ARGV[2] the key's digest (hex),
-- ARGV[3] 'put' | 'create' (put unless the key exists) | 'revoke' | 'remove',
-- ARGV[4] for 'put' and 'create': the key id; ARGV[5..]: field, value, field, value, ...
-- Returns 1 if the key changed, 0 if there was no such key.
local command = ARGV[3]
local changed = 0
if command == 'put' or (command == 'create' and redis.call('EXISTS', KEYS[1]) == 0) then
  local previous = redis.call('HGET', KEYS[1], 'id')
  if previous then
    redis.call('HDEL', KEYS[2], previous)
  end
  redis.call('DEL', KEYS[1])
  local fields = {}
  for i = 5, #ARGV do
    fields[#fields + 1] = ARGV[i]
  end
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('HSET', KEYS[2], ARGV[4], ARGV[2])
  changed = 1
elseif command == 'create' then
  changed = 0
elseif command == 'revoke' then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[1], 'revoked', '1')
    changed = 1
  end
elseif command == 'remove' then
  local id = redis.call('HGET', KEYS[1], 'id')
  if id then
    redis.call('HDEL', KEYS[2], id)
  end
  changed = redis.call('DEL', KEYS[1])
else
  return redis.error_reply('unknown key command ' .. tostring(command))
end
if changed == 1 then
  redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return changed
