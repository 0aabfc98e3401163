-- Deletes a session; when it was the active one, the most recent remaining becomes active.
-- KEYS[1] session:{tag}:<sid>
-- ARGV[1] tag  [2] sid  [3] expected owner ('' = any)
-- Returns {'OK', uid, new active sid or ''} or {'NOT_FOUND'}
local sid = ARGV[2]
local uid = owner_of(sid, ARGV[3])
if not uid then return {'NOT_FOUND'} end
delete_session_keys(sid)
redis.call('ZREM', user_key(uid, ':sessions'), sid)
if redis.call('HGET', user_key(uid), 'active') == sid then
  redis.call('HDEL', user_key(uid), 'active')
end
return {'OK', uid, resolve_active(uid) or ''}
