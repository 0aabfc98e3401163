-- Reads one session for a backup (chatbridge backup) as it is at one instant; changes nothing,
-- not even its expiry.
-- KEYS[1] session:{tag}:<sid>
-- ARGV[1] tag  [2] sid
-- Returns {} when the session is gone, else {uid, title, model, createdAt, updatedAt, seq,
--      expires at (ms since the epoch, '' = never), its score in the owner's index ('' = none),
--      creator ('' = none), fileBytes ('' = none), systemPrompt ('' = none: the global one),
--      summary ('' = none), summaryUpTo ('' = none), toldSummary ('' = none), entryModel
--      ('' = none: what its entries are written against, with createdAt; entry_basis in
--      lib.lua), 2 × the number of its files, then each
--      file's id '<seq>-<n>' and bytes, message...} with the messages as stored, oldest first
local sid = ARGV[2]
local key = session_key(sid)
local f = redis.call('HMGET', key, 'userId', 'title', 'model', 'createdAt', 'updatedAt', 'seq',
  'creator', 'fileBytes', 'systemPrompt', 'summary', 'summaryUpTo', 'toldSummary', 'entryModel')
if not f[1] then return {} end
local score = redis.call('ZSCORE', user_key(f[1], ':sessions'), sid)
local files = redis.call('HGETALL', session_key(sid, ':files'))
local reply = {f[1], f[2] or '', f[3] or '', f[4] or '0', f[5] or '0', f[6] or '0',
  expiry_of(key, now_ms()), score or '', f[7] or '', f[8] or '', f[9] or '', f[10] or '',
  f[11] or '', f[12] or '', f[13] or '', #files}
for _, value in ipairs(files) do reply[#reply + 1] = value end
for _, entry in ipairs(redis.call('LRANGE', session_key(sid, ':messages'), 0, -1)) do
  reply[#reply + 1] = entry
end
return reply
