-- Shared helpers, prepended to every script of this folder when the store loads it.
-- Every script receives the user's hash tag as ARGV[1] and builds the names of the keys it
-- touches from it, so all of them live in the slot of KEYS[1] (see docs/data-model.md).
local TAG = ARGV[1]

local function session_key(sid, suffix)
  return 'session:{' .. TAG .. '}:' .. sid .. (suffix or '')
end

-- A user's key: its kind (':sessions', ':turns', ':tokens:<day>'; none: ':state', the state
-- hash), then the tag, then the user id, last and whole. The kinds are core/sessions/keys.py's,
-- and none holds a '{': no user id, whatever it holds, turns one user's key into another's.
local function user_key(uid, kind)
  return 'user' .. (kind or ':state') .. ':{' .. TAG .. '}:' .. uid
end

-- Server time, so that every replica stamps with one clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Sliding expiry: one session's keys and its owner's keys move together.
local function touch(sid, uid, ttl)
  redis.call('EXPIRE', session_key(sid), ttl)
  redis.call('EXPIRE', session_key(sid, ':messages'), ttl)
  redis.call('EXPIRE', session_key(sid, ':files'), ttl)
  redis.call('EXPIRE', user_key(uid, ':sessions'), ttl)
  redis.call('EXPIRE', user_key(uid), ttl)
end

