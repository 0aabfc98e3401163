"""How many sessions were active lately, counted cheaply for health probes.

Each minute-ish bucket is a HyperLogLog of the session ids that stored a message or were created
in it (12 KB at most, about 1% error). Counting reads at most 60 buckets with one PFCOUNT: no
scan, whatever the number of sessions. The keys share the `{chatbridge-stats}` hash tag, so
the multi-key PFCOUNT stays in one Cluster slot.
"""

from __future__ import annotations

import math
import time

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline

from core.storage.connection import RedisClient

KEY_PREFIX = "stats:{chatbridge-stats}:active-sessions:"
BUCKETS_PER_WINDOW = 60
SHORTEST_BUCKET_SECONDS = 60


class SessionActivity:
    """Sessions with activity in the last `window_seconds` (SESSION_TTL: the live ones)."""

    def __init__(self, window_seconds: int) -> None:
        self.window_seconds = window_seconds
        self._bucket_seconds = max(
            SHORTEST_BUCKET_SECONDS, math.ceil(window_seconds / BUCKETS_PER_WINDOW)
        )

    def record(self, pipe: Pipeline | ClusterPipeline, session_id: str) -> None:
        """Queue the record on a pipeline that already carries the write it accompanies."""
        key = self._key(self._bucket(time.time()))
        pipe.pfadd(key, session_id)
        pipe.expire(key, self.window_seconds + self._bucket_seconds)

    async def count(self, redis: RedisClient) -> int:
        newest = self._bucket(time.time())
        oldest = self._bucket(time.time() - self.window_seconds)
        keys = [self._key(bucket) for bucket in range(oldest, newest + 1)]
        return int(await redis.pfcount(*keys))

    def _bucket(self, moment: float) -> int:
        return int(moment // self._bucket_seconds)

    def _key(self, bucket: int) -> str:
        return f"{KEY_PREFIX}{bucket}"
