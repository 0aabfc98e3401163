-- Creates a session, enforcing MAX_SESSIONS_PER_USER atomically. Keyed by the new session's id:
-- run again with it (a retry after a lost reply) it answers what it answered, evicting and
-- creating nothing more; a refusal changed nothing, so its repeat may simply decide again.
-- KEYS[1] user:sessions:{tag}:<uid>
-- ARGV[1] tag  [2] uid  [3] new sid  [4] title  [5] model ('' = the user's /model choice, else [6])
-- ARGV[6] default model  [7] ttl seconds  [8] max sessions  [9] policy: 'reject' | 'evict_oldest'
-- ARGV[10] turns per window  [11] window ms  [12] daily token budget: for a session made for a
--          turn that follows at once, refused as that turn would be (all '0': no check)
-- ARGV[13] the person creating it ('' = the owner; see create_session in lib.lua)
-- ARGV[14] its own system prompt ('' = none: the global SYSTEM_PROMPT applies)  [15] the
--          tokens it takes (core/tokens.py)
-- Returns {'OK', sid, uid, title, model, createdAt, updatedAt, count, systemPrompt ('' = global), evicted sid...} or {'LIMIT'}
--      or {'RATE_LIMITED', ms} | {'BUDGET_EXHAUSTED', ms} (see begin_turn.lua)
local uid, sid, title, ttl, max_sessions = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[7]), tonumber(ARGV[8])
local model = ARGV[5]
local kept = kept_reply(sid)
if kept then return kept end
local now = now_ms()
local refusal = turn_refusal(uid, tonumber(ARGV[10]) or 0, tonumber(ARGV[11]) or 0,
  tonumber(ARGV[12]) or 0, now)
if refusal then return refusal end
if model == '' then model = redis.call('HGET', user_key(uid), 'model') or ARGV[6] end

local live = live_sessions(uid)
local evicted = {}
if #live >= max_sessions then
  if ARGV[9] ~= 'evict_oldest' then return {'LIMIT'} end
  for i = #live, max_sessions, -1 do
    delete_session_keys(live[i])
    redis.call('ZREM', user_key(uid, ':sessions'), live[i])
    evicted[#evicted + 1] = live[i]
  end
end
create_session(uid, sid, title, model, now, ARGV[13])
if (ARGV[14] or '') ~= '' then
  redis.call('HSET', session_key(sid), 'systemPrompt', ARGV[14], 'systemPromptTokens', ARGV[15])
end
touch(sid, uid, ttl)
local f = session_fields(sid)
local reply = {'OK', sid, f[1], f[2], f[3], f[4], f[5], f[6], f[7]}
for _, old in ipairs(evicted) do reply[#reply + 1] = old end
return keep_reply(sid, reply)
