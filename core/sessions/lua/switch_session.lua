-- Makes one of the user's sessions the active one. A repeat (the client retrying after a lost
-- reply) sets the same session active again and answers the same: harmless as it is.
-- KEYS[1] user:sessions:{tag}:<uid>
-- ARGV[1] tag  [2] uid  [3] sid  [4] ttl
-- Returns {'OK', sid, uid, title, model, createdAt, updatedAt, count, systemPrompt ('' = global)} or {'NOT_FOUND'}
local uid, sid = ARGV[2], ARGV[3]
if not owner_of(sid, uid) then return {'NOT_FOUND'} end
redis.call('HSET', user_key(uid), 'active', sid)
touch(sid, uid, tonumber(ARGV[4]))
local f = session_fields(sid)
return {'OK', sid, f[1], f[2], f[3], f[4], f[5], f[6], f[7]}
