-- Bills a turn of a shared space to the person who wrote it, in the person's own slot (the
-- session's slot is the chat's): checks their rate limit and daily budget, counts the turn and
-- reserves its tokens, as begin_turn.lua does for a turn in the person's own slot. The turn's
-- settle_turn.lua settles the reservation when it ends, or gives the turn back when it did
-- not begin.
-- Keyed by the turn's lock token: run again with it (a lost reply, or begin_turn busy and tried
-- again) it answers OK and counts and reserves nothing more.
-- KEYS[1] user:turns:{tag}:<person>
-- ARGV[1] tag  [2] person  [3] lock token  [4] turns per window (0 = no rate limit)
-- ARGV[5] window ms  [6] daily token budget (0 = none)  [7] tokens to reserve (only with a
--         budget): a bound on what the turn can send and be answered, as its context is not
--         read yet  [8] ms the record lives: longer than the turn can last
-- Returns {'OK'} or {'RATE_LIMITED', ms} | {'BUDGET_EXHAUSTED', ms} (see begin_turn.lua)
local person, token = ARGV[2], ARGV[3]
local rate_limit, window_ms, budget = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local record = call_key(token)
if redis.call('HGET', record, 'billed') then return {'OK'} end
local now = now_ms()
local refusal = turn_refusal(person, rate_limit, window_ms, budget, now)
if refusal then return refusal end
if rate_limit > 0 then count_turn(person, token, window_ms, now) end
redis.call('HSET', record, 'billed', 1)
redis.call('PEXPIRE', record, tonumber(ARGV[8]))
if budget > 0 then reserve_tokens(token, person, tonumber(ARGV[7]), now) end
return {'OK'}
