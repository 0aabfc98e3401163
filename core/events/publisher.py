"""Events about sessions and turns, appended to one Redis Stream for webhook delivery.

The core publishes an event once the change it describes is stored. Without WEBHOOK_URLS the
publisher is NO_EVENTS, which does nothing: no Redis call, no cost on the chat path. With them,
RedisEventPublisher appends each event to EVENTS_STREAM_KEY, from which webhooks.py delivers it
to every receiver (one consumer group each). docs/webhooks.md is the receivers' contract.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol
from urllib.parse import urlsplit

import redis.exceptions as redis_errors
import structlog

from core.conversation import Session, Usage, iso_utc
from core.storage.connection import RedisClient

log = structlog.get_logger(__name__)

# One hash tag for every key of the feature: one Cluster slot, so the streams and the expiry
# markers live on one node and a pipeline over them is one request.
EVENTS_STREAM_KEY = "events:{chatbridge-events}:stream"
DEAD_LETTER_STREAM_KEY = "events:{chatbridge-events}:dead-letters"
EXPIRY_MARKER_PREFIX = "events:{chatbridge-events}:expired:"
# Approximate (XADD MAXLEN ~): Redis trims whole nodes of the stream, which is cheap.
STREAM_MAX_LENGTH = 100_000
DEAD_LETTER_MAX_LENGTH = 10_000
# A turn waits at most this long for its event to be appended, then goes on without it.
PUBLISH_DEADLINE_SECONDS = 1.0
GROUP_PREFIX = "webhook:"


class EventType(StrEnum):
    SESSION_CREATED = "session.created"
    SESSION_DELETED = "session.deleted"
    SESSION_EXPIRED = "session.expired"
    TURN_COMPLETED = "turn.completed"
    TURN_FAILED = "turn.failed"


EventData = Mapping[str, object]


class EventPublisher(Protocol):
    """Where the core reports what happened; publishing never raises and never blocks long."""

    async def publish(self, event_type: EventType, data: EventData) -> None: ...


class NoEvents:
    """The publisher when webhooks are off."""

    async def publish(self, event_type: EventType, data: EventData) -> None:
        return None


NO_EVENTS = NoEvents()


def redacted_url(url: str) -> str:
    """scheme://host[:port]/path: a receiver URL without the credentials it may carry."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def group_name(url: str) -> str:
    """The consumer group of one receiver: readable in redis-cli, distinct per full URL."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return f"{GROUP_PREFIX}{redacted_url(url)}#{digest}"


def event_body(
    event_type: EventType, data: EventData, *, event_id: str, created_at: datetime
) -> str:
    """The JSON a receiver gets, exactly as it is signed."""
    document = {"id": event_id, "type": str(event_type), "createdAt": iso_utc(created_at)}
    return json.dumps({**document, "data": dict(data)}, separators=(",", ":"), ensure_ascii=False)


def session_created(session: Session) -> EventData:
    return {
        "sessionId": session.id,
        "userId": session.user_id,
        "title": session.title,
        "model": session.model,
    }


def session_deleted(session_id: str, user_id: str) -> EventData:
    return {"sessionId": session_id, "userId": user_id}


def session_expired(session_id: str) -> EventData:
    # The user id went with the session's keys: Redis names only the key that expired.
    return {"sessionId": session_id}


def turn_completed(session: Session, *, front: str, model: str, usage: Usage | None) -> EventData:
    """Counts only: never the messages' content."""
    return {
        "sessionId": session.id,
        "userId": session.user_id,
        "front": front,
        "model": model,
        "promptTokens": usage.prompt_tokens if usage else None,
        "completionTokens": usage.completion_tokens if usage else None,
        "cost": usage.cost if usage else None,
    }


def turn_failed(
    session_id: str | None, user_id: str | None, *, front: str, error: str
) -> EventData:
    return {"sessionId": session_id, "userId": user_id, "front": front, "error": error}


class RedisEventPublisher:
    """Appends events to the stream, after making sure every receiver's group exists."""

    def __init__(self, redis: RedisClient, receiver_urls: Sequence[str]) -> None:
        self._redis = redis
        self._groups = tuple(group_name(url) for url in receiver_urls)
        # Created with the first event this process appends (same round trip), so a receiver
        # added to WEBHOOK_URLS gets every event from then on, not the stream's backlog.
        self._has_groups = False

    async def publish(self, event_type: EventType, data: EventData) -> None:
        event_id = str(uuid.uuid4())
        body = event_body(event_type, data, event_id=event_id, created_at=datetime.now(UTC))
        try:
            async with asyncio.timeout(PUBLISH_DEADLINE_SECONDS):
                await self._append({"id": event_id, "type": str(event_type), "body": body})
        except Exception as error:  # an event must never fail the user's action
            log.warning("webhooks.publish_failed", event_type=str(event_type), reason=_why(error))

    async def _append(self, fields: dict[str, str]) -> None:
        if self._has_groups:
            await self._redis.xadd(EVENTS_STREAM_KEY, fields, maxlen=STREAM_MAX_LENGTH)  # type: ignore[arg-type]
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for group in self._groups:
                pipe.xgroup_create(EVENTS_STREAM_KEY, group, id="$", mkstream=True)
            pipe.xadd(EVENTS_STREAM_KEY, fields, maxlen=STREAM_MAX_LENGTH)  # type: ignore[arg-type]
            results = await pipe.execute(raise_on_error=False)
        for result in results:
            if isinstance(result, Exception) and not is_busy_group(result):
                raise result
        self._has_groups = True


def is_busy_group(error: BaseException) -> bool:
    """XGROUP CREATE's answer when the group exists already."""
    return isinstance(error, redis_errors.ResponseError) and str(error).startswith("BUSYGROUP")


def _why(error: BaseException) -> str:
    """A log-safe reason: the error's class (its text may name hosts or carry a URL)."""
    return type(error).__name__ if not isinstance(error, TimeoutError) else "timeout"


def event_publisher(redis: RedisClient, receiver_urls: Sequence[str]) -> EventPublisher:
    """The publisher for WEBHOOK_URLS: NO_EVENTS when there is none."""
    return RedisEventPublisher(redis, receiver_urls) if receiver_urls else NO_EVENTS
