-- Stores one message: a turn's answer (the turn's second round trip, which also releases its
-- lock) or one stored as given, past no lock and uncounted (tests and benchmarks fill sessions
-- so; the HTTP API adds through add_message.lua). A turn's answer is stored only while the turn
-- still holds its session (holds_turn in lib.lua): else it would land after another turn's
-- messages, so it is fenced out ('LOCK_LOST'). Keyed by a call id (for a turn's answer, the
-- turn's lock token): run again with it (a retry after a lost reply) it answers what it did,
-- storing and charging nothing more.
-- KEYS[1] session:{tag}:<sid>
-- ARGV[1] tag  [2] sid  [3] expected owner ('' = any)  [4] role: 'u' | 'a' | 's'  [5] content
-- ARGV[6] model ('' = none)  [7] prompt tokens ('' = no usage)  [8] completion tokens
-- ARGV[9] cost ('' = unknown)  [10] ttl seconds  [11] max messages
-- ARGV[12] the turn's lock token ('' = not a turn's answer)
-- ARGV[13] replace the assistant replies after this seq (0 = none)
-- ARGV[14] the user whose spending of today the turn's tokens add to ('' = nobody), counted
--          even when the session is gone by now or the answer fenced out: the model did the
--          work (DAILY_TOKEN_BUDGET; the turn's reservation is settled: settle_tokens)
-- ARGV[15] call id ('' = none: a repeat would store again)
-- ARGV[16] the tokens the turn spent: its usage, or their estimate when none was reported
-- ARGV[17] '1': an answer /stop ended, stored marked stopped (codec.py); else ''
-- ARGV[18] what the answer tells besides (docs/data-model.md, "Notices"): 'e' that the space's
--          previous session expired, 'c' that older messages no longer reach the model, 's'
--          that a summary stands in for them, any of them or '' (none); so the next turns do
--          not tell it again
-- ARGV[19] the person whose /usage the reported usage (ARGV[7..9]) adds to ('' = nobody: not
--          a turn's answer, or a shared space's, which settle_turn.lua counts in their slot);
--          counted like the tokens, even when the session is gone or the answer fenced out
-- ARGV[20] the tokens the content takes (core/tokens.py; '' = not counted)
-- Returns {'OK', seq, timestamp ms, message count, owner} or {'NOT_FOUND'} or {'LOCK_LOST'}
local sid, role, token, call = ARGV[2], ARGV[4], ARGV[12], ARGV[15] or ''
local kept = kept_reply(call)
if kept then return kept end
local is_fenced = token ~= '' and not holds_turn(sid, token)
-- Released first: a free needs no memory, and lets the writes after it through at maxmemory.
if token ~= '' and not is_fenced then redis.call('DEL', session_key(sid, ':lock')) end
local now = now_ms()
if ARGV[14] ~= '' then settle_tokens(token, ARGV[14], tonumber(ARGV[16]) or 0, now) end
if (ARGV[19] or '') ~= '' and ARGV[7] ~= '' then
  add_usage(ARGV[19], tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), now)
end
if is_fenced then return keep_reply(call, {'LOCK_LOST'}) end

local uid = owner_of(sid, ARGV[3])
if not uid then
  -- Kept for a turn's answer, whose lock was released and tokens counted; a plain 'not found'
  -- changed nothing, so its repeat may decide again.
  if token == '' then return {'NOT_FOUND'} end
  return keep_reply(call, {'NOT_FOUND'})
end

local messages = session_key(sid, ':messages')
local replace_after = tonumber(ARGV[13])
if replace_after > 0 then
  -- /retry replaces the answer it regenerates instead of stacking a second one after it.
  while true do
    local tail = redis.call('LINDEX', messages, -1)
    if not tail then break end
    local seq, role = entry_parts(cjson.decode(tail))
    if seq <= replace_after or role ~= 'a' then break end
    redis.call('RPOP', messages)
  end
end

local about = {model = ARGV[6], stopped = ARGV[17] == '1', tokens = tonumber(ARGV[20])}
if ARGV[7] ~= '' then
  about.usage = {tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])}
end
local seq = push_message(sid, role, now, ARGV[5], about, tonumber(ARGV[11]))

local told = ARGV[18] or ''
if string.find(told, 'e', 1, true) then
  redis.call('HDEL', session_key(sid), 'tellExpired')
end
if string.find(told, 'c', 1, true) then
  redis.call('HSET', session_key(sid), 'toldContextLoss', 1)
end
if string.find(told, 's', 1, true) then
  redis.call('HSET', session_key(sid), 'toldSummary', 1)
end
redis.call('HSET', session_key(sid), 'updatedAt', now)
mark_recent(uid, sid, now)
touch(sid, uid, tonumber(ARGV[10]))
return keep_reply(call, {'OK', seq, now, redis.call('LLEN', messages), uid})
