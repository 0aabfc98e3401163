"""The store's Lua scripts on one Redis client: loaded once, one round trip per call.

This is also the one edge where redis-py's errors become the core's store errors (and are
counted): connection trouble is StoreUnavailable, a write refused at maxmemory is StoreFull.
"""

from __future__ import annotations

from collections.abc import Awaitable
from functools import cache
from importlib import resources
from typing import Any, TypeVar

import redis.asyncio as aioredis
import redis.exceptions as redis_errors

from core.activity import SessionActivity
from core.errors import StoreError, StoreFull, StoreUnavailable
from core.metrics import Metrics

SCRIPT_NAMES = (
    "create_session",
    "begin_turn",
    "append_message",
    "get_session",
    "read_messages",
    "list_sessions",
    "switch_session",
    "delete_session",
    "update_session",
    "set_model",
    "lock",
)
UNAVAILABLE_REPLIES = ("LOADING", "MASTERDOWN", "READONLY", "CLUSTERDOWN", "TRYAGAIN")
T = TypeVar("T")


@cache
def script_source(name: str) -> str:
    """A script with the shared helpers of lib.lua in front of it."""
    folder = resources.files("core") / "lua"
    return (folder / "lib.lua").read_text() + "\n" + (folder / f"{name}.lua").read_text()


class LuaScripts:
    def __init__(self, redis: aioredis.Redis, activity: SessionActivity, metrics: Metrics) -> None:
        self._redis = redis
        self._activity = activity
        self._metrics = metrics
        self._scripts = {name: redis.register_script(script_source(name)) for name in SCRIPT_NAMES}

    async def run(
        self, name: str, key: str, *args: str | int, active_session: str | None = None
    ) -> Any:
        """One script; with `active_session`, its activity record rides in the same round trip."""
        if active_session is None:
            return await self.translate(self._scripts[name](keys=[key], args=list(args)))
        return await self.translate(self._run_recording(name, key, args, active_session))

    async def translate(self, awaitable: Awaitable[T]) -> T:
        """Await a Redis call, turning redis-py's errors into the core's."""
        try:
            return await awaitable
        except (
            redis_errors.ConnectionError,
            redis_errors.TimeoutError,
            redis_errors.ResponseError,
        ) as exc:
            error = _store_error(exc)
            self._metrics.redis_error(error)
            raise error from exc

    async def _run_recording(
        self, name: str, key: str, args: tuple[str | int, ...], session_id: str
    ) -> Any:
        script = self._scripts[name]
        for attempt in (1, 2):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.evalsha(script.sha, 1, key, *args)
                self._activity.record(pipe, session_id)
                result = (await pipe.execute(raise_on_error=False))[0]
            if isinstance(result, redis_errors.NoScriptError) and attempt == 1:
                await self._redis.script_load(script.script)  # Redis restarted without it
                continue
            if isinstance(result, Exception):
                raise result
            return result
        raise AssertionError("unreachable: the second attempt returns or raises")


def _store_error(exc: redis_errors.RedisError) -> StoreError:
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError):
        return StoreUnavailable()
    if isinstance(exc, redis_errors.OutOfMemoryError):
        return StoreFull()
    if str(exc).startswith(UNAVAILABLE_REPLIES):
        return StoreUnavailable()
    return StoreError()
