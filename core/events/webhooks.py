"""Delivers the events stream to every WEBHOOK_URLS receiver, signed, at least once.

Each receiver has one consumer group on the stream; each replica is one consumer in each
group, so a new event goes to exactly one replica per receiver. The state of every delivery
lives in Redis, not in the process:

- An attempt starts when an entry is delivered to a consumer (XREADGROUP for a new one,
  XAUTOCLAIM for a retry), which counts it: the entry's delivery counter is the attempt number,
  and it survives restarts.
- 2xx: XACK. Anything else (non-2xx, timeout, refused or dropped connection): after the last
  attempt the entry goes to the dead-letter stream and is acknowledged; before it, the entry's
  idle time is set (XCLAIM IDLE) so that it becomes claimable after the backoff.
- Any consumer claims entries idle for `claim_idle` (XAUTOCLAIM, atomic: one wins). An attempt
  in flight resets the idle time and lasts at most `post_timeout`, far below `claim_idle`, so
  under normal operation no event is posted twice at once; a consumer that died leaves its
  entries to the others once they are idle that long.

Failing events do not hold back the others of their receiver: each is retried on its own
schedule, up to MAX_IN_FLIGHT attempts at once per receiver and replica; events can therefore
arrive out of order (docs/webhooks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import redis.exceptions as redis_errors
import structlog

from core.events.expiry import SessionExpiryListener
from core.events.publisher import (
    DEAD_LETTER_MAX_LENGTH,
    DEAD_LETTER_STREAM_KEY,
    EVENTS_STREAM_KEY,
    EventPublisher,
    group_name,
    is_busy_group,
    redacted_url,
)
from core.events.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
)
from core.settings import Settings
from core.storage.connection import RedisClient

log = structlog.get_logger(__name__)

MAX_IN_FLIGHT = 16
# A consumer gone quiet this long (and holding nothing) is forgotten by the group.
FORGET_CONSUMER_AFTER_MS = 3_600_000
USER_AGENT = "chatbridge-webhooks/1"
# On stop, beyond the attempts' own stop_wait, how long the delivery tasks get to end.
STOP_GRACE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class DeliveryTiming:
    """The delivery's clocks; tests shrink them."""

    post_timeout: float = 10.0
    backoff_base: float = 2.0
    backoff_cap: float = 120.0
    # Entries idle this long are any consumer's to claim: retries once their backoff is over,
    # and the entries of a consumer that died. Far above post_timeout, at least backoff_cap.
    claim_idle: float = 120.0
    poll: float = 1.0  # the longest a consumer blocks waiting for new events
    stop_wait: float = 5.0  # on stop, how long attempts in flight get to end

    def __post_init__(self) -> None:
        if self.claim_idle < max(self.backoff_cap, 2 * self.post_timeout):
            raise ValueError("claim_idle must be at least backoff_cap and twice post_timeout")

    def backoff(self, attempt: int) -> float:
        """Seconds between attempt `attempt` (1-based) failing and the next one."""
        return float(min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))


@dataclass(frozen=True, slots=True)
class _Entry:
    stream_id: str
    fields: dict[str, str]
    attempt: int


