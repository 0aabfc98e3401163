-- Claims a session's next summary (core/summaries.py) and returns what it is made from: the
-- summary so far and the stored messages after it, up to `up_to`. One claim at a time per
-- session, so replicas that both see messages fall out make one summary, not two; the claim
-- expires by itself if its holder dies.
-- KEYS[1] session:{tag}:<sid>
-- ARGV[1] tag  [2] sid  [3] claim token  [4] the claim's ttl ms  [5] up_to: the newest seq
--         the summary is to stand in for
-- Returns {'OK', summary ('' = none), the seq it stands in up to, the messages after that
--         up to `up_to` (those still stored) as one JSON array}
--      or {'NOT_FOUND'} | {'BUSY'} (another claim holds it) | {'DONE'} (already summarised
--         up to `up_to`)
local sid, token, up_to = ARGV[2], ARGV[3], tonumber(ARGV[5])
if redis.call('EXISTS', session_key(sid)) == 0 then return {'NOT_FOUND'} end
local claim = session_key(sid, ':summarizing')
local holder = redis.call('GET', claim)
if holder and holder ~= token then return {'BUSY'} end
local f = redis.call('HMGET', session_key(sid), 'summary', 'summaryUpTo')
local covered = tonumber(f[2] or '0')
if covered >= up_to then return {'DONE'} end
redis.call('SET', claim, token, 'PX', tonumber(ARGV[4]))
local folded = {}
for _, raw in ipairs(redis.call('LRANGE', session_key(sid, ':messages'), 0, -1)) do
  local seq = stored_seq(raw)
  if seq > up_to then break end
  if seq > covered then folded[#folded + 1] = raw end
end
return {'OK', f[1] or '', covered, '[' .. table.concat(folded, ',') .. ']'}
