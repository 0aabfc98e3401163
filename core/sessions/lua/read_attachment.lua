-- One file of a session's messages, for whoever may read the session.
-- KEYS[1] session:{tag}:<sid>
-- ARGV[1] tag  [2] sid  [3] expected owner ('' = any)  [4] attachment id '<seq>-<n>'
-- Returns {'OK', kind, media type, name, bytes}, {'GONE', kind, media type, name} (listed,
-- its bytes dropped by the session's budget) or {'NOT_FOUND'} (no such session, not the
-- owner's, or no such file)
local sid, id = ARGV[2], ARGV[4]
if not owner_of(sid, ARGV[3]) then return {'NOT_FOUND'} end
local seq, n = string.match(id, '^(%d+)-(%d+)$')
if not seq then return {'NOT_FOUND'} end
seq, n = tonumber(seq), tonumber(n)
-- Entries are in seq order: walk from the newest, as recent files are the ones asked for.
local messages = session_key(sid, ':messages')
for i = redis.call('LLEN', messages) - 1, 0, -1 do
  local entry_seq, _, listed = entry_parts(cjson.decode(redis.call('LINDEX', messages, i)))
  if entry_seq < seq then break end
  if entry_seq == seq then
    if type(listed) ~= 'table' then return {'NOT_FOUND'} end
    for _, file in ipairs(listed) do
      if file[1] == n then
        local data = redis.call('HGET', session_key(sid, ':files'), id)
        if not data then return {'GONE', file[2], file[3], file[4]} end
        return {'OK', file[2], file[3], file[4], data}
      end
    end
    return {'NOT_FOUND'}
  end
end
return {'NOT_FOUND'}
