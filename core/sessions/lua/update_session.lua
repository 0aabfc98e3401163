-- Renames a session or changes its model. A repeat (the client retrying after a lost reply)
-- sets the same value again and answers the same.
-- KEYS[1] session:{tag}:<sid>
-- ARGV[1] tag  [2] sid  [3] expected owner ('' = any)  [4] ttl  [5] 'title' | 'model'  [6] value
-- Returns {'OK', sid, uid, title, model, createdAt, updatedAt, count} or {'NOT_FOUND'}
local sid = ARGV[2]
local uid = owner_of(sid, ARGV[3])
if not uid then return {'NOT_FOUND'} end
redis.call('HSET', session_key(sid), ARGV[5], ARGV[6])
touch(sid, uid, tonumber(ARGV[4]))
local f = session_fields(sid)
return {'OK', sid, f[1], f[2], f[3], f[4], f[5], f[6]}
