-- Deletes a session; when it was the active one, the most recent remaining becomes active;
-- when none remains, the space's mark of being seen goes too (see begin_turn.lua).
-- Keyed by a call id: run again with it (a retry after a lost reply) it answers what it did
-- instead of 'not found'.
-- KEYS[1] session:{tag}:<sid>
-- ARGV[1] tag  [2] sid  [3] expected owner ('' = any)  [4] call id
-- Returns {'OK', uid, new active sid or ''} or {'NOT_FOUND'}
local sid, call = ARGV[2], ARGV[4] or ''
local kept = kept_reply(call)
if kept then return kept end
local uid = owner_of(sid, ARGV[3])
if not uid then return {'NOT_FOUND'} end
delete_session_keys(sid)
redis.call('ZREM', user_key(uid, ':sessions'), sid)
if redis.call('HGET', user_key(uid), 'active') == sid then
  -- Set over the field, not deleted first: a hash that HDEL empties is gone, and writing it
  -- anew would leave the user's state without an expiry.
  local live = live_sessions(uid)
  if live[1] then
    redis.call('HSET', user_key(uid), 'active', live[1])
  else
    redis.call('HDEL', user_key(uid), 'active')
  end
end
local active = resolve_active(uid) or ''
-- The space's last session, ended by the person: their next one is no news (begin_turn.lua
-- tells of a new session only while the mark of the space lasts).
if active == '' then redis.call('DEL', user_key(uid, ':seen')) end
return keep_reply(call, {'OK', uid, active})
