-- Charges a person for model work done outside a turn (a summary, core/summaries.py): the
-- tokens go to today's DAILY_TOKEN_BUDGET spending, the reported usage to their /usage.
-- Keyed by a call id: a repeat charges nothing more.
-- KEYS[1] user:turns:{tag}:<person> (any key of the person's slot)
-- ARGV[1] tag  [2] person  [3] call id  [4] tokens  [5] prompt tokens the model reported
--         ('' = none)  [6] completion tokens  [7] cost ('' = unknown)
-- Returns 1 when it charged, 0 for a repeat
local person, record = ARGV[2], call_key(ARGV[3])
if redis.call('HSETNX', record, 'charged', 1) == 0 then return 0 end
redis.call('PEXPIRE', record, CALL_MEMORY_MS)
local now = now_ms()
spend_tokens(person, tonumber(ARGV[4]), now)
if ARGV[5] ~= '' then
  add_usage(person, tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), now)
end
return 1
