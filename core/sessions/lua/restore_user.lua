-- Restores one user's state from a backup (chatbridge restore): the active session and the
-- /model choice. What Redis holds already wins (choices made since the backup are kept), except
-- an active pointer to a session that no longer exists. Repeating it (a retry after a lost
-- reply too) changes nothing.
-- KEYS[1] user:state:{tag}:<uid>
-- ARGV[1] tag  [2] uid  [3] active sid ('' = none)  [4] model ('' = none)
-- ARGV[5] expires at (ms since the epoch; '' = [6] seconds from now)  [6] ttl seconds
-- Returns 'RESTORED' or 'EXPIRED' (its expiry has passed: nothing written)
local uid, active, model = ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
local expires = tonumber(ARGV[5]) or now + tonumber(ARGV[6]) * 1000
if expires <= now then return 'EXPIRED' end

local key = user_key(uid)
if active ~= '' then
  local current = redis.call('HGET', key, 'active')
  if not current or redis.call('EXISTS', session_key(current)) == 0 then
    redis.call('HSET', key, 'active', active)
  end
end
if model ~= '' then redis.call('HSETNX', key, 'model', model) end
expire_at_least(key, expires, now)
return 'RESTORED'
