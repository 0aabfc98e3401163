-- Reads one user's state for a backup (chatbridge backup); changes nothing.
-- KEYS[1] user:state:{tag}:<uid>
-- ARGV[1] tag  [2] uid
-- Returns {} when it is gone, else {active sid or '', model or '', expires at (ms since the
--      epoch, '' = never)}
local key = user_key(ARGV[2])
if redis.call('EXISTS', key) == 0 then return {} end
local f = redis.call('HMGET', key, 'active', 'model')
return {f[1] or '', f[2] or '', expiry_of(key, now_ms())}
