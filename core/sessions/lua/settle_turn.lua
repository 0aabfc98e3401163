-- Ends the bill of a shared space's turn in its person's slot (see reserve_turn.lua): settles
-- the turn's reservation to the tokens it spent, once (settle_tokens in lib.lua); or, for a
-- turn that never began (the session busy, gone, nothing to retry), takes the turn out of the
-- rate limit's log and gives the whole reservation back.
-- KEYS[1] user:turns:{tag}:<person>
-- ARGV[1] tag  [2] person  [3] lock token  [4] tokens spent  [5] '1' = the turn never began
-- ARGV[6] prompt tokens the model reported ('' = none)  [7] completion tokens  [8] cost ('' =
--         unknown): added to the person's /usage once (`usageCounted` on the record)
-- Returns 1. A repeat settles nothing more: the first run marked the record settled, or
-- deleted it (a later reserve_turn.lua with the same token bills the turn anew).
local person, token = ARGV[2], ARGV[3]
local record = call_key(token)
if ARGV[5] == '1' then
  settle_tokens(token, '', 0, now_ms())
  redis.call('ZREM', user_key(person, ':turns'), token)
  redis.call('DEL', record)
  return 1
end
local now = now_ms()
settle_tokens(token, '', tonumber(ARGV[4]) or 0, now)
if (ARGV[6] or '') ~= '' and redis.call('HSETNX', record, 'usageCounted', 1) == 1 then
  add_usage(person, tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), now)
end
redis.call('PEXPIRE', record, CALL_MEMORY_MS)
return 1
