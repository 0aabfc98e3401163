-- Asks the turn holding session `sid` to stop (/stop, the ⏹ button, POST .../stop): marks the
-- session with the turn's lock token, which the replica streaming that turn polls for
-- (core/chat.py). The mark names the turn, so a later turn of the session never reads it as
-- its own; it expires by itself. Keyed by a call id: a repeat answers what the call did.
-- KEYS[1] session:{tag}:<sid>
-- ARGV[1] tag  [2] sid  [3] expected owner ('' = any)  [4] the mark's ttl ms  [5] call id
-- Returns {'OK', '1'} (a turn was asked), {'OK', '0'} (no turn was running) or {'NOT_FOUND'}
local sid, call = ARGV[2], ARGV[5]
local kept = kept_reply(call)
if kept then return kept end
if not owner_of(sid, ARGV[3]) then return {'NOT_FOUND'} end
local holder = redis.call('GET', session_key(sid, ':lock'))
if not holder then return keep_reply(call, {'OK', 0}) end
redis.call('SET', session_key(sid, ':stop'), holder, 'PX', tonumber(ARGV[4]))
return keep_reply(call, {'OK', 1})