-- The session's owner, or false when the session is gone or belongs to someone else.
-- An empty expected owner means "any owner" (the HTTP API's service token).
local function owner_of(sid, expected)
  local uid = redis.call('HGET', session_key(sid), 'userId')
  if not uid then return false end
  if expected ~= '' and uid ~= expected then return false end
  return uid
end

-- The user's sessions, most recent first, dropping index entries whose session expired.
local function live_sessions(uid)
  local index = user_key(uid, ':sessions')
  local live = {}
  for _, sid in ipairs(redis.call('ZRANGE', index, 0, -1, 'REV')) do
    if redis.call('EXISTS', session_key(sid)) == 1 then
      live[#live + 1] = sid
    else
      redis.call('ZREM', index, sid)
    end
  end
  return live
end

-- f[7]: the session's own system prompt (/persona), '' when the global SYSTEM_PROMPT applies.
local function session_fields(sid)
  local f = redis.call('HMGET', session_key(sid), 'userId', 'title', 'model', 'createdAt', 'updatedAt')
  f[6] = redis.call('LLEN', session_key(sid, ':messages'))
  f[7] = redis.call('HGET', session_key(sid), 'systemPrompt') or ''
  return f
end

-- The claim on its next summary (summary_source.lua) would expire by itself within minutes;
-- it goes with the session, so nothing of a deleted session stays behind.
local function delete_session_keys(sid)
  redis.call('DEL', session_key(sid), session_key(sid, ':messages'), session_key(sid, ':files'),
    session_key(sid, ':summarizing'))
end

-- Files of user messages (docs/data-model.md, "Attachments"): their bytes in the session's
-- ':files' hash under '<seq>-<n>', their sum in the session's 'fileBytes'. An entry lists its
-- files at [9] (Lua's count; codec.py's [8]), or at [10] in an entry of the first layout.
local ATTACHMENTS_AT = 9
local FIRST_LAYOUT_ATTACHMENTS_AT = 10

-- Entries (docs/data-model.md, "Messages"): [seq, role, ms since the session's createdAt,
-- content, prompt tokens?, completion tokens?, cost?, model?, files?], the role a number
-- (3: an answer /stop ended). An entry of the first layout (written before this one) has the role
-- as a letter and an absolute time: the role's type tells them apart.
local ROLE_NUMBERS = {u = 0, a = 1, s = 2}
local STOPPED_ANSWER = 3
local ROLE_LETTERS = {[0] = 'u', [1] = 'a', [2] = 's', [3] = 'a'}
-- An entry's kind (its second field) is its role number plus TOKENS_UNIT x the tokens its
-- content takes (0: not counted), as core/sessions/codec.py writes and reads it.
local TOKENS_UNIT = 4

-- A stored entry's seq, read without decoding it: every layout writes it first, as digits.
local function stored_seq(raw)
  return tonumber(string.match(raw, '^%[(%d+),'))
end

-- A decoded entry's seq, role letter ('u', 'a', 's') and files (a table, or not one), whatever
-- its layout.
local function entry_parts(entry)
  if type(entry[2]) == 'number' then
    return entry[1], ROLE_LETTERS[entry[2] % TOKENS_UNIT], entry[ATTACHMENTS_AT]
  end
  return entry[1], entry[2], entry[FIRST_LAYOUT_ATTACHMENTS_AT]
end

local function drop_files(sid, ids)
  local files = session_key(sid, ':files')
  local freed = 0
  for _, id in ipairs(ids) do
    freed = freed + redis.call('HSTRLEN', files, id)
    redis.call('HDEL', files, id)
  end
  if freed > 0 then redis.call('HINCRBY', session_key(sid), 'fileBytes', -freed) end
end

local function file_ids_of(entry)
  local ids = {}
  local seq, _, listed = entry_parts(entry)
  if type(listed) == 'table' then
    for _, file in ipairs(listed) do ids[#ids + 1] = seq .. '-' .. file[1] end
  end
  return ids
end

-- Makes room for `incoming` more bytes within `budget`: the oldest files go first (their
-- messages keep naming them, as no longer kept).
local function make_room_for_files(sid, incoming, budget)
  local held = tonumber(redis.call('HGET', session_key(sid), 'fileBytes') or '0')
  if held + incoming <= budget then return end
  local ids = redis.call('HKEYS', session_key(sid, ':files'))
  local function order(id)
    local seq, n = string.match(id, '^(%d+)-(%d+)$')
    return tonumber(seq) * 16 + tonumber(n)
  end
  table.sort(ids, function(a, b) return order(a) < order(b) end)
  local files = session_key(sid, ':files')
  local i = 1
  while held + incoming > budget and ids[i] do
    local size = redis.call('HSTRLEN', files, ids[i])
    drop_files(sid, {ids[i]})
    held = held - size
    i = i + 1
  end
end

-- Marks a session as the user's most recent: its score is now, or one past the newest score
-- when several actions land in one millisecond, so "most recent first" is never a tie.
local function mark_recent(uid, sid, now)
  local index = user_key(uid, ':sessions')
  local newest = redis.call('ZRANGE', index, 0, 0, 'REV', 'WITHSCORES')
  local score = now
  if newest[1] and newest[1] ~= sid and tonumber(newest[2]) >= now then score = tonumber(newest[2]) + 1 end
  redis.call('ZADD', index, score, sid)
end

-- `creator`: the person who started a session of a shared space (kept only when it is not the
-- owner itself), for /delete to tell who may.
local function create_session(uid, sid, title, model, now, creator)
  redis.call('HSET', session_key(sid), 'userId', uid, 'title', title, 'model', model,
    'createdAt', now, 'updatedAt', now, 'seq', 0)
  if creator and creator ~= '' and creator ~= uid then
    redis.call('HSET', session_key(sid), 'creator', creator)
  end
  mark_recent(uid, sid, now)
  redis.call('HSET', user_key(uid), 'active', sid)
end

-- The active session if it still exists, else the most recent one, else false.
local function resolve_active(uid)
  local active = redis.call('HGET', user_key(uid), 'active')
  if active and redis.call('EXISTS', session_key(active)) == 1 then return active end
  local live = live_sessions(uid)
  if #live == 0 then return false end
  redis.call('HSET', user_key(uid), 'active', live[1])
  return live[1]
end

-- Counts code points, as Python's len() does, for titles cut from a first message.
local function utf8_prefix(s, max_chars)
  local count, i = 0, 1
  while i <= #s do
    count = count + 1
    if count > max_chars then return string.sub(s, 1, i - 1) end
    local b = string.byte(s, i)
    if b >= 0xF0 then i = i + 4 elseif b >= 0xE0 then i = i + 3 elseif b >= 0xC0 then i = i + 2 else i = i + 1 end
  end
  return s
end

-- What a session's entries are written against: its createdAt (their times count from it) and
-- the model an answer without one was answered by ('entryModel': the session's model when its
-- first entry of this layout was written; unlike 'model' it never changes, so /model leaves
-- earlier answers' models as they were).
local function entry_basis(sid)
  local f = redis.call('HMGET', session_key(sid), 'createdAt', 'entryModel', 'model')
  if not f[2] then
    f[2] = f[3] or ''
    redis.call('HSET', session_key(sid), 'entryModel', f[2])
  end
  return tonumber(f[1]) or 0, f[2]
end

-- Stores one message as a compact JSON array; returns its sequence number. `role` 'u', 'a' or
-- 's'; `about` what it carries besides: usage ({prompt, completion, cost or nil}), model ('' or
-- nil: none), stopped (true: an answer /stop ended), files (the list of a user message's),
-- tokens (what the content takes, counted by the caller; nil: not counted).
-- Only what differs from the session's basis is written (docs/data-model.md, "Messages").
local function push_message(sid, role, now, content, about, max_messages)
  local seq = redis.call('HINCRBY', session_key(sid), 'seq', 1)
  local created, base_model = entry_basis(sid)
  local role_number = about.stopped and STOPPED_ANSWER or ROLE_NUMBERS[role]
  local entry = {seq, role_number + TOKENS_UNIT * (about.tokens or 0), now - created, content}
  if about.usage then
    entry[5], entry[6] = about.usage[1], about.usage[2]
    if about.usage[3] then entry[7] = about.usage[3] end
  end
  local model = about.model or ''
  -- An answer without a model is the basis's; anything else without one has none.
  if (role == 'a' and model ~= base_model) or (role ~= 'a' and model ~= '') then
    for i = #entry + 1, 7 do entry[i] = cjson.null end
    entry[8] = model
  end
  if about.files then
    for i = #entry + 1, ATTACHMENTS_AT - 1 do entry[i] = cjson.null end
    entry[ATTACHMENTS_AT] = about.files
  end
  local messages = session_key(sid, ':messages')
  local count = redis.call('RPUSH', messages, cjson.encode(entry))
  if count > max_messages and redis.call('HGET', session_key(sid), 'fileBytes') then
    -- A trimmed message takes its files along.
    for _, raw in ipairs(redis.call('LRANGE', messages, 0, count - max_messages - 1)) do
      drop_files(sid, file_ids_of(cjson.decode(raw)))
    end
  end
  redis.call('LTRIM', messages, -max_messages, -1)
  return seq
end

-- Per-user turn limits (docs/data-model.md, "Turn limits"). Both only read until a turn is
-- sure to start, so a refused or failed attempt costs the user nothing.
local DAY_MS = 86400000

-- RATE_LIMIT_MESSAGES per RATE_LIMIT_WINDOW: a sliding-window log of the user's turns, scored
-- by their start (ms). Returns 0 when one more turn fits now, else the ms until one does.
-- It only reads: after any write, even one that frees memory, Redis lets every later write of
-- the script past maxmemory, so a trim here would exempt turns from it (docs/data-model.md).
local function turn_wait_ms(uid, limit, window_ms, now)
  if limit <= 0 then return 0 end
  local turns = user_key(uid, ':turns')
  local live = '(' .. string.format('%d', now - window_ms)
  local count = redis.call('ZCOUNT', turns, live, '+inf')
  if count < limit then return 0 end
  -- Free once all but limit - 1 entries have left the window (count > limit after a lowered limit).
  local entry = redis.call('ZRANGE', turns, live, '+inf', 'BYSCORE', 'LIMIT', count - limit, 1,
    'WITHSCORES')
  return tonumber(entry[2]) + window_ms - now
end

-- Logs a turn that starts now, dropping the ones that left the window.
local function count_turn(uid, member, window_ms, now)
  local turns = user_key(uid, ':turns')
  redis.call('ZREMRANGEBYSCORE', turns, '-inf', now - window_ms)
  redis.call('ZADD', turns, now, member)
  redis.call('PEXPIRE', turns, window_ms)
end

-- DAILY_TOKEN_BUDGET: the tokens a user spent on the UTC day `now` falls in, one key per day.
local function tokens_key(uid, now)
  local day = math.floor(now / DAY_MS)
  return user_key(uid, ':tokens:' .. string.format('%d', day)), (day + 1) * DAY_MS
end

-- Returns 0 while the user is under their budget for today, else the ms until the next day.
local function budget_wait_ms(uid, budget, now)
  if budget <= 0 then return 0 end
  local key, day_ends = tokens_key(uid, now)
  if tonumber(redis.call('GET', key) or '0') < budget then return 0 end
  return day_ends - now
end

local function spend_tokens(uid, tokens, now)
  if tokens == 0 then return end
  local key, day_ends = tokens_key(uid, now)
  redis.call('INCRBY', key, tokens)
  redis.call('PEXPIREAT', key, day_ends)
end

-- /usage: what a person's turns cost on the UTC day `now` falls in, as the model reported it,
-- one hash per day (`prompt`, `completion`, `cost` in USD). Kept 31 days from the day's start,
-- so the last 30 days are always there to sum; counted whether or not DAILY_TOKEN_BUDGET is set.
local USAGE_DAYS = 31

local function add_usage(uid, prompt, completion, cost, now)
  local day = math.floor(now / DAY_MS)
  local key = user_key(uid, ':usage:' .. string.format('%d', day))
  redis.call('HINCRBY', key, 'prompt', prompt)
  redis.call('HINCRBY', key, 'completion', completion)
  if cost and cost > 0 then redis.call('HINCRBYFLOAT', key, 'cost', cost) end
  redis.call('PEXPIREAT', key, (day + USAGE_DAYS) * DAY_MS)
end

-- The tokens `entries` (strings) take by the estimate of core/conversation.py: a token per
-- three bytes, rounded up.
local function estimated_tokens(entries)
  local bytes = 0
  for _, entry in ipairs(entries) do bytes = bytes + #entry end
  return math.ceil(bytes / 3)
end

-- The refusal, if any, of one more turn: {'BUDGET_EXHAUSTED', ms} or {'RATE_LIMITED', ms}.
-- The budget is checked first: when both refuse, it is the longer wait.
local function turn_refusal(uid, limit, window_ms, budget, now)
  local wait = budget_wait_ms(uid, budget, now)
  if wait > 0 then return {'BUDGET_EXHAUSTED', wait} end
  wait = turn_wait_ms(uid, limit, window_ms, now)
  if wait > 0 then return {'RATE_LIMITED', wait} end
  return false
end

-- Backups (chatbridge backup / restore). A key's expiry as an instant, ms since the epoch on
-- this server's clock ('' when it has none), so that a backup states when each key would end.
-- PEXPIRETIME (Redis 7) gives the instant itself; before it, TIME + PTTL comes within a few ms.
local function expiry_of(key, now)
  local at = redis.pcall('PEXPIRETIME', key)
  if type(at) ~= 'number' then
    at = redis.call('PTTL', key)
    if at >= 0 then at = now + at end
  end
  if at < 0 then return '' end
  return string.format('%d', at)
end

-- Makes an existing key live at least until `at` (ms since the epoch); never shortens it.
local function expire_at_least(key, at, now)
  local pttl = redis.call('PTTL', key)
  if pttl == -2 then return end
  if pttl == -1 or now + pttl < at then redis.call('PEXPIREAT', key, at) end
end

-- Repeated calls (docs/data-model.md, "Repeated calls"). The client retries a command whose
-- connection dropped, and when the drop came after Redis ran a script, the script runs again.
-- So every script that would act twice is keyed by an id made once per logical call in Python
-- (a turn's lock token, a new session's id, or a random call id) and keeps what it did under
-- call:{tag}:<id>: a repeat finds it there and answers the same instead of acting again.
-- Kept a minute: a store call and its retries end within 4 s (STORE_CALL_DEADLINE_SECONDS);
-- the rest covers a Redis that sat on a retry before running it.
local CALL_MEMORY_MS = 60000

local function call_key(id)
  return 'call:{' .. TAG .. '}:' .. id
end

-- The reply call `id` kept ('' = a call without an id: none), or false.
local function kept_reply(id)
  if id == '' then return false end
  local kept = redis.call('HGET', call_key(id), 'reply')
  return kept and cjson.decode(kept)
end

-- Keeps `reply` as call `id`'s and returns it. Its numbers become strings, in the reply given
-- now too, so that the first answer and a repeat's read alike.
local function keep_reply(id, reply)
  for i, value in ipairs(reply) do
    if type(value) == 'number' then reply[i] = string.format('%d', value) end
  end
  if id == '' then return reply end
  local key = call_key(id)
  redis.call('HSET', key, 'reply', cjson.encode(reply))
  redis.call('PEXPIRE', key, CALL_MEMORY_MS)
  return reply
end

-- A turn's record, under its lock token, while it runs: its session, its user message's seq,
-- and the session's seq once the turn began. With it a repeat of begin_turn answers the turn
-- it began, and a turn whose lock lapsed can tell whether anybody wrote since (holds_turn).
-- It lives a minute longer than the lock, and is extended with it.
local function record_turn(token, sid, user_seq, lock_ttl_ms)
  local key = call_key(token)
  redis.call('HSET', key, 'sid', sid, 'userSeq', user_seq,
    'seq', redis.call('HGET', session_key(sid), 'seq'))
  redis.call('PEXPIRE', key, lock_ttl_ms + CALL_MEMORY_MS)
end

-- DAILY_TOKEN_BUDGET holds under concurrent turns because a turn spends its worst case when it
-- begins (its prompt's estimate plus the completion's cap), so the next turn's check sees it,
-- and settles to what it spent when it ends: its answer's usage, or what a cut, interrupted
-- or stopped answer cost. The reservation is kept in the turn's record.
local function reserve_tokens(token, uid, tokens, now)
  spend_tokens(uid, tokens, now)
  redis.call('HSET', call_key(token), 'uid', uid, 'reserved', tokens,
    'day', math.floor(now / DAY_MS))
end

-- Settles the turn of `token` to `spent` tokens, once: today's spending loses the turn's
-- reservation (unless the day it was made on is over: it went with that day) and gains what
-- was spent. Without a reservation on record (no budget when the turn began, or a record
-- expired long after the turn lost its lock), `spent` is added to `uid`'s ('' = nobody's).
local function settle_tokens(token, uid, spent, now)
  local record = call_key(token)
  local turn = redis.call('HMGET', record, 'uid', 'reserved', 'day', 'settled')
  if turn[4] then return end
  uid = turn[1] or uid
  if uid == '' then return end
  local reserved = 0
  if turn[2] and tonumber(turn[3]) == math.floor(now / DAY_MS) then reserved = tonumber(turn[2]) end
  spend_tokens(uid, spent - reserved, now)
  if turn[1] then redis.call('HSET', record, 'settled', 1) end
end

-- Whether the turn of `token` may still write to session `sid`. It may while it holds the
-- lock. It may too when the lock lapsed (Redis was out of reach for longer than the lock's
-- ttl) and nothing was stored in the session since the turn began: no other turn can have
-- come between, so its answer still lands in order, and the user keeps the answer they saw.
-- Another token on the lock, a message stored or replaced since, or a turn that already ended
-- (or left no record) fences it out: it stores nothing more.
local function holds_turn(sid, token)
  local holder = redis.call('GET', session_key(sid, ':lock'))
  if holder then return holder == token end
  local record = redis.call('HMGET', call_key(token), 'seq', 'reply', 'released')
  if not record[1] or record[2] or record[3] then return false end
  return redis.call('HGET', session_key(sid), 'seq') == record[1]
end

-- Keeps the turn of `token` on session `sid` for `ttl_ms` more, if it still holds it (see
-- holds_turn): extends its lock, or takes a lapsed one back, and its record with it.
-- PEXPIRE first: it needs no memory, so a turn keeps its lock at maxmemory.
local function keep_turn(sid, token, ttl_ms)
  if not holds_turn(sid, token) then return false end
  local lock = session_key(sid, ':lock')
  if redis.call('PEXPIRE', lock, ttl_ms) == 0 then redis.call('SET', lock, token, 'PX', ttl_ms) end
  redis.call('PEXPIRE', call_key(token), ttl_ms + CALL_MEMORY_MS)
  return true
end
