-- Creates a session, enforcing MAX_SESSIONS_PER_USER atomically.
-- KEYS[1] user:{tag}:<uid>:sessions
-- ARGV[1] tag  [2] uid  [3] new sid  [4] title  [5] model ('' = the user's /model choice, else [6])
-- ARGV[6] default model  [7] ttl seconds  [8] max sessions  [9] policy: 'reject' | 'evict_oldest'
-- Returns {'OK', sid, evicted sid, ...} or {'LIMIT'}.
local uid, sid, title, ttl, max_sessions = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[7]), tonumber(ARGV[8])
local model = ARGV[5]
if model == '' then model = redis.call('HGET', user_key(uid), 'model') or ARGV[6] end

local live = live_sessions(uid)
local reply = {'OK', sid}
if #live >= max_sessions then
  if ARGV[9] ~= 'evict_oldest' then return {'LIMIT'} end
  for i = #live, max_sessions, -1 do
    delete_session_keys(live[i])
    redis.call('ZREM', user_key(uid, ':sessions'), live[i])
    reply[#reply + 1] = live[i]
  end
end
create_session(uid, sid, title, model, now_ms())
touch(sid, uid, ttl)
return reply
