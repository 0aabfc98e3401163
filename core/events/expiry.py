"""session.expired events, from Redis keyspace notifications.

A session expired when its hash `session:{T}:<sessionId>` (docs/data-model.md) expired: Redis
then publishes the key's name on `__keyevent@<db>__:expired`. Deleting a session (/delete, an
evict_oldest eviction) is a DEL, which never publishes there, so it is never mistaken for an
expiry. Every replica hears every notification; a marker key set with NX decides which one
publishes the event. On a Cluster each primary publishes the expiries of its own keys, and
redis-py's cluster notifications subscribe to every primary.

Notifications must be switched on (`notify-keyspace-events` with `E` and `x`): the listener
does it with CONFIG SET when the server lets it, and says once, in a warning, when it cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import redis.exceptions as redis_errors
import structlog
from redis.asyncio.cluster import RedisCluster

from core.events.publisher import EXPIRY_MARKER_PREFIX, EventPublisher, EventType, session_expired
from core.storage.connection import RedisClient

log = structlog.get_logger(__name__)

SESSION_HASH_KEY = re.compile(r"^session:\{[0-9a-f]{4}\}:([0-9a-f]{32})$")
NOTIFY_SETTING = "notify-keyspace-events"
# Long enough for every replica to hear the notification and lose the race.
MARKER_TTL_SECONDS = 300
# Redis forgets a CONFIG SET when it restarts; the setting is checked again this often.
CONFIG_CHECK_SECONDS = 30.0
RETRY_SECONDS = 1.0


def with_expiry_events(flags: str) -> str:
    """`notify-keyspace-events` flags that include keyevent (E) notifications of expiries (x)."""
    merged = flags
    if "E" not in merged:
        merged += "E"
    if "x" not in merged and "A" not in merged:
        merged += "x"
    return merged


class SessionExpiryListener:
    """Publishes session.expired once per expired session, however many replicas listen."""

    def __init__(
        self, redis: RedisClient, events: EventPublisher, *, retry_seconds: float = RETRY_SECONDS
    ) -> None:
        self._redis = redis
        self._events = events
        self._retry_seconds = retry_seconds
        self.listening = asyncio.Event()  # set once subscribed (tests wait for it)
        self.stopping = asyncio.Event()  # ends the loop after its current read
        self._has_warned_config = False
        self._is_failing = False

    async def run(self) -> None:
        while not self.stopping.is_set():
            try:
                await self._listen()
            except (redis_errors.RedisError, OSError, TimeoutError) as error:
                self.listening.clear()
                if not self._is_failing:
                    self._is_failing = True
                    log.warning("webhooks.expiry_listener_failed", reason=type(error).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), self._retry_seconds)

    async def _listen(self) -> None:
        if isinstance(self._redis, RedisCluster):
            # Until its first command a Cluster client knows no node: it would switch
            # notifications on nowhere and subscribe to no primary, and hear nothing.
            await self._redis.initialize()
        await self._enable_notifications()
        async with self._redis.keyspace_notifications() as notifications:
            await notifications.subscribe_keyevent("expired", db=_database(self._redis))
            self.listening.set()
            self._is_failing = False
            loop = asyncio.get_running_loop()
            next_check = loop.time() + CONFIG_CHECK_SECONDS
            while not self.stopping.is_set():
                notification = await notifications.get_message(timeout=1.0)
                if notification is not None:
                    await self._expired(str(notification.key))
                if loop.time() >= next_check:
                    await self._enable_notifications()
                    next_check = loop.time() + CONFIG_CHECK_SECONDS

    async def _expired(self, key: str) -> None:
        match = SESSION_HASH_KEY.match(key)
        if match is None:
            return
        session_id = match.group(1)
        is_first = await self._redis.set(
            EXPIRY_MARKER_PREFIX + session_id, "1", nx=True, ex=MARKER_TTL_SECONDS
        )
        if is_first:
            await self._events.publish(EventType.SESSION_EXPIRED, session_expired(session_id))

    async def _enable_notifications(self) -> None:
        """Switch expiry notifications on (every primary of a Cluster); warn once if refused."""
        try:
            for target in _primaries(self._redis):
                flags = await _config_flags(self._redis, target)
                wanted = with_expiry_events(flags)
                if wanted != flags:
                    await self._redis.config_set(NOTIFY_SETTING, wanted, **target)
        except redis_errors.ResponseError as error:
            # Managed Redis services rename or forbid CONFIG.
            if not self._has_warned_config:
                self._has_warned_config = True
                log.warning(
                    "webhooks.expiry_events_unavailable",
                    reason=str(error).split("\n")[0][:120],
                    hint=f"set {NOTIFY_SETTING} to include Ex on the Redis server, or "
                    "session.expired is not sent",
                )


def _primaries(redis: RedisClient) -> list[dict[str, Any]]:
    """Keyword arguments addressing each node whose keys expire: every Cluster primary."""
    if isinstance(redis, RedisCluster):
        return [{"target_nodes": node} for node in redis.get_primaries()]
    return [{}]


async def _config_flags(redis: RedisClient, target: dict[str, Any]) -> str:
    reply = await redis.config_get(NOTIFY_SETTING, **target)
    return str(reply.get(NOTIFY_SETTING, ""))


def _database(redis: RedisClient) -> int:
    if isinstance(redis, RedisCluster):
        return 0
    return int(redis.connection_pool.connection_kwargs.get("db", 0) or 0)
