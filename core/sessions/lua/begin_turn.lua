-- First round trip of a chat turn: check the user's turn limits, find the session, take its
-- lock, store the user's message, count the turn (and reserve its tokens, with a budget), mark
-- the space as seen, and return the session, the recent context and what the reply must tell.
-- Keyed by the lock token: run again with the same token (the client retrying after a lost
-- reply) it answers the turn it began and stores and counts nothing more.
-- KEYS[1] user:sessions:{tag}:<uid> when the user is known, else session:{tag}:<sid>
-- ARGV[1] tag  [2] uid ('' = whoever owns [3])  [3] sid ('' = the user's active session,
--         created when the user has none)  [4] sid for that new session  [5] content ('' with
--         no files, [21]: /retry)
-- ARGV[6] lock token  [7] lock ttl ms  [8] ttl seconds  [9] max messages  [10] context tokens:
--         the most the request's messages may take, system prompt and summary included
--         (CONTEXT_TOKENS; core/turn.py sizes it down for a model with a smaller context)
-- ARGV[11] default model  [12] title length for an untitled session
-- ARGV[13] turns per window (0 = no rate limit)  [14] window ms  [15] daily token budget (0 = none)
-- ARGV[16] tokens the turn reserves beyond its context's estimate (the completion's cap and the
--          system prompt's estimate), spent from today's budget until the turn settles
--          (reserve_tokens in lib.lua); only with a budget
-- ARGV[17] the person who wrote ('' = the owner): whose rate limit and budget [13] and [15]
--          check (only a person of this slot: in a shared space they are '0' and the person is
--          billed in their own slot, reserve_turn.lua), and the creator of a session made here
-- ARGV[18] MAX_ATTACHMENT_BYTES_PER_SESSION  [19] IMAGE_CONTEXT_TURNS  [20] tokens an image is
--          estimated to take  [21] how many files the message brings, then for each four
--          values: kind code ('i', 'd', 'a', or 'f': a document sent to the model as a file),
--          media type, name, bytes; after them, the models
--          that read no images as a JSON array ('' = none): a message with images whose session
--          answers with one of them is refused ({'MODEL_CANNOT_SEE', model}) before anything
--          is created, locked or stored; then the tokens the message's text takes, and what the
--          global SYSTEM_PROMPT takes in a request (its tokens and a message's overhead; 0: none)
-- Returns {'OK', sid, uid, title, model, createdAt, updatedAt, count, the session's system
--          prompt ('' = the global SYSTEM_PROMPT), user seq,
--          the context entries as one JSON array ('' unless one of them has files), expired
--          after, context cut, loss told, summary ('' = none), the seq up to which it stands
--          in for the messages, summary told, the context as the model's messages (request JSON
--          objects joined by commas; '' when the entries are returned instead), the tokens
--          they take, their seqs and tokens as one JSON array [seq, tokens, ...]}: the expired
--          after, cut and told say what the reply must tell
--          (docs/data-model.md, "Notices"): the seconds
--          without messages after which the space's previous session expired, while this one
--          was made for that and no reply has said so ('' = nothing to tell); '1' when older
--          messages of the session that no summary stands in for are left out of the context
--          (trimmed by max messages, or past the context tokens), else ''; '1' once a reply
--          has said that some were, else ''; '1' once a reply said it relied on a summary;
--          then, for each image the model is sent (those still kept of the last [19] user
--          messages of the context), its id and its bytes
--      or {'NOT_FOUND'} | {'BUSY'} | {'NOTHING_TO_RETRY'}
--      or {'RATE_LIMITED', ms until a turn fits} | {'BUDGET_EXHAUSTED', ms until the next UTC day}
--      or {'LOCK_LOST'}: a repeat whose turn no longer holds the session (see holds_turn)
local uid, sid, content, token = ARGV[2], ARGV[3], ARGV[5], ARGV[6]
local ttl, max_messages, context_tokens = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local rate_limit, window_ms = tonumber(ARGV[13]) or 0, tonumber(ARGV[14]) or 0
local budget = tonumber(ARGV[15]) or 0
local reserve_beyond_context = tonumber(ARGV[16]) or 0
local lock_ttl_ms = tonumber(ARGV[7])
local person = ARGV[17] or ''
local file_budget, image_turns = tonumber(ARGV[18]) or 0, tonumber(ARGV[19]) or 0
local image_tokens, file_count = tonumber(ARGV[20]) or 0, tonumber(ARGV[21]) or 0
local is_retry = content == '' and file_count == 0
local blind = {}
local listed_blind = ARGV[22 + 4 * file_count] or ''
local message_tokens = tonumber(ARGV[23 + 4 * file_count]) or 0
local global_prompt_tokens = tonumber(ARGV[24 + 4 * file_count]) or 0
if listed_blind ~= '' then
  for _, model in ipairs(cjson.decode(listed_blind)) do blind[model] = true end
