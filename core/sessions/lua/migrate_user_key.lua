-- Moves one user key of the first layout (`user:{T}:<uid>`, `user:{T}:<uid>:sessions`, ...) to
-- its name today (core/sessions/key_migration.py), merging it into a key already there. Any
-- number of processes may run it at once for the same key, and running it again changes nothing:
-- the old key is gone once it has been moved.
-- KEYS[1] the old key, user:{tag}:<uid>[:sessions | :turns | :tokens:<day>]
-- ARGV[1] tag  [2] uid  [3] its kind: ':sessions', ':state', ':turns' or ':tokens:<day>'
-- ARGV[4] its type as the caller read it: 'zset', 'hash' or 'string'
-- ARGV[5] ttl seconds, for a key found without an expiry (none is written without one)
-- Returns 'MOVED' (renamed), 'MERGED' (into a key of the new name: index and turn log take
--      the union, the state hash fills the fields it lacks, the token count adds up; the later
--      expiry of the two is kept), 'GONE' (no longer there, or no longer of that type) or
--      'CONFLICT' (the new name holds another type: nothing done)
local old, kind_type = KEYS[1], ARGV[4]
if redis.call('TYPE', old).ok ~= kind_type then return 'GONE' end
local new, ttl = user_key(ARGV[2], ARGV[3]), tonumber(ARGV[5])

if redis.call('EXISTS', new) == 0 then
  redis.call('RENAME', old, new)  -- its expiry goes with it
  if redis.call('PTTL', new) == -1 then redis.call('EXPIRE', new, ttl) end
  return 'MOVED'
end
if redis.call('TYPE', new).ok ~= kind_type then return 'CONFLICT' end
local now = now_ms()
local function expires_at(key)
  return tonumber(expiry_of(key, now)) or now + ttl * 1000
end
local at = math.max(expires_at(old), expires_at(new))
if kind_type == 'zset' then
  redis.call('ZUNIONSTORE', new, 2, new, old, 'AGGREGATE', 'MAX')
elseif kind_type == 'hash' then
  local fields = redis.call('HGETALL', old)
  for i = 1, #fields, 2 do redis.call('HSETNX', new, fields[i], fields[i + 1]) end
else
  redis.call('INCRBY', new, redis.call('GET', old))
end
redis.call('DEL', old)
redis.call('PEXPIREAT', new, at)
return 'MERGED'
