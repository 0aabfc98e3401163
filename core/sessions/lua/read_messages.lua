-- A page of a session's messages, oldest first, with the total held and the session's summary
-- (so that /history and /export show where it stands in); a repeat reads the same.
-- KEYS[1] session:{tag}:<sid>
-- ARGV[1] tag  [2] sid  [3] expected owner ('' = any)  [4] offset  [5] limit  [6] ttl
-- Returns {'OK', total, the ids of its files still kept as one JSON array, summary ('' =
--      none), the seq up to which it stands in for the messages ('0' = none), createdAt and
--      entryModel (what entries are written against: entry_basis in lib.lua; '' = none
--      yet), entry...} or {'NOT_FOUND'}
local sid = ARGV[2]
local uid = owner_of(sid, ARGV[3])
if not uid then return {'NOT_FOUND'} end
touch(sid, uid, tonumber(ARGV[6]))
local messages = session_key(sid, ':messages')
local offset, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local kept = redis.call('HKEYS', session_key(sid, ':files'))
local f = redis.call('HMGET', session_key(sid), 'summary', 'summaryUpTo', 'createdAt', 'entryModel')
local reply = {'OK', redis.call('LLEN', messages), #kept > 0 and cjson.encode(kept) or '[]',
  f[1] or '', f[2] or '0', f[3] or '0', f[4] or ''}
if limit > 0 then
  for _, entry in ipairs(redis.call('LRANGE', messages, offset, offset + limit - 1)) do
    reply[#reply + 1] = entry
  end
end
return reply
