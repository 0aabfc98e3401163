-- Stores a message the model did not answer, added through the HTTP API
-- (POST /api/sessions/{id}/messages: imports, notes). The one door for such messages, held to
-- what a turn's question is held to:
-- - A running turn holds the session: while its lock exists this is refused ('BUSY'), so nothing
--   lands between a turn's question and its answer. The script runs atomically, so checking that
--   the lock is free takes it for as long as the script runs, as surely as SET NX then DEL would,
--   without their two writes. A turn whose lock lapsed is fenced out by the message stored here:
--   the session's seq moves past the one its turn began on (holds_turn in lib.lua).
-- - It counts against the session owner's RATE_LIMIT_MESSAGES, like a turn, whoever sends it
--   (the service token too): refused past it ({'RATE_LIMITED', ms}), else logged in the owner's
--   turn log under its call id.
-- Checks only read until the script is sure to store (maxmemory: see turn_wait_ms in lib.lua).
-- The length limits are the store's to check before this runs (a pure function of the input).
-- Keyed by a call id: run again with it (a retry after a lost reply) it answers what it did,
-- storing and counting nothing more. A refusal changed nothing, so it is not kept: a repeat
-- decides again.
-- KEYS[1] session:{tag}:<sid>
-- ARGV[1] tag  [2] sid  [3] expected owner ('' = any)  [4] role: 'u' | 'a' | 's'  [5] content
-- ARGV[6] model ('' = none)  [7] ttl seconds  [8] max messages
-- ARGV[9] turns per window (0 = no rate limit)  [10] window ms  [11] call id
-- ARGV[12] the tokens the content takes (core/tokens.py; '' = not counted)
-- Returns {'OK', seq, timestamp ms, message count, owner} or {'NOT_FOUND'} or {'BUSY'}
--      or {'RATE_LIMITED', ms until one more fits}
local sid, call = ARGV[2], ARGV[11]
local rate_limit, window_ms = tonumber(ARGV[9]), tonumber(ARGV[10])
local kept = kept_reply(call)
-- Before the limits: the first run may have taken the window's last slot.
if kept then return kept end

local uid = owner_of(sid, ARGV[3])
if not uid then return {'NOT_FOUND'} end
if redis.call('EXISTS', session_key(sid, ':lock')) == 1 then return {'BUSY'} end
local now = now_ms()
local wait = turn_wait_ms(uid, rate_limit, window_ms, now)
if wait > 0 then return {'RATE_LIMITED', wait} end

local about = {model = ARGV[6], tokens = tonumber(ARGV[12])}
local seq = push_message(sid, ARGV[4], now, ARGV[5], about, tonumber(ARGV[8]))
if rate_limit > 0 then count_turn(uid, call, window_ms, now) end
redis.call('HSET', session_key(sid), 'updatedAt', now)
mark_recent(uid, sid, now)
touch(sid, uid, tonumber(ARGV[7]))
return keep_reply(call, {'OK', seq, now, redis.call('LLEN', session_key(sid, ':messages')), uid})
