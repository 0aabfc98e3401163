"""The JSON of GET /api/dashboard (camelCase on the wire, like the rest of the API).

Built from core.observability.analytics_report's snapshot; the OpenAPI document
(bots/http/openapi.py) is generated from these models too.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

from pydantic import Field

from bots.http.schema import ApiModel
from core.conversation import iso_utc
from core.observability.analytics_report import (
    ModelFigures,
    Point,
    RedisMemory,
    Snapshot,
    WindowFigures,
)

SECONDS = "seconds, interpolated within a LATENCY_BUCKETS bucket; null without calls"


class LatenciesOut(ApiModel):
    """Model latency and time to first token, where the figures give them."""

    latency_p50: float | None = Field(description=SECONDS)
    latency_p95: float | None = Field(description=SECONDS)
    ttft_p50: float | None = Field(description="time to first token, " + SECONDS)
    ttft_p95: float | None = Field(description="time to first token, " + SECONDS)


class PointOut(LatenciesOut):
    start: str = Field(description="ISO 8601, UTC: the minute (or hour) this point covers")
    turns_by_front: dict[str, int]
    active_users: int = Field(description="distinct users with a turn (HyperLogLog, ±1%)")
    errors: int
    refusals: int
    tokens: int
    cost_usd: float

    @classmethod
    def of(cls, point: Point) -> PointOut:
        return cls(**asdict(point) | {"start": _iso(point.start)})


class ModelOut(LatenciesOut):
    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float

    @classmethod
    def of(cls, figures: ModelFigures) -> ModelOut:
        return cls(**asdict(figures))


class WindowOut(ApiModel):
    bucket_seconds: int = Field(description="60 for the hour's points, 3600 for the day's")
    points: list[PointOut] = Field(description="oldest first; the last one is still filling")
    active_users: int
    turns: int
    turns_by_front: dict[str, int]
    turns_by_outcome: dict[str, int] = Field(description="completed, abandoned or an error code")
    errors: int
    errors_by_kind: dict[str, int]
    refusals: int
    refusals_by_source: dict[str, int] = Field(description="model, user or budget")
    models: list[ModelOut]

    @classmethod
    def of(cls, window: WindowFigures) -> WindowOut:
        return cls(
            bucket_seconds=window.bucket_seconds,
            points=[PointOut.of(point) for point in window.points],
            active_users=window.active_users,
            turns=sum(window.turns_by_front.values()),
            turns_by_front=window.turns_by_front,
            turns_by_outcome=window.turns_by_outcome,
            errors=sum(window.errors_by_kind.values()),
            errors_by_kind=window.errors_by_kind,
            refusals=sum(window.refusals_by_source.values()),
            refusals_by_source=window.refusals_by_source,
            models=[ModelOut.of(model) for model in window.models],
        )


class RedisMemoryOut(ApiModel):
    used_bytes: int
    max_bytes: int = Field(description="maxmemory; 0 when unlimited")
    nodes: int = Field(description="servers added up: 1, or a Cluster's primaries")

    @classmethod
    def of(cls, memory: RedisMemory) -> RedisMemoryOut:
        return cls(used_bytes=memory.used_bytes, max_bytes=memory.max_bytes, nodes=memory.nodes)


class ActiveSessionsOut(ApiModel):
    active: int = Field(description="sessions with activity within the window (about ±1%)")
    window_seconds: int


class DashboardOut(ApiModel):
    generated_at: str = Field(description="ISO 8601, UTC")
    sessions: ActiveSessionsOut
    hour: WindowOut = Field(description="the last 60 minutes, one point a minute")
    day: WindowOut = Field(description="the last 24 hours, one point an hour")
    redis_memory: RedisMemoryOut

    @classmethod
    def of(cls, snapshot: Snapshot, sessions: ActiveSessionsOut) -> DashboardOut:
        return cls(
            generated_at=_iso(snapshot.generated_at),
            sessions=sessions,
            hour=WindowOut.of(snapshot.hour),
            day=WindowOut.of(snapshot.day),
            redis_memory=RedisMemoryOut.of(snapshot.redis_memory),
        )


def _iso(epoch_seconds: float) -> str:
    return iso_utc(datetime.fromtimestamp(epoch_seconds, UTC))
