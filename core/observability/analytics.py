"""The dashboard's counters: tallied in memory on the chat path, flushed to Redis in the background.

Every replica counts what its `Metrics` sees into `Tallies` (dictionaries in memory, keyed by
the minute of the event), and an `AnalyticsFlusher` task writes them every
FLUSH_INTERVAL_SECONDS with one pipelined MULTI/EXEC round trip: HINCRBY, HINCRBYFLOAT, PFADD
and EXPIRE on a minute bucket and on an hour bucket. A turn itself costs no Redis call.
core.observability.analytics_report reads the buckets back and merges what every replica wrote.

Keys (one Cluster slot, the `{chatbridge-stats}` tag, so the pipeline goes to one node):

    stats:{chatbridge-stats}:m:<epoch-minute>          hash, expires MINUTE_TTL_SECONDS
    stats:{chatbridge-stats}:m:<epoch-minute>:users    HyperLogLog of user ids that took a turn
    stats:{chatbridge-stats}:h:<epoch-hour>            hash, expires HOUR_TTL_SECONDS
    stats:{chatbridge-stats}:h:<epoch-hour>:users      HyperLogLog, same

Hash fields, `|`-separated with the model id last (model ids may contain `:`):

    turns|<front>|<outcome>     errors|<kind>     refusals|<source>
    latency|<le>|<model>        ttft|<le>|<model>   observations in the LATENCY_BUCKETS bucket
                                                    whose upper bound is <le> (not cumulative)
    tokens|prompt|<model>       tokens|completion|<model>       cost|<model> (a float)

When a flush fails (Redis down or full), what it carried goes back into the tallies and the
next flush writes it: nothing is lost unless Redis stays away longer than a minute bucket lives.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

import structlog
from redis import exceptions as redis_errors

from core.observability.metrics import LATENCY_BUCKETS
from core.storage.connection import RedisClient

log = structlog.get_logger(__name__)

KEY_PREFIX: Final = "stats:{chatbridge-stats}:"
USERS_SUFFIX: Final = ":users"
MINUTE_SECONDS: Final = 60
HOUR_SECONDS: Final = 3600
# A day of minutes plus an hour of slack, so the 60-minute view never meets a hole at its start.
MINUTE_TTL_SECONDS: Final = 25 * HOUR_SECONDS
# A week of hours plus a day, for a day view (and a week of history in redis-cli).
HOUR_TTL_SECONDS: Final = 8 * 24 * HOUR_SECONDS
FLUSH_INTERVAL_SECONDS: Final = 5.0
# A flush to a Redis that hangs gives up (keeping its counts) rather than delay a shutdown.
FLUSH_DEADLINE_SECONDS: Final = 3.0
SEPARATOR: Final = "|"
INF_LABEL: Final = "+Inf"
BUCKET_LABELS: Final = (*(f"{bound:g}" for bound in LATENCY_BUCKETS), INF_LABEL)
# What a failed flush may raise and the next one may get past; anything else is a bug.
FLUSH_ERRORS: Final = (redis_errors.RedisError, redis_errors.RedisClusterException, OSError)


def minute_key(minute: int) -> str:
    return f"{KEY_PREFIX}m:{minute}"


def hour_key(hour: int) -> str:
    return f"{KEY_PREFIX}h:{hour}"


def users_key(bucket_key: str) -> str:
    return bucket_key + USERS_SUFFIX


def bucket_label(seconds: float) -> str:
    """The `le` of the LATENCY_BUCKETS bucket an observation falls in, as Prometheus counts."""
    return BUCKET_LABELS[bisect.bisect_left(LATENCY_BUCKETS, seconds)]


def field_name(*parts: str) -> str:
    return SEPARATOR.join(parts)


@dataclass
class MinuteTally:
    """What one process counted in one minute and has not written yet."""

    counts: Counter[str] = field(default_factory=Counter)
    costs: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    users: set[str] = field(default_factory=set)

    def merge(self, other: MinuteTally) -> None:
        self.counts.update(other.counts)
        for name, cost in other.costs.items():
            self.costs[name] += cost
        self.users |= other.users


class Tallies:
    """This process's counts since the last flush, by epoch minute (a metrics `Tally`).

    Only dictionary updates: cheap enough for every turn, and no await, so a flush that takes
    the tallies never races an increment on the one event loop.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._minutes: dict[int, MinuteTally] = {}

    def turn(self, front: str, outcome: str, user_id: str | None) -> None:
        tally = self._now()
        tally.counts[field_name("turns", front, outcome)] += 1
        if user_id:
            tally.users.add(user_id)

    def error(self, kind: str) -> None:
        self._now().counts[field_name("errors", kind)] += 1

    def refusal(self, source: str) -> None:
        self._now().counts[field_name("refusals", source)] += 1

    def model_call(self, model: str, seconds: float, first_token_seconds: float | None) -> None:
        counts = self._now().counts
        counts[field_name("latency", bucket_label(seconds), model)] += 1
        if first_token_seconds is not None:
            counts[field_name("ttft", bucket_label(first_token_seconds), model)] += 1

    def usage(
        self, model: str, prompt_tokens: int, completion_tokens: int, cost: float | None
    ) -> None:
        tally = self._now()
        tally.counts[field_name("tokens", "prompt", model)] += prompt_tokens
        tally.counts[field_name("tokens", "completion", model)] += completion_tokens
        if cost is not None and cost > 0:
            tally.costs[field_name("cost", model)] += cost

    def take(self) -> dict[int, MinuteTally]:
        """Everything counted so far, leaving the tallies empty."""
        taken, self._minutes = self._minutes, {}
        return taken

    def give_back(self, minutes: dict[int, MinuteTally]) -> None:
        """Counts a flush could not write, merged with what was counted meanwhile."""
        for minute, tally in minutes.items():
            self._minutes.setdefault(minute, MinuteTally()).merge(tally)

    def _now(self) -> MinuteTally:
        minute = int(self._clock() // MINUTE_SECONDS)
        tally = self._minutes.get(minute)
        if tally is None:
            tally = self._minutes[minute] = MinuteTally()
        return tally


class AnalyticsFlusher:
    """Writes a process's tallies to Redis every `interval` seconds, and once more on stop."""

    def __init__(
        self,
        redis: RedisClient,
        tallies: Tallies,
        *,
        interval: float = FLUSH_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self.tallies = tallies
        self._interval = interval
        self._clock = clock
        self._stopping = asyncio.Event()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Flush in the background while the block runs; the last counts are flushed on exit."""
        self._stopping.clear()
        task = asyncio.create_task(self._flush_every_interval(), name="analytics-flusher")
        try:
            yield
        finally:
            # Stopped by an event, not cancelled: a flush in flight completes or gives back.
            self._stopping.set()
            await task
            await self.flush()

    async def flush(self) -> bool:
        """Write everything tallied; False (counts kept for the next flush) if Redis failed."""
        minutes = self._without_expired(self.tallies.take())
        if not minutes:
            return True
        try:
            async with asyncio.timeout(FLUSH_DEADLINE_SECONDS):
                await self._write(minutes)
        except FLUSH_ERRORS as error:  # TimeoutError is an OSError
            self.tallies.give_back(minutes)
            log.warning(
                "analytics.flush_failed",
                reason=str(error) or type(error).__name__,
                minutes_kept=len(minutes),
            )
            return False
        except BaseException:
            self.tallies.give_back(minutes)  # cancelled or a bug: keep the counts all the same
            raise
        return True

    async def _flush_every_interval(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            if self._stopping.is_set():
                return  # running() flushes once more itself
            try:
                await self.flush()
            except Exception:
                # A bug, not Redis: say so loudly but keep the dashboard fed.
                log.exception("analytics.flush_crashed")

    async def _write(self, minutes: dict[int, MinuteTally]) -> None:
        # MULTI/EXEC: a flush lands whole or not at all, so giving back never counts twice
        # (unless the connection drops after EXEC was sent and before its reply).
        pipe = self._redis.pipeline(transaction=True)
        for minute, tally in minutes.items():
            buckets = (
                (minute_key(minute), MINUTE_TTL_SECONDS),
                (hour_key(minute * MINUTE_SECONDS // HOUR_SECONDS), HOUR_TTL_SECONDS),
            )
            for key, ttl in buckets:
                for name, count in tally.counts.items():
                    pipe.hincrby(key, name, count)
                for name, cost in tally.costs.items():
                    pipe.hincrbyfloat(key, name, cost)
                pipe.expire(key, ttl)
                if tally.users:
                    pipe.pfadd(users_key(key), *tally.users)
                    pipe.expire(users_key(key), ttl)
        await pipe.execute()

    def _without_expired(self, minutes: dict[int, MinuteTally]) -> dict[int, MinuteTally]:
        """Drop minutes whose bucket would already have expired: bounds memory in an outage."""
        oldest = int((self._clock() - MINUTE_TTL_SECONDS) // MINUTE_SECONDS)
        dropped = [minute for minute in minutes if minute < oldest]
        if dropped:
            log.warning("analytics.dropped_old_counts", minutes=len(dropped))
        return _only(minutes, (m for m in minutes if m >= oldest))


def _only(minutes: dict[int, MinuteTally], kept: Iterable[int]) -> dict[int, MinuteTally]:
    return {minute: minutes[minute] for minute in kept}