def consumer_name() -> str:
    """This process's name in every group: host, pid, and a nonce (two in one test process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class ReceiverDispatcher:
    """Delivers the stream's events to one receiver, as one consumer of its group."""

    def __init__(
        self,
        redis: RedisClient,
        http: httpx.AsyncClient,
        url: str,
        secret: str,
        *,
        max_attempts: int,
        consumer: str,
        timing: DeliveryTiming | None = None,
    ) -> None:
        self._redis = redis
        self._http = http
        self._url = url
        self._secret = secret
        self._max_attempts = max_attempts
        self._consumer = consumer
        self._timing = timing or DeliveryTiming()
        self.group = group_name(url)
        self.receiver = redacted_url(url)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._claim_cursor = "0-0"
        self._group_start: str | None = "$"  # None once the group is known to exist
        self._is_redis_failing = False
        # Set by `stop()`: the loop ends after its current Redis call, never cancelled inside
        # one (redis-py 8.1 can leave a connection stuck when cancelled mid-XREADGROUP).
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        """Deliver until `stopping` is set; Redis trouble is logged once and waited out."""
        try:
            while not self.stopping.is_set():
                try:
                    await self._deliver_some()
                except redis_errors.ResponseError as error:
                    if not str(error).startswith("NOGROUP"):
                        await self._redis_failed(error)
                    # The stream or its group vanished (Redis lost its data): take what is there.
                    self._group_start = "0"
                except (redis_errors.RedisError, OSError, TimeoutError) as error:
                    await self._redis_failed(error)
        finally:
            await self._stop_attempts()

    async def _deliver_some(self) -> None:
        if self._group_start is not None:
            await self._prepare_group(self._group_start)
            self._group_start = None
        room = MAX_IN_FLIGHT - len(self._in_flight)
        if room <= 0:
            await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
            return
        entries = await self._claim_due(room)
        entries += await self._read_new(room - len(entries), may_block=not entries)
        if self._is_redis_failing:
            self._is_redis_failing = False
            log.info("webhooks.redis_recovered", receiver=self.receiver)
        for entry in entries:
            task = asyncio.create_task(self._attempt(entry))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _prepare_group(self, start_id: str) -> None:
        try:
            await self._redis.xgroup_create(
                EVENTS_STREAM_KEY, self.group, id=start_id, mkstream=True
            )
        except redis_errors.ResponseError as error:
            if not is_busy_group(error):
                raise
        await self._forget_gone_consumers()

    async def _forget_gone_consumers(self) -> None:
        """Replicas come and go (a new name per process): drop the idle ones holding nothing."""
        stream, group = EVENTS_STREAM_KEY, self.group
        for consumer in await self._redis.xinfo_consumers(stream, group):
            if consumer["pending"] == 0 and consumer["idle"] > FORGET_CONSUMER_AFTER_MS:
                await self._redis.xgroup_delconsumer(stream, group, consumer["name"])

    async def _claim_due(self, count: int) -> list[_Entry]:
        """Entries whose backoff is over, or whose consumer died, now this consumer's."""
        reply = await self._redis.xautoclaim(
            EVENTS_STREAM_KEY, self.group, self._consumer, _ms(self._timing.claim_idle),
            start_id=self._claim_cursor, count=count,
        )  # fmt: skip
        # Continue from the cursor next time, so a long pending list is walked round by round.
        self._claim_cursor = str(reply[0])
        claimed: list[tuple[str, dict[str, str] | None]] = list(reply[1])
        # Redis 7 drops pending entries trimmed from the stream (MAXLEN) and names them here;
        # Redis 6.2 returns them among the claimed, without fields (see _attempt).
        for stream_id in reply[2] if len(reply) > 2 else ():
            log.warning("webhooks.event_trimmed", receiver=self.receiver, entry=str(stream_id))
        if not claimed:
            return []
        attempts = await self._attempt_numbers([stream_id for stream_id, _ in claimed])
        return [
            _Entry(stream_id, fields or {}, attempts.get(stream_id, self._max_attempts + 1))
            for stream_id, fields in claimed
        ]

    async def _attempt_numbers(self, stream_ids: Sequence[str]) -> dict[str, int]:
        """Each claimed entry's delivery counter: the number of the attempt about to start."""
        # One exact range per id, pipelined (one round trip): a single range from the first id
        # to the last would also hold every entry between them still backing off, crowding
        # claimed ones out of its count.
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream_id in stream_ids:
                pipe.xpending_range(
                    EVENTS_STREAM_KEY, self.group, min=stream_id, max=stream_id, count=1,
                    consumername=self._consumer,
                )  # fmt: skip
            replies: list[list[dict[str, Any]]] = await pipe.execute()
        return {
            str(row["message_id"]): int(row["times_delivered"]) for rows in replies for row in rows
        }

    async def _read_new(self, count: int, *, may_block: bool) -> list[_Entry]:
        if count <= 0:
            return []
        reply = await self._redis.xreadgroup(
            self.group, self._consumer, {EVENTS_STREAM_KEY: ">"}, count=count,
            block=_ms(self._timing.poll) if may_block else None,
        )  # fmt: skip
        entries: list[_Entry] = []
        for _stream, messages in _stream_messages(reply):
            entries += [_Entry(stream_id, fields or {}, 1) for stream_id, fields in messages]
        return entries

    async def _attempt(self, entry: _Entry) -> None:
        try:
            if entry.attempt > self._max_attempts:
                # Counted by a claim after the consumer of the last attempt died mid-way.
                await self._dead_letter(entry, self._max_attempts, "interrupted (process stopped)")
                return
            if "body" not in entry.fields:
                # Trimmed from the stream (MAXLEN) before it could be delivered.
                log.warning("webhooks.event_trimmed", receiver=self.receiver, entry=entry.stream_id)
                await self._redis.xack(EVENTS_STREAM_KEY, self.group, entry.stream_id)
                return
            failure = await self._post(entry.fields)
            await self._settle(entry, failure)
        except (redis_errors.RedisError, OSError, TimeoutError) as error:
            # Unsettled: the entry stays pending and is claimed again after claim_idle.
            log.warning(
                "webhooks.settle_failed", receiver=self.receiver, entry=entry.stream_id,
                reason=type(error).__name__,
            )  # fmt: skip

    async def _post(self, fields: dict[str, str]) -> str | None:
        """None when the receiver answered 2xx, else why not (log-safe)."""
        body = fields["body"].encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_HEADER: fields.get("type", ""),
            DELIVERY_HEADER: fields.get("id", ""),
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._secret, body, timestamp),
        }
        try:
            async with asyncio.timeout(self._timing.post_timeout):
                response = await self._http.post(self._url, content=body, headers=headers)
        except TimeoutError:
            return "timeout"
        except httpx.HTTPError as error:
            return type(error).__name__
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    async def _settle(self, entry: _Entry, failure: str | None) -> None:
        if failure is None:
            await self._redis.xack(EVENTS_STREAM_KEY, self.group, entry.stream_id)
            log.debug("webhooks.delivered", receiver=self.receiver, attempt=entry.attempt)
            return
        if entry.attempt >= self._max_attempts:
            await self._dead_letter(entry, entry.attempt, failure)
            return
        backoff = self._timing.backoff(entry.attempt)
        # Claimable (idle >= claim_idle) once `backoff` has passed; JUSTID counts no attempt.
        claimed = await self._redis.xclaim(
            EVENTS_STREAM_KEY, self.group, self._consumer, 0, [entry.stream_id],
            idle=_ms(self._timing.claim_idle - backoff), justid=True,
        )  # fmt: skip
        if not claimed:
            # Trimmed from the stream while this attempt was in flight: Redis 7 has just dropped
            # it from the pending list, so no later claim will name it.
            log.warning("webhooks.event_trimmed", receiver=self.receiver, entry=entry.stream_id)
            return
        log.warning(
            "webhooks.attempt_failed", receiver=self.receiver, event_id=entry.fields.get("id"),
            attempt=entry.attempt, reason=failure, retry_in=backoff,
        )  # fmt: skip

    async def _dead_letter(self, entry: _Entry, attempts: int, failure: str) -> None:
        record = {
            "eventId": entry.fields.get("id", ""),
            "type": entry.fields.get("type", ""),
            "receiver": self.receiver,
            "attempts": str(attempts),
            "lastError": failure,
            "body": entry.fields.get("body", ""),
        }
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(DEAD_LETTER_STREAM_KEY, record, maxlen=DEAD_LETTER_MAX_LENGTH)  # type: ignore[arg-type]
            pipe.xack(EVENTS_STREAM_KEY, self.group, entry.stream_id)
            await pipe.execute()
        log.error(
            "webhooks.dead_lettered", receiver=self.receiver, event_id=record["eventId"],
            attempts=attempts, reason=failure,
        )  # fmt: skip

    async def _redis_failed(self, error: BaseException) -> None:
        if not self._is_redis_failing:
            self._is_redis_failing = True
            log.warning(
                "webhooks.redis_unavailable", receiver=self.receiver, reason=type(error).__name__
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), self._timing.poll)

    async def _stop_attempts(self) -> None:
        """Let attempts in flight end (their entries are claimed again if cut short)."""
        if not self._in_flight:
            return
        _done, cut = await asyncio.wait(set(self._in_flight), timeout=self._timing.stop_wait)
        for task in cut:
            task.cancel()
        await asyncio.gather(*cut, return_exceptions=True)


