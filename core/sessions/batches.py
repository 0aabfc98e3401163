"""Scripts run many at a time: one pipeline per batch, one round trip (split by node on a
Cluster). For walks over the keyspace — backup, restore, the key migration — whose scripts
only read or are idempotent, so a batch may run twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import redis.exceptions as redis_errors

from core.sessions.scripts import script_source, store_error
from core.storage.connection import RedisClient

REDIS_ERRORS = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ResponseError,
    redis_errors.ClusterError,
    redis_errors.RedisClusterException,
)
# A script's argument: bytes for binary values (a restore's files), sent as they are.
Arg = str | int | bytes


class ScriptBatches:
    """Named scripts of core/sessions/lua, run in pipelined batches."""

    def __init__(self, redis: RedisClient, names: Iterable[str]) -> None:
        self._redis = redis
        self.by_name = {name: redis.register_script(script_source(name)) for name in names}

    async def run_batch(self, calls: Sequence[tuple[str, str, Sequence[Arg]]]) -> list[Any]:
        """One reply per (script, key, args); a Redis that lost its scripts gets them again.

        Every script run here only reads or is idempotent, so running a batch twice is harmless.
        """
        if not calls:
            return []
        try:
            for attempt in (1, 2):
                results = await self._pipeline(calls)
                missing = any(isinstance(r, redis_errors.NoScriptError) for r in results)
                if missing and attempt == 1:
                    for name in {name for name, _, _ in calls}:
                        await self._redis.script_load(self.by_name[name].script)
                    continue
                for result in results:
                    if isinstance(result, Exception):
                        raise result
                return results
        except REDIS_ERRORS as exc:
            raise store_error(exc) from exc
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def _pipeline(self, calls: Sequence[tuple[str, str, Sequence[Arg]]]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for name, key, args in calls:
                # A raw command: redis-py's cluster pipeline refuses .evalsha() (see
                # core/sessions/scripts.py); on a cluster the batch is split by node.
                pipe.execute_command("EVALSHA", self.by_name[name].sha, 1, key, *args)
            return list(await pipe.execute(raise_on_error=False))

    async def server_time_ms(self) -> int:
        try:
            seconds, microseconds = await self._redis.time()
        except REDIS_ERRORS as exc:
            raise store_error(exc) from exc
        return int(seconds) * 1000 + int(microseconds) // 1000


async def scanned_keys(
    redis: RedisClient, pattern: str, batch_size: int, *, key_type: str | None = None
) -> AsyncIterator[list[str]]:
    """Names of keys matching `pattern` (of `key_type` only, if given), `batch_size` at a time,
    walked with SCAN (never KEYS); on a Cluster, from every primary."""
    batch: list[str] = []
    try:
        async for key in redis.scan_iter(match=pattern, count=batch_size, _type=key_type):
            batch.append(key.decode() if isinstance(key, bytes) else key)
            if len(batch) == batch_size:
                yield batch
                batch = []
    except REDIS_ERRORS as exc:
        raise store_error(exc) from exc
    if batch:
        yield batch
