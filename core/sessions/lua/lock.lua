-- Extends a turn's lock while its answer streams, or releases it when the turn ends without an
-- answer; only for the turn that still holds its session.
-- KEYS[1] session:{tag}:<sid>:lock
-- ARGV[1] tag  [2] token  [3] new ttl ms ('0' = release)  [4] sid
-- ARGV[5] on release: the tokens the turn spent without an answer (what the model reported,
--         or the estimate of what it was sent and streamed; 0 when it never had the request),
--         settling the turn's reservation (settle_tokens in lib.lua)
-- Returns 1 when the turn of [2] held the session (now extended, or released), else 0.
-- An extension keeps the turn (keep_turn in lib.lua): it extends the lock, or takes back a
-- lapsed one nobody wrote after, and answers 0 once another writer came in: the turn then ends.
-- A repeat of either (the client retrying after a lost reply) answers the same: an extension
-- extends again, and a release is kept in the turn's record.
local token, ttl, sid = ARGV[2], tonumber(ARGV[3]), ARGV[4]
if ttl > 0 then return keep_turn(sid, token, ttl) and 1 or 0 end

local record = call_key(token)
local released = redis.call('HGET', record, 'released')
if released then return tonumber(released) end
local held = 0
if redis.call('GET', KEYS[1]) == token then held = redis.call('DEL', KEYS[1]) end
settle_tokens(token, '', tonumber(ARGV[5]) or 0, now_ms())
if redis.call('EXISTS', record) == 1 then
  -- Marked too so that an extension still on its way from the turn's keeper cannot take the
  -- lock back (holds_turn).
  redis.call('HSET', record, 'released', held)
  redis.call('PEXPIRE', record, CALL_MEMORY_MS)
end
return held
