-- Reads one session (the user's active one when no sid is given) and refreshes its expiry;
-- a repeat reads the same.
-- KEYS[1] session:{tag}:<sid>, or user:sessions:{tag}:<uid> when [2] is ''
-- ARGV[1] tag  [2] sid ('' = the active session of [3])  [3] expected owner ('' = any)  [4] ttl
-- Returns {'OK', sid, uid, title, model, createdAt, updatedAt, count, systemPrompt ('' = global)} or {'NOT_FOUND'}
local sid, uid = ARGV[2], ARGV[3]
if sid == '' then
  sid = resolve_active(uid)
  if not sid then return {'NOT_FOUND'} end
end
uid = owner_of(sid, uid)
if not uid then return {'NOT_FOUND'} end
touch(sid, uid, tonumber(ARGV[4]))
local f = session_fields(sid)
return {'OK', sid, f[1], f[2], f[3], f[4], f[5], f[6], f[7]}
