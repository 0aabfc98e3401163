-- Stores a session's new summary (core/summaries.py): it stands in for the messages up to
-- `up_to`, which turns no longer send. Only under the claim summary_source.lua gave, and only
-- if the summary it was made from is still the session's (compare-and-set). A repeat (the
-- reply lost) finds its summary stored and answers 'OK' again.
-- KEYS[1] session:{tag}:<sid>
-- ARGV[1] tag  [2] sid  [3] claim token  [4] the seq the previous summary stood in up to
--         [5] up_to  [6] the summary ('' = none could be made: only let the claim go, so that
--         a later turn tries again at once)  [7] the tokens the summary takes as the model is
--         sent it (core/summaries.py: summary_message)
-- Returns 'OK', 'NOT_FOUND', or 'STALE' (the claim lapsed, or the summary changed since)
local sid, token, up_to, summary = ARGV[2], ARGV[3], tonumber(ARGV[5]), ARGV[6]
local claim = session_key(sid, ':summarizing')
if summary == '' then
  if redis.call('GET', claim) == token then redis.call('DEL', claim) end
  return 'OK'
end
if redis.call('EXISTS', session_key(sid)) == 0 then return 'NOT_FOUND' end
local f = redis.call('HMGET', session_key(sid), 'summary', 'summaryUpTo')
local covered = tonumber(f[2] or '0')
if covered == up_to and f[1] == summary then return 'OK' end
if redis.call('GET', claim) ~= token or covered ~= tonumber(ARGV[4]) then return 'STALE' end
redis.call('HSET', session_key(sid), 'summary', summary, 'summaryUpTo', up_to,
  'summaryTokens', ARGV[7])
redis.call('DEL', claim)
return 'OK'