end
-- How long after its sessions expired a space is still told so: a week covers a person back
-- after a night or a weekend; past it nobody expects the conversation to go on.
local SEEN_FOR_SECONDS = 7 * 86400

-- What a message costs in a request beyond its text (MESSAGE_OVERHEAD_TOKENS in core/tokens.py).
local MESSAGE_OVERHEAD = 4
-- How each role's message opens in a request's JSON.
local MESSAGE_OPENINGS = {u = '{"role":"user","content":', a = '{"role":"assistant","content":',
  s = '{"role":"system","content":'}

-- The tokens a text takes: its stored count, else (written before counts were stored) a token
-- per three bytes, more than most text takes.
local function text_tokens(text, counted)
  return tonumber(counted) or math.ceil(#text / 3)
end

-- What the request's system prompt and summary take, from the session's fields `f`
-- (systemPrompt, its tokens, summary, its tokens): the session's own prompt (/persona), else
-- the global one ([24 + 4 * files]).
local function head_tokens(f)
  local tokens = global_prompt_tokens
  if f[1] then tokens = text_tokens(f[1], f[2]) + MESSAGE_OVERHEAD end
  if f[3] then tokens = tokens + text_tokens(f[3], f[4]) + MESSAGE_OVERHEAD end
  return tokens
end

-- The files of an entry the model is sent (images, and documents it reads itself: 'f').
local function files_read(raw)
  local _, _, listed = entry_parts(cjson.decode(raw))
  local count = 0
  for _, file in ipairs(listed) do
    if file[2] == 'i' or file[2] == 'f' then count = count + 1 end
  end
  return count
end

-- Where the JSON string that opens at `open` in `raw` closes: at the first quote not escaped,
-- one preceded by an even run of backslashes.
local function string_end(raw, open)
  local close = open
  repeat
    close = string.find(raw, '"', close + 1, true)
    local before = close - 1
    while string.byte(raw, before) == 92 do before = before - 1 end
  until (close - 1 - before) % 2 == 0
  return close
end

-- A stored entry's seq, role letter, the tokens its content takes, and its content as a JSON
-- string: read without decoding the entry, whatever its layout, when it is compact JSON as the
-- store writes it (anything else is decoded). A content stored without its count (kind below
-- TOKENS_UNIT, or the first layout) takes a token per three bytes, more than most text takes.
local function entry_view(raw)
  local seq, kind, open = string.match(raw, '^%[(%d+),(%d+),%-?%d+,()"')
  local role, tokens, text
  if seq then
    kind = tonumber(kind)
    local role_number = kind % TOKENS_UNIT
    role, tokens = ROLE_LETTERS[role_number], (kind - role_number) / TOKENS_UNIT
  else
    seq, role, open = string.match(raw, '^%[(%d+),"(%a)",%-?%d+,()"')
    tokens = 0
  end
  if seq then
    text = string.sub(raw, open, string_end(raw, open))
  else
    local entry = cjson.decode(raw)
    seq, role = entry_parts(entry)
    kind = type(entry[2]) == 'number' and entry[2] or 0
    tokens, text = math.floor(kind / TOKENS_UNIT), cjson.encode(entry[4])
  end
  if tokens == 0 then tokens = math.ceil((#text - 2) / 3) end
  return tonumber(seq), role, tokens, text
end

local function reversed(list)
  local n = #list
  for i = 1, math.floor(n / 2) do list[i], list[n + 1 - i] = list[n + 1 - i], list[i] end
  return list
end

-- The context: the newest messages up to the user message's (on /retry the answers after it
-- are left out) that the session's summary does not stand in for, as many as fit the
-- request's [10] tokens beside its system prompt and summary (the user message's even when it
-- alone is over); the images of the last [19] user messages count [20] tokens each. Built from
-- what is stored, so that a repeat answers exactly what the first run did. Returns the entries,
-- and the model's messages encoded as request JSON ('' when an entry has files: core/turn.py
-- builds those), the tokens they take, their seqs and tokens as one JSON array [seq, tokens,
-- ...], and whether older messages that no summary stands in for are left out (trimmed by
-- max messages, or past the tokens). Each entry is read without decoding it (one pattern for
-- its seq, kind and where its content starts): a context is up to max messages, every turn.
local function turn_context(turn_sid, user_seq)
  local f = redis.call('HMGET', session_key(turn_sid), 'systemPrompt', 'systemPromptTokens',
    'summary', 'summaryTokens', 'summaryUpTo')
  local covered = tonumber(f[5] or '0')
  local room = context_tokens - head_tokens(f)
  local left = room
  local stored = redis.call('LRANGE', session_key(turn_sid, ':messages'), -max_messages, -1)
  local last = #stored
  while last > 0 and stored_seq(stored[last]) > user_seq do last = last - 1 end
  local first, user_messages, has_files = last + 1, 0, false
  -- The messages' JSON in pieces (separator, closing, content, opening), and their seqs and
  -- tokens: newest first, until reversed; one concatenation at the end.
  local pieces, sent = {}, {}
  for i = last, 1, -1 do
    local raw = stored[i]
    local seq, role, tokens, text = entry_view(raw)
    if seq <= covered then break end
    local cost = tokens + MESSAGE_OVERHEAD
    if role == 'u' then user_messages = user_messages + 1 end
    -- Only a list of files ends an entry with ']]' (a list of lists, last).
    local with_files = string.byte(raw, -2) == 93
    if with_files and user_messages <= image_turns then
      cost = cost + image_tokens * files_read(raw)
    end
    if cost > left and i < last then break end
    left = left - cost
    first, has_files = i, has_files or with_files
    if pieces[1] then pieces[#pieces + 1] = ',' end
    pieces[#pieces + 1] = '}'
    pieces[#pieces + 1] = text
    pieces[#pieces + 1] = MESSAGE_OPENINGS[role]
    sent[#sent + 1] = cost
    sent[#sent + 1] = seq
  end
  local context = {}
  for i = first, last do context[#context + 1] = stored[i] end
  -- Sequence numbers start at 1, and only a trim takes entries from a list's head.
  local is_cut = context[1] ~= nil and stored_seq(context[1]) > covered + 1
  return {entries = context, has_files = has_files,
    encoded = has_files and '' or table.concat(reversed(pieces)),
    tokens = room - left,
    sent = '[' .. table.concat(reversed(sent), ',') .. ']', is_cut = is_cut}
end

-- The ids of the images the model is sent: those of the last `image_turns` user messages of
-- the context.
local function context_image_ids(context)
  local ids, turns = {}, 0
  if not context.has_files then return ids end
  context = context.entries
  for i = #context, 1, -1 do
    if turns >= image_turns then break end
    local seq, role, listed = entry_parts(cjson.decode(context[i]))
    if role == 'u' then
      turns = turns + 1
      if type(listed) == 'table' then
        for _, file in ipairs(listed) do
          -- Images, and documents the model reads itself ('f'): their bytes go to it.
          if file[2] == 'i' or file[2] == 'f' then ids[#ids + 1] = seq .. '-' .. file[1] end
        end
      end
    end
  end
  return ids
end

local function turn_reply(turn_sid, user_seq, context)
  local f = session_fields(turn_sid)
  -- What the reply must tell, read from the session as it is: a repeat of this script tells
  -- what the first run did.
  local told = redis.call('HMGET', session_key(turn_sid), 'tellExpired', 'toldContextLoss',
    'summary', 'summaryUpTo', 'toldSummary')
  -- One JSON document instead of one reply element per entry: a single decode on the way out.
  local reply = {'OK', turn_sid, f[1], f[2], f[3], f[4], f[5], f[6], f[7], user_seq,
    context.has_files and '[' .. table.concat(context.entries, ',') .. ']' or '', told[1] or '',
    context.is_cut and '1' or '', told[2] and '1' or '', told[3] or '', told[4] or '0',
    told[5] and '1' or '', context.encoded, context.tokens, context.sent}
  local ids = context_image_ids(context)
  if #ids > 0 then
    local images = redis.call('HMGET', session_key(turn_sid, ':files'), unpack(ids))
    for i, id in ipairs(ids) do
      if images[i] then
        reply[#reply + 1] = id
        reply[#reply + 1] = images[i]
      end
    end
  end
  return reply
end

-- Checked first, before the limits: the first run may have taken the window's last turn.
local begun = redis.call('HMGET', call_key(token), 'sid', 'userSeq')
if begun[1] then
  if redis.call('EXISTS', session_key(begun[1])) == 0 then return {'NOT_FOUND'} end
  if not keep_turn(begun[1], token, lock_ttl_ms) then return {'LOCK_LOST'} end
  local user_seq = tonumber(begun[2])
  return turn_reply(begun[1], user_seq, turn_context(begun[1], user_seq))
end

local now = now_ms()

if sid ~= '' then
  uid = owner_of(sid, uid)
  if not uid then return {'NOT_FOUND'} end
end
if person == '' then person = uid end
-- Refused before anything is created, locked or stored.
local refusal = turn_refusal(person, rate_limit, window_ms, budget, now)
if refusal then return refusal end

if sid == '' then
  sid = resolve_active(uid)
  if not sid then
    -- Nothing to answer again: create nothing (a session made here would never expire).
    if is_retry then return {'NOTHING_TO_RETRY'} end
    sid = ARGV[4]
    local model = redis.call('HGET', user_key(uid), 'model') or ARGV[11]
    if blind[model] then return {'MODEL_CANNOT_SEE', model} end
    create_session(uid, sid, '', model, now, person)
    -- The space took a turn within its mark's life and has no session left: they expired
    -- (/delete of the last one takes the mark away). Kept until a reply has said so.
    local expired_after = redis.call('GET', user_key(uid, ':seen'))
    if expired_after then redis.call('HSET', session_key(sid), 'tellExpired', expired_after) end
  end
end

if next(blind) then
  local model = redis.call('HGET', session_key(sid), 'model')
  if model and blind[model] then return {'MODEL_CANNOT_SEE', model} end
end

if not redis.call('SET', session_key(sid, ':lock'), token, 'NX', 'PX', lock_ttl_ms) then
  return {'BUSY'}
end

local user_seq
if is_retry then
  -- /retry: answer the newest user message again, with the context that preceded it.
  local window = redis.call('LRANGE', session_key(sid, ':messages'), -max_messages, -1)
  for i = #window, 1, -1 do
    local seq, role = entry_parts(cjson.decode(window[i]))
    if role == 'u' then
      user_seq = seq
      break
    end
  end
  if not user_seq then
    redis.call('DEL', session_key(sid, ':lock'))
    return {'NOTHING_TO_RETRY'}
  end
else
  local listed
  if file_count > 0 then
    -- Named by the seq push_message gives the message: the next one, within this script.
    local seq = tonumber(redis.call('HGET', session_key(sid), 'seq') or '0') + 1
    local incoming = 0
    listed = {}
    for n = 1, file_count do incoming = incoming + #ARGV[21 + 4 * n] end
    make_room_for_files(sid, incoming, file_budget)
    for n = 1, file_count do
      local at = 18 + 4 * n
      local data = ARGV[at + 3]
      listed[n] = {n, ARGV[at], ARGV[at + 1], ARGV[at + 2], #data}
      redis.call('HSET', session_key(sid, ':files'), seq .. '-' .. n, data)
    end
    redis.call('HINCRBY', session_key(sid), 'fileBytes', incoming)
  end
  user_seq = push_message(sid, 'u', now, content, {files = listed, tokens = message_tokens},
    max_messages)
  if redis.call('HGET', session_key(sid), 'title') == '' then
    local first_line = string.match(content, '^%s*([^\n]*)')
    -- A file sent without a word names the session after itself.
    if first_line == '' and file_count > 0 then first_line = ARGV[24] end
    redis.call('HSET', session_key(sid), 'title', utf8_prefix(first_line, tonumber(ARGV[12])))
  end
end

if rate_limit > 0 then count_turn(person, token, window_ms, now) end
redis.call('HSET', session_key(sid), 'updatedAt', now)
mark_recent(uid, sid, now)
redis.call('HSET', user_key(uid), 'active', sid)
touch(sid, uid, ttl)
if ARGV[3] == '' then
  -- Outlives the space's sessions by SEEN_FOR_SECONDS: a turn that finds none left while it
  -- lasts knows they expired, and after how long (ttl) without messages.
  redis.call('SET', user_key(uid, ':seen'), ttl, 'EX', ttl + SEEN_FOR_SECONDS)
end
record_turn(token, sid, user_seq, lock_ttl_ms)
local context = turn_context(sid, user_seq)
if budget > 0 then
  -- Estimated from the stored entries, JSON included: the prompt is never larger.
  local images = #context_image_ids(context) * image_tokens
  -- The session's own system prompt (/persona) and its summary are sent too: [16] counts
  -- only the global system prompt.
  local sent_too = redis.call('HMGET', session_key(sid), 'systemPrompt', 'summary')
  local estimate = estimated_tokens(context.entries) + images
    + estimated_tokens({sent_too[1] or '', sent_too[2] or ''})
  reserve_tokens(token, person, estimate + reserve_beyond_context, now)
end
return turn_reply(sid, user_seq, context)