class Webhooks:
    """Every receiver's dispatcher and the expiry listener of one replica, as background tasks."""

    def __init__(
        self,
        redis: RedisClient,
        events: EventPublisher,
        urls: Sequence[str],
        secret: str,
        *,
        max_attempts: int,
        timing: DeliveryTiming | None = None,
        consumer: str | None = None,
        listens_for_expiry: bool = True,
    ) -> None:
        self._http = httpx.AsyncClient(follow_redirects=False)
        name = consumer or consumer_name()
        self.dispatchers = [
            ReceiverDispatcher(
                redis,
                self._http,
                url,
                secret,
                max_attempts=max_attempts,
                consumer=name,
                timing=timing,
            )
            for url in urls
        ]
        self.expiry = SessionExpiryListener(redis, events) if listens_for_expiry else None
        self._stop_wait = (timing or DeliveryTiming()).stop_wait
        self._poll = max((timing or DeliveryTiming()).poll, 1.0)  # the expiry listener's read
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_settings(
        cls, redis: RedisClient, events: EventPublisher, settings: Settings
    ) -> Webhooks | None:
        """None when WEBHOOK_URLS is empty: the feature is off."""
        if not settings.webhook_urls or settings.webhook_secret is None:
            return None
        return cls(
            redis,
            events,
            settings.webhook_urls,
            settings.webhook_secret.get_secret_value(),
            max_attempts=settings.webhook_max_attempts,
        )

    @property
    def receivers(self) -> list[str]:
        return [dispatcher.receiver for dispatcher in self.dispatchers]

    def start(self) -> None:
        self._tasks = [asyncio.create_task(d.run()) for d in self.dispatchers]
        if self.expiry is not None:
            self._tasks.append(asyncio.create_task(self.expiry.run()))
        log.info("webhooks.started", receivers=self.receivers)

    async def stop(self) -> None:
        for dispatcher in self.dispatchers:
            dispatcher.stopping.set()
        if self.expiry is not None:
            self.expiry.stopping.set()
        if self._tasks:
            # Each task ends after its current read (at most `poll`); one that does not is
            # cancelled and not waited for: shutdown must not hang on Redis.
            timeout = self._poll + self._stop_wait + STOP_GRACE_SECONDS
            _done, stuck = await asyncio.wait(self._tasks, timeout=timeout)
            for task in stuck:
                task.cancel()
            if stuck:
                log.warning("webhooks.stop_incomplete", tasks=len(stuck))
        self._tasks = []
        await self._http.aclose()


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _stream_messages(reply: Any) -> list[tuple[str, list[tuple[str, dict[str, str] | None]]]]:
    """XREADGROUP's reply (RESP2, as our clients speak) as (stream, messages) pairs."""
    return [(str(stream), list(messages)) for stream, messages in reply or []]
