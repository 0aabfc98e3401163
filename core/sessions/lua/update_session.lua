-- Renames a session, changes its model or its system prompt (/persona, PATCH): any of them in
-- one call. A repeat (the client retrying after a lost reply) sets the same values again and
-- answers the same.
-- KEYS[1] session:{tag}:<sid>
-- ARGV[1] tag  [2] sid  [3] expected owner ('' = any)  [4] ttl
-- ARGV[5], [6], ...: field ('title' | 'model' | 'systemPrompt' | 'systemPromptTokens': the
--          tokens it takes) and value pairs; an empty systemPrompt removes it and its tokens
--          (the global SYSTEM_PROMPT applies again)
-- Returns {'OK', sid, uid, title, model, createdAt, updatedAt, count, systemPrompt ('' = global)}
--      or {'NOT_FOUND'}
local sid = ARGV[2]
local uid = owner_of(sid, ARGV[3])
if not uid then return {'NOT_FOUND'} end
for i = 5, #ARGV, 2 do
  if ARGV[i] == 'systemPrompt' and ARGV[i + 1] == '' then
    redis.call('HDEL', session_key(sid), 'systemPrompt', 'systemPromptTokens')
  else
    redis.call('HSET', session_key(sid), ARGV[i], ARGV[i + 1])
  end
end
touch(sid, uid, tonumber(ARGV[4]))
local f = session_fields(sid)
return {'OK', sid, f[1], f[2], f[3], f[4], f[5], f[6], f[7]}
