"""The store's Lua scripts on one Redis client: loaded once, one round trip per call.

This is also the one edge where redis-py's errors become the core's store errors (and are
counted): connection trouble is StoreUnavailable, a write refused at maxmemory is StoreFull.
"""

from __future__ import annotations

import asyncio
import hashlib
import traceback
from collections.abc import Awaitable, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import redis
import redis.exceptions as redis_errors

from core.errors import StoreError, StoreFull, StoreUnavailable
from core.observability.activity import SessionActivity
from core.observability.metrics import Metrics
from core.storage.connection import RedisClient

SCRIPT_NAMES = (
    "create_session",
    "begin_turn",
    "append_message",
    "request_stop",
    "add_message",
    "get_session",
    "read_messages",
    "read_attachment",
    "list_sessions",
    "switch_session",
    "delete_session",
    "update_session",
    "set_model",
    "lock",
    "reserve_turn",
    "settle_turn",
    "read_usage",
    "summary_source",
    "save_summary",
    "charge_tokens",
)
UNAVAILABLE_REPLIES = (
    "LOADING",
    "MASTERDOWN",
    "READONLY",
    "CLUSTERDOWN",
    "TRYAGAIN",
    # A min-replicas-to-write master without enough replicas in reach refuses writes.
    "NOREPLICAS",
    # A script on a cluster node whose slot is being moved away reached a key that is not
    # (or no longer) there; it stopped at that key. Retrying after the move succeeds.
    "Script attempted to access a non local key",
)
# redis-py turns these replies into their own classes (without the code at the front): a replica
# that was master, a cluster mid-failover or mid-resharding, a slot map nobody can serve.
UNAVAILABLE_ERRORS = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.ClusterError,
    redis_errors.SlotNotCoveredError,
)
# What the cluster client raises when no node answers or the slots are not all served.
CLUSTER_UNREACHABLE = ("Redis Cluster cannot be connected", "All slots are not covered")
# Where redis-py and its asyncio transports live: see _is_lost_connection.
CLIENT_LIBRARY_DIRS = (Path(redis.__file__).parent, Path(asyncio.__file__).parent)
T = TypeVar("T")
# However Redis fails (a hung server holds each command until its socket timeout, and a full
# listen backlog stalls connecting too), one store call answers within this: users and chat
# platforms (Discord waits 3 s for an interaction's answer) are told "unavailable", not kept.
STORE_CALL_DEADLINE_SECONDS = 4.0


@cache
def script_source(name: str) -> str:
    """A script with the shared helpers of lib.lua in front of it."""
    folder = resources.files("core.sessions") / "lua"
    return (folder / "lib.lua").read_text() + "\n" + (folder / f"{name}.lua").read_text()


@cache
def script_sha(name: str) -> str:
    """The SHA1 name Redis gives a script (what EVALSHA names it by), as redis-py computes it."""
    return hashlib.sha1(script_source(name).encode()).hexdigest()  # noqa: S324  (Redis's own naming)


class LuaScripts:
    def __init__(self, redis: RedisClient, activity: SessionActivity, metrics: Metrics) -> None:
        self._redis = redis
        self._activity = activity
        self._metrics = metrics
        self._scripts = {name: redis.register_script(script_source(name)) for name in SCRIPT_NAMES}

    async def run(
        self, name: str, key: str, *args: str | int | bytes, active_session: str | None = None
    ) -> Any:
        """One script; with `active_session`, its activity record rides in the same round trip."""
        if active_session is None:
            return await self.translate(self._scripts[name](keys=[key], args=list(args)))
        return await self.translate(self._run_recording(name, key, args, active_session))

    async def run_many(
        self, name: str, calls: Sequence[tuple[str, Sequence[str | int | bytes]]]
    ) -> list[Any]:
        """One script for each (key, args) of `calls`, in one round trip (a pipeline: on a
        cluster, one per node at once); the replies in order, an error reply as its core
        error."""
        return await self.translate(self._run_pipelined(name, calls))

    async def _run_pipelined(
        self, name: str, calls: Sequence[tuple[str, Sequence[str | int | bytes]]]
    ) -> list[Any]:
        script = self._scripts[name]
        for attempt in (1, 2):
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, args in calls:  # a raw command: see _run_recording
                    pipe.execute_command("EVALSHA", script.sha, 1, key, *args)
                results = await pipe.execute(raise_on_error=False)
            missing = any(isinstance(r, redis_errors.NoScriptError) for r in results)
            if missing and attempt == 1:
                await self._redis.script_load(script.script)  # Redis restarted without it
                continue
            for result in results:
                if isinstance(result, redis_errors.RedisError):
                    raise result
            return list(results)
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def translate(self, awaitable: Awaitable[T]) -> T:
        """Await a Redis call, turning redis-py's errors into the core's; bounded in time."""
        try:
            async with asyncio.timeout(STORE_CALL_DEADLINE_SECONDS):
                return await awaitable
        except TimeoutError:
            error: StoreError = StoreUnavailable()
            self._metrics.redis_error(error)
            raise error from None
        except (
            redis_errors.ConnectionError,
            redis_errors.TimeoutError,
            redis_errors.ResponseError,
            redis_errors.ClusterError,
            redis_errors.RedisClusterException,
        ) as exc:
            error = store_error(exc)
            self._metrics.redis_error(error)
            raise error from exc
        except (AttributeError, TypeError) as exc:
            if not _is_lost_connection(exc):
                raise  # ours: a bug to see, not Redis trouble
            error = StoreUnavailable()
            self._metrics.redis_error(error)
            raise error from exc

    async def _run_recording(
        self, name: str, key: str, args: tuple[str | int | bytes, ...], session_id: str
    ) -> Any:
        script = self._scripts[name]
        for attempt in (1, 2):
            async with self._redis.pipeline(transaction=False) as pipe:
                # As a raw command: redis-py's cluster pipeline refuses .evalsha() although it
                # routes EVALSHA by its keys like any command (redis/redis-py#2914, fixed
                # upstream by #4206). On a cluster the pipeline is split by node and the parts
                # sent at once: the script to the user's slot, the record to the stats slot.
                pipe.execute_command("EVALSHA", script.sha, 1, key, *args)
                self._activity.record(pipe, session_id)
                result = (await pipe.execute(raise_on_error=False))[0]
            if isinstance(result, redis_errors.NoScriptError) and attempt == 1:
                await self._redis.script_load(script.script)  # Redis restarted without it
                continue
            if isinstance(result, Exception):
                raise result
            return result
        raise AssertionError("unreachable: the second attempt returns or raises")


def store_error(exc: redis_errors.RedisError | redis_errors.RedisClusterException) -> StoreError:
    """The core's error for one of redis-py's."""
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return StoreUnavailable()
    if isinstance(exc, redis_errors.RedisClusterException):
        return StoreUnavailable() if str(exc).startswith(CLUSTER_UNREACHABLE) else StoreError()
    if isinstance(exc, redis_errors.OutOfMemoryError):
        return StoreFull()
    if str(exc).startswith(UNAVAILABLE_REPLIES):
        return StoreUnavailable()
    return StoreError()


def _is_lost_connection(exc: BaseException) -> bool:
    """Whether redis-py's asyncio client failed on a connection closed under it.

    Writing to a connection the peer reset, or that another task disconnected (a Cluster
    failover does), raises TypeError or AttributeError from the transport instead of
    ConnectionError (redis/redis-py#4287, in redis-py 8.1): told apart from our own bugs by
    where it was raised.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return False
    raised_in = Path(frames[-1].filename)
    return any(raised_in.is_relative_to(folder) for folder in CLIENT_LIBRARY_DIRS)
