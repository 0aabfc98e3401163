-- A user's sessions, most recent activity first, repairing index entries that point at nothing;
-- a repeat finds nothing more to repair and reads the same.
-- KEYS[1] user:sessions:{tag}:<uid>
-- ARGV[1] tag  [2] uid  [3] ttl
-- Returns {active sid or '', then sid, title, model, createdAt, updatedAt, count, systemPrompt
--         ('' = global) for each}
local uid = ARGV[2]
local active = resolve_active(uid) or ''
local reply = {active}
for _, sid in ipairs(live_sessions(uid)) do
  local f = session_fields(sid)
  for _, v in ipairs({sid, f[2], f[3], f[4], f[5], f[6], f[7]}) do reply[#reply + 1] = v end
end
redis.call('EXPIRE', user_key(uid, ':sessions'), tonumber(ARGV[3]))
redis.call('EXPIRE', user_key(uid), tonumber(ARGV[3]))
return reply
