-- Releases or extends a turn's lock, only while the caller still holds it. A repeat (the
-- client retrying after a lost reply) of an extension extends again and answers 1 again; a
-- repeat of a release finds the lock gone and answers 0, which nobody acts on.
-- KEYS[1] session:{tag}:<sid>:lock
-- ARGV[1] tag  [2] token  [3] new ttl ms ('0' = release)
-- Returns 1 when the caller held the lock, else 0.
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
if ARGV[3] == '0' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[3])
