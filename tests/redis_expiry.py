"""Time passing, as far as Redis's expiries go, without waiting for it.

`let_time_pass(redis, seconds)` leaves the database as it would be `seconds` later if nobody
wrote meanwhile: every key whose time to live runs out by then is gone (as Redis expires it),
every other key with one has that much less left. Redis's own clock (`TIME`, which the scripts
stamp messages with) does not move: only expiries do. Read with SCAN: fine for tests, never
done by the service.
"""

from __future__ import annotations

import redis.asyncio as aioredis


async def let_time_pass(redis: aioredis.Redis, seconds: float) -> None:
    passed_ms = round(seconds * 1000)
    async for key in redis.scan_iter(count=1000):
        left_ms = await redis.pttl(key)
        if left_ms < 0:
            continue  # no expiry (-1), or expired meanwhile (-2)
        if left_ms <= passed_ms:
            await redis.delete(key)
        else:
            await redis.pexpire(key, left_ms - passed_ms)
