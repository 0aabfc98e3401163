-- /usage: a person's reported usage of the last `days` UTC days (today first) and the tokens
-- DAILY_TOKEN_BUDGET counts today, read on the server's clock so the day is the scripts' day.
-- KEYS[1] user:usage:{tag}:<person> of any day (it names the slot)
-- ARGV[1] tag  [2] person  [3] days
-- Returns {today (days since 1970-01-01), budget tokens today, then per day from today back:
--          prompt, completion, cost (each false when none)}
local person, days = ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local today = math.floor(now / DAY_MS)
local budget_key = tokens_key(person, now)
local reply = {today, tonumber(redis.call('GET', budget_key) or '0')}
for back = 0, days - 1 do
  local key = user_key(person, ':usage:' .. string.format('%d', today - back))
  local day = redis.call('HMGET', key, 'prompt', 'completion', 'cost')
  reply[#reply + 1] = day[1]
  reply[#reply + 1] = day[2]
  reply[#reply + 1] = day[3]
end
return reply
