"""The dashboard's figures, read back from the buckets every replica writes (analytics.py).

One snapshot reads the last 60 minute buckets and the last 24 hour buckets, their
HyperLogLogs and Redis's memory: a fixed number of keys in one pipelined round trip (plus
INFO and the active-session count), never a scan, whatever the traffic.

Percentiles come from the merged histogram buckets (LATENCY_BUCKETS): the rank is found in the
bucket that holds it and interpolated linearly inside it, as Prometheus's histogram_quantile
does. The answer is exact only when observations spread evenly inside their bucket; it is
always within that bucket (e.g. between 2 and 3 s), and past the last bound (120 s) it is
that bound.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster

from core.errors import StoreUnavailable
from core.observability.analytics import (
    BUCKET_LABELS,
    HOUR_SECONDS,
    INF_LABEL,
    MINUTE_SECONDS,
    SEPARATOR,
    hour_key,
    minute_key,
    users_key,
)
from core.sessions.scripts import store_error
from core.storage.connection import RedisClient

HOUR_POINTS: Final = 60
DAY_POINTS: Final = 24
READ_DEADLINE_SECONDS: Final = 5.0
BOUNDS: Final = {
    label: (math.inf if label == INF_LABEL else float(label)) for label in BUCKET_LABELS
}


@dataclass(frozen=True, slots=True)
class Point:
    """One bucket of a chart: what every replica counted in that minute (or hour)."""

    start: int  # epoch seconds
    turns_by_front: dict[str, int]
    active_users: int
    errors: int
    refusals: int
    tokens: int
    cost_usd: float
    latency_p50: float | None
    latency_p95: float | None
    ttft_p50: float | None
    ttft_p95: float | None


@dataclass(frozen=True, slots=True)
class ModelFigures:
    model: str
    calls: int
    latency_p50: float | None
    latency_p95: float | None
    ttft_p50: float | None
    ttft_p95: float | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class WindowFigures:
    """The last hour (60 minute points) or day (24 hour points), totals over all of it."""

    bucket_seconds: int
    points: list[Point]
    active_users: int
    turns_by_front: dict[str, int]
    turns_by_outcome: dict[str, int]
    errors_by_kind: dict[str, int]
    refusals_by_source: dict[str, int]
    models: list[ModelFigures]


@dataclass(frozen=True, slots=True)
class RedisMemory:
    used_bytes: int
    max_bytes: int  # 0: no maxmemory
    nodes: int  # how many servers the figures add up (a Cluster's primaries)


@dataclass(frozen=True, slots=True)
class Snapshot:
    generated_at: float  # epoch seconds
    hour: WindowFigures
    day: WindowFigures
    redis_memory: RedisMemory


class Bucket:
    """The merged hash fields of one or more buckets, read as figures."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.costs: defaultdict[str, float] = defaultdict(float)

    def add(self, fields: Mapping[str, str]) -> None:
        for name, value in fields.items():
            if name.startswith("cost" + SEPARATOR):
                self.costs[name] += float(value)
            else:
                self.counts[name] += int(value)

    def by(self, kind: str) -> dict[str, int]:
        """`turns|http|completed` → {"http|completed": n} for kind `turns`."""
        prefix = kind + SEPARATOR
        return {
            name.removeprefix(prefix): count
            for name, count in sorted(self.counts.items())
            if name.startswith(prefix)
        }

    def histogram(self, kind: str, model: str | None = None) -> dict[str, int]:
        """Counts by bucket label, for one model or all of them."""
        merged: Counter[str] = Counter()
        for name, count in self.by(kind).items():
            label, _, of_model = name.partition(SEPARATOR)
            if model is None or of_model == model:
                merged[label] += count
        return dict(merged)

    def models(self) -> list[str]:
        """Every model that was called or reported usage (`latency|<le>|<model>` and so on)."""
        names = {name.partition(SEPARATOR)[2] for name in self.by("latency")}
        names |= {name.partition(SEPARATOR)[2] for name in self.by("tokens")}
        names |= {name.partition(SEPARATOR)[2] for name in self.costs}
        return sorted(names - {""})

    def model_figures(self, model: str) -> ModelFigures:
        latency, ttft = self.histogram("latency", model), self.histogram("ttft", model)
        return ModelFigures(
            model=model,
            calls=sum(latency.values()),
            latency_p50=quantile(latency, 0.5),
            latency_p95=quantile(latency, 0.95),
            ttft_p50=quantile(ttft, 0.5),
            ttft_p95=quantile(ttft, 0.95),
            prompt_tokens=self.counts[f"tokens|prompt|{model}"],
            completion_tokens=self.counts[f"tokens|completion|{model}"],
            cost_usd=round(self.costs[f"cost|{model}"], 9),
        )

    def point(self, start: int, active_users: int) -> Point:
        latency, ttft = self.histogram("latency"), self.histogram("ttft")
        tokens = self.by("tokens")
        return Point(
            start=start,
            turns_by_front=_sum_by_first_part(self.by("turns")),
            active_users=active_users,
            errors=sum(self.by("errors").values()),
            refusals=sum(self.by("refusals").values()),
            tokens=sum(tokens.values()),
            cost_usd=round(sum(self.costs.values()), 9),
            latency_p50=quantile(latency, 0.5),
            latency_p95=quantile(latency, 0.95),
            ttft_p50=quantile(ttft, 0.5),
            ttft_p95=quantile(ttft, 0.95),
        )


