-- /model: the user's choice for new sessions, applied to the active session too. A repeat (the
-- client retrying after a lost reply) sets the same model again and answers the same.
-- KEYS[1] user:sessions:{tag}:<uid>
-- ARGV[1] tag  [2] uid  [3] model  [4] ttl
-- Returns the active sid, or '' when the user has no session.
local uid, ttl = ARGV[2], tonumber(ARGV[4])
redis.call('HSET', user_key(uid), 'model', ARGV[3])
redis.call('EXPIRE', user_key(uid), ttl)
local sid = resolve_active(uid)
if not sid then return '' end
redis.call('HSET', session_key(sid), 'model', ARGV[3])
touch(sid, uid, ttl)
return sid
