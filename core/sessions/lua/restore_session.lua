-- Restores one session from a backup (chatbridge restore): all of it, or nothing: its hash, its
-- messages and its files, each with the same expiry, as the live store holds them.
-- Running it again with the same arguments changes nothing, so a restore can be repeated, and
-- a retry after a lost reply answers 'RESTORED' again.
-- KEYS[1] session:{tag}:<sid>
-- ARGV[1] tag  [2] sid  [3] uid  [4] title  [5] model  [6] createdAt  [7] updatedAt (ms)
-- ARGV[8] seq  [9] score in the owner's index (last activity, ms)
-- ARGV[10] expires at (ms since the epoch; '' = [11] seconds from now)  [11] ttl seconds
-- ARGV[12] creator ('' = none)  [13] fileBytes ('' = none)
-- ARGV[14] systemPrompt ('' = none: the global one)
-- ARGV[15] summary ('' = none)  [16] summaryUpTo  [17] toldSummary ('1', or '' = none)
-- ARGV[18] entryModel: what the messages are written against with [6] (entry_basis in lib.lua);
--          stored when there are messages or it is not '' (a session nothing was written to has
--          none: its first message sets it)
-- ARGV[19] the tokens [14] takes ('' with none)  [20] the tokens [15] takes as a turn sends it
-- ARGV[21] how many files it keeps, F  [22 ... 21 + 2F] each file's id '<seq>-<n>' and bytes
-- ARGV[22 + 2F ...] the messages as stored (compact JSON arrays), oldest first
-- Returns 'RESTORED'; 'EXPIRED' (its expiry has passed: nothing written); 'NEWER' (Redis holds
--      it with more messages ever stored, so a later state: left as it is); or 'OTHER_OWNER'
--      (Redis holds this id for another user: left as it is)
local sid, uid, seq = ARGV[2], ARGV[3], tonumber(ARGV[8])
local creator, file_bytes, system_prompt = ARGV[12], ARGV[13], ARGV[14]
local summary, summary_up_to, told_summary = ARGV[15], ARGV[16], ARGV[17]
local FIRST_FILE = 22
local file_count = tonumber(ARGV[FIRST_FILE - 1])
local first_message = FIRST_FILE + 2 * file_count
local now = now_ms()
local expires = tonumber(ARGV[10]) or now + tonumber(ARGV[11]) * 1000
if expires <= now then return 'EXPIRED' end

local key, messages, files = session_key(sid), session_key(sid, ':messages'), session_key(sid, ':files')
local current = redis.call('HMGET', key, 'userId', 'seq')
if current[1] and current[1] ~= uid then return 'OTHER_OWNER' end
if current[2] and tonumber(current[2]) > seq then return 'NEWER' end

-- A summary being made of what Redis held must not land on the restored session: its claim goes.
redis.call('DEL', key, messages, files, session_key(sid, ':summarizing'))
redis.call('HSET', key, 'userId', uid, 'title', ARGV[4], 'model', ARGV[5],
  'createdAt', ARGV[6], 'updatedAt', ARGV[7], 'seq', ARGV[8])
if ARGV[18] ~= '' or #ARGV >= first_message then redis.call('HSET', key, 'entryModel', ARGV[18]) end
if creator ~= '' then redis.call('HSET', key, 'creator', creator) end
if file_bytes ~= '' then redis.call('HSET', key, 'fileBytes', file_bytes) end
if system_prompt ~= '' then
  redis.call('HSET', key, 'systemPrompt', system_prompt, 'systemPromptTokens', ARGV[19])
end
if summary ~= '' then
  redis.call('HSET', key, 'summary', summary, 'summaryUpTo', summary_up_to,
    'summaryTokens', ARGV[20])
end
if told_summary ~= '' then redis.call('HSET', key, 'toldSummary', told_summary) end
redis.call('PEXPIREAT', key, expires)
-- unpack() is bounded by Lua's C stack: push in slices.
for first = first_message, #ARGV, 1000 do
  redis.call('RPUSH', messages, unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
if #ARGV >= first_message then redis.call('PEXPIREAT', messages, expires) end
for at = FIRST_FILE, first_message - 1, 2 do
  redis.call('HSET', files, ARGV[at], ARGV[at + 1])
end
if file_count > 0 then redis.call('PEXPIREAT', files, expires) end

local index = user_key(uid, ':sessions')
redis.call('ZADD', index, ARGV[9], sid)
expire_at_least(index, expires, now)
expire_at_least(user_key(uid), expires, now)
return 'RESTORED'