def quantile(buckets: Mapping[str, int], q: float) -> float | None:
    """The q-quantile of histogram counts by bucket label, interpolated within its bucket.

    None without observations. Past the last finite bound, that bound (a lower limit).
    """
    total = sum(buckets.values())
    if total <= 0:
        return None
    rank = q * total
    cumulative, lower = 0, 0.0
    for label in BUCKET_LABELS:
        count = buckets.get(label, 0)
        upper = BOUNDS[label]
        if count > 0 and cumulative + count >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - cumulative) / count
        cumulative += count
        if not math.isinf(upper):
            lower = upper
    return lower


class AnalyticsReader:
    """Reads the figures of the last hour and day; `clock` is epoch seconds."""

    def __init__(self, redis: RedisClient, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._clock = clock

    async def snapshot(self) -> Snapshot:
        """StoreUnavailable (or another StoreError) when Redis does not answer."""
        now = self._clock()
        try:
            async with asyncio.timeout(READ_DEADLINE_SECONDS):
                hour, day = await self._windows(now)
                memory = await self._memory()
        except TimeoutError:
            raise StoreUnavailable() from None
        except (redis_errors.RedisError, redis_errors.RedisClusterException) as error:
            raise store_error(error) from error
        return Snapshot(generated_at=now, hour=hour, day=day, redis_memory=memory)

    async def _windows(self, now: float) -> tuple[WindowFigures, WindowFigures]:
        minute, hour = int(now // MINUTE_SECONDS), int(now // HOUR_SECONDS)
        minutes = [minute_key(m) for m in range(minute - HOUR_POINTS + 1, minute + 1)]
        hours = [hour_key(h) for h in range(hour - DAY_POINTS + 1, hour + 1)]
        pipe = self._redis.pipeline(transaction=False)
        # PFCOUNT through execute_command: redis-py's Cluster pipeline refuses `pfcount()`
        # outright, since its keys could span slots; ours share one hash tag, so one slot.
        for key in (*minutes, *hours):
            pipe.hgetall(key)
            pipe.execute_command("PFCOUNT", users_key(key))
        pipe.execute_command("PFCOUNT", *(users_key(key) for key in minutes))
        pipe.execute_command("PFCOUNT", *(users_key(key) for key in hours))
        replies = await pipe.execute()
        per_key, users_in_hour, users_in_day = replies[:-2], replies[-2], replies[-1]
        buckets = [(_text(per_key[i]), int(per_key[i + 1])) for i in range(0, len(per_key), 2)]
        first_minute = (minute - HOUR_POINTS + 1) * MINUTE_SECONDS
        first_hour = (hour - DAY_POINTS + 1) * HOUR_SECONDS
        return (
            _window(buckets[:HOUR_POINTS], first_minute, MINUTE_SECONDS, int(users_in_hour)),
            _window(buckets[HOUR_POINTS:], first_hour, HOUR_SECONDS, int(users_in_day)),
        )

    async def _memory(self) -> RedisMemory:
        """INFO memory of the server; on a Cluster, the sum over its primaries."""
        if isinstance(self._redis, RedisCluster):
            replies: Any = await self._redis.info("memory", target_nodes=RedisCluster.PRIMARIES)
        else:
            replies = await self._redis.info("memory")
        infos = list(replies.values()) if _is_per_node(replies) else [replies]
        return RedisMemory(
            used_bytes=sum(int(info.get("used_memory", 0)) for info in infos),
            max_bytes=sum(int(info.get("maxmemory", 0)) for info in infos),
            nodes=len(infos),
        )


def _window(
    buckets: list[tuple[dict[str, str], int]], first: int, step: int, active_users: int
) -> WindowFigures:
    total = Bucket()
    points = []
    for index, (fields, users) in enumerate(buckets):
        one = Bucket()
        one.add(fields)
        total.add(fields)
        points.append(one.point(first + index * step, users))
    return WindowFigures(
        bucket_seconds=step,
        points=points,
        active_users=active_users,
        turns_by_front=_sum_by_first_part(total.by("turns")),
        turns_by_outcome=_sum_by_last_part(total.by("turns")),
        errors_by_kind=total.by("errors"),
        refusals_by_source=total.by("refusals"),
        models=[total.model_figures(model) for model in total.models()],
    )


def _sum_by_first_part(counts: Mapping[str, int]) -> dict[str, int]:
    return _summed((name.partition(SEPARATOR)[0], count) for name, count in counts.items())


def _sum_by_last_part(counts: Mapping[str, int]) -> dict[str, int]:
    return _summed((name.rpartition(SEPARATOR)[2], count) for name, count in counts.items())


def _summed(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    summed: Counter[str] = Counter()
    for name, count in pairs:
        summed[name] += count
    return dict(sorted(summed.items()))


def _text(fields: Mapping[Any, Any]) -> dict[str, str]:
    """A hash as text, whether the client decodes replies or not."""
    return {_decoded(name): _decoded(value) for name, value in fields.items()}


def _decoded(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _is_per_node(replies: Any) -> bool:
    """A Cluster answers INFO sent to several nodes with {node name: that node's INFO}."""
    return (
        isinstance(replies, dict)
        and bool(replies)
        and all(isinstance(value, dict) for value in replies.values())
    )
