"""The dashboard's counters: tallied by Metrics, flushed to Redis, read back as figures.

Turns go through the real ChatService and OpenRouter client against the fake OpenRouter, on
the test's redis-server; time is a FakeClock in epoch seconds, so minutes and hours turn over
when a test says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from core.chat import ChatService, TurnSettings
from core.errors import ChatbridgeError
from core.llm.openrouter import OpenRouterClient
from core.observability.analytics import (
    HOUR_SECONDS,
    HOUR_TTL_SECONDS,
    MINUTE_SECONDS,
    MINUTE_TTL_SECONDS,
    AnalyticsFlusher,
    Tallies,
    hour_key,
    minute_key,
    users_key,
)
from core.observability.analytics_report import AnalyticsReader, Snapshot, quantile
from core.observability.metrics import Metrics
from core.sessions.limits import SessionLimits
from core.sessions.store import SessionStore
from core.storage.connection import RedisClient
from tests.fakes.clock import FakeClock
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.redis_process import RedisProcess
from tests.waiting import until

MODEL = "test/model"
# 2026-11-26 12:30:00 UTC: mid-hour, so a test moves across minutes without leaving the hour.
NOON_THIRTY = 1_795_696_200
assert NOON_THIRTY % HOUR_SECONDS == 30 * MINUTE_SECONDS


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=NOON_THIRTY + 5)


@pytest.fixture
def tallies(clock: FakeClock) -> Tallies:
    return Tallies(clock)


@pytest.fixture
def metrics(tallies: Tallies) -> Metrics:
    return Metrics(models=(MODEL,), tally=tallies)


@pytest.fixture
def flusher(redis_client: RedisClient, tallies: Tallies, clock: FakeClock) -> AnalyticsFlusher:
    return AnalyticsFlusher(redis_client, tallies, clock=clock)


@pytest.fixture
def reader(redis_client: RedisClient, clock: FakeClock) -> AnalyticsReader:
    return AnalyticsReader(redis_client, clock)


@pytest.fixture
def metered_chat(
    redis_client: RedisClient, model_client: OpenRouterClient, metrics: Metrics
) -> ChatService:
    """Two turns per user per minute, so a third is refused."""
    limits = SessionLimits(rate_limit_messages=2, rate_limit_window_seconds=60)
    store = SessionStore(redis_client, limits, metrics)
    return ChatService(store, model_client, TurnSettings("Be brief.", MODEL), metrics)


async def turn(chat: ChatService, user: str, text: str = "hello there") -> int:
    """One turn to its end; the tokens its reply reported."""
    async with chat.turn(text, user_id=user, front=user.partition(":")[0]) as running:
        async for _ in running.deltas():
            pass
    reply, _ = running.outcome()
    assert reply.usage is not None
    return reply.usage.total_tokens


async def failing_turn(chat: ChatService, user: str) -> str:
    """A turn that ends in a core error; its code."""
    with pytest.raises(ChatbridgeError) as caught:
        await turn(chat, user)
    return caught.value.code


def last_point_turns(snapshot: Snapshot) -> dict[str, int]:
    return snapshot.hour.points[-1].turns_by_front


# --- tallies, flush, snapshot -------------------------------------------------------------------


async def test_turns_through_the_chat_service_are_read_back_as_they_happened(
    metered_chat: ChatService,
    fake_openrouter: FakeOpenRouter,
    metrics: Metrics,
    flusher: AnalyticsFlusher,
    reader: AnalyticsReader,
) -> None:
    chat = metered_chat
    tokens = await turn(chat, "telegram:1") + await turn(chat, "telegram:2")
    tokens += await turn(chat, "cli:ana")
    fake_openrouter.reject(400)
    assert await failing_turn(chat, "cli:ana") == "model_rejected"
    assert await failing_turn(chat, "cli:ana") == "rate_limited"  # the third in the window

    assert await flusher.flush()
    snapshot = await reader.snapshot()

    for window in (snapshot.hour, snapshot.day):
        assert window.turns_by_front == {"cli": 3, "telegram": 2}
        assert window.turns_by_outcome == {"completed": 3, "model_rejected": 1, "rate_limited": 1}
        assert window.errors_by_kind == {"model_rejected": 1, "rate_limited": 1}
        assert window.refusals_by_source == {"user": 1}
        assert window.active_users == 3
        (model,) = window.models
        assert model.model == MODEL
        assert model.calls == 4  # three answers and the rejected request
        assert model.prompt_tokens + model.completion_tokens == tokens
        assert model.cost_usd == pytest.approx(prometheus(metrics, "chatbridge_model_cost_usd"))
        assert model.latency_p50 is not None
        assert model.latency_p95 is not None
        assert 0 < model.latency_p50 <= model.latency_p95
        assert model.ttft_p50 is not None
        assert model.ttft_p50 <= model.latency_p95
    assert last_point_turns(snapshot) == {"cli": 3, "telegram": 2}
    assert snapshot.hour.points[-1].active_users == 3
    assert sum(point.errors for point in snapshot.hour.points) == 2
    assert [p.turns_by_front for p in snapshot.hour.points[:-1]] == [{}] * 59
    assert snapshot.day.points[-1].tokens == tokens
    assert snapshot.redis_memory.used_bytes > 0
    assert snapshot.redis_memory.nodes == 1


def prometheus(metrics: Metrics, name: str) -> float:
    """The sum of a Prometheus counter over its labels, to compare with the dashboard's."""
    return sum(
        sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name + "_total"
    )


async def test_nothing_is_written_without_a_flush_and_a_flush_empties_the_tallies(
    redis_client: RedisClient, metrics: Metrics, flusher: AnalyticsFlusher, tallies: Tallies
) -> None:
    metrics.turn_completed("telegram", "telegram:1")
    assert [key async for key in redis_client.scan_iter(match="stats:*")] == []

    assert await flusher.flush()
    assert tallies.take() == {}
    assert await flusher.flush()  # nothing left: writes nothing more
    assert await redis_client.hget(minute_key(NOON_THIRTY // 60), "turns|telegram|completed") == "1"


async def test_two_replicas_on_one_redis_add_up(
    redis_client: RedisClient, clock: FakeClock, reader: AnalyticsReader
) -> None:
    replicas = []
    for _ in range(2):
        tallies = Tallies(clock)
        replicas.append(
            (Metrics(tally=tallies), AnalyticsFlusher(redis_client, tallies, clock=clock))
        )
    first, second = replicas[0][0], replicas[1][0]
    first.turn_completed("telegram", "telegram:1")
    first.turn_completed("discord", "discord:7")
    second.turn_completed("telegram", "telegram:1")  # the same user through another replica
    second.turn_completed("http", "ana")
    first.observe_model_call(MODEL, 0.3, 0.1)
    second.observe_model_call(MODEL, 0.8, 0.2)

    for _, flusher in replicas:
        assert await flusher.flush()
    snapshot = await reader.snapshot()

    assert snapshot.hour.turns_by_front == {"discord": 1, "http": 1, "telegram": 2}
    assert snapshot.hour.active_users == 3
    assert snapshot.hour.models[0].calls == 2


async def test_every_bucket_key_expires_a_day_or_a_week_later(
    redis_client: RedisClient, metrics: Metrics, flusher: AnalyticsFlusher
) -> None:
    metrics.turn_completed("cli", "cli:ana")
    assert await flusher.flush()

    minute, hour = minute_key(NOON_THIRTY // 60), hour_key(NOON_THIRTY // 3600)
    for key in (minute, users_key(minute)):
        assert MINUTE_TTL_SECONDS - 5 <= await redis_client.ttl(key) <= MINUTE_TTL_SECONDS
    for key in (hour, users_key(hour)):
        assert HOUR_TTL_SECONDS - 5 <= await redis_client.ttl(key) <= HOUR_TTL_SECONDS
    assert sorted([key async for key in redis_client.scan_iter()]) == sorted(
        [minute, users_key(minute), hour, users_key(hour)]
    )


# --- percentiles ---------------------------------------------------------------------------------


async def test_percentiles_are_interpolated_within_the_bucket_that_holds_them(
    metrics: Metrics, flusher: AnalyticsFlusher, reader: AnalyticsReader
) -> None:
    # 40 in (0.25, 0.5], 40 in (0.5, 1], 20 in (3, 5]; time to first token: all in (0, 0.1].
    for seconds in [0.3] * 40 + [0.8] * 40 + [4.0] * 20:
        metrics.observe_model_call(MODEL, seconds, 0.05)
    assert await flusher.flush()

    (model,) = (await reader.snapshot()).hour.models

    assert model.calls == 100
    assert model.latency_p50 == pytest.approx(0.5 + 0.5 * (50 - 40) / 40)  # 0.625
    assert model.latency_p95 == pytest.approx(3 + 2 * (95 - 80) / 20)  # 4.5
    assert model.ttft_p50 == pytest.approx(0.1 * 50 / 100)
    assert model.ttft_p95 == pytest.approx(0.1 * 95 / 100)


def test_a_quantile_past_the_last_bound_is_that_bound_and_none_without_data() -> None:
    assert quantile({"+Inf": 3}, 0.5) == 120
    assert quantile({"120": 1, "+Inf": 1}, 0.95) == 120
    assert quantile({}, 0.5) is None
    # At a bucket's edge: the rank equal to the count below it lands at the bucket's top.
    assert quantile({"0.1": 1, "0.25": 1}, 0.5) == pytest.approx(0.1)
    assert quantile({"0.1": 1, "0.25": 1}, 0.51) == pytest.approx(0.1 + 0.15 * 0.02)


# --- minute and hour boundaries -------------------------------------------------------------------


async def test_events_either_side_of_a_minute_and_hour_boundary_land_in_their_own_buckets(
    metrics: Metrics, flusher: AnalyticsFlusher, reader: AnalyticsReader, clock: FakeClock
) -> None:
    boundary = NOON_THIRTY + 30 * MINUTE_SECONDS  # 13:00:00, a new minute and a new hour
    clock.now = boundary - 0.001
    metrics.turn_completed("cli", "cli:a")
    clock.now = boundary
    metrics.turn_completed("cli", "cli:b")
    metrics.turn_completed("cli", "cli:b")
    clock.now = boundary + 0.001
    metrics.turn_completed("cli", "cli:c")
    assert await flusher.flush()  # one flush carries both minutes

    snapshot = await reader.snapshot()

    assert [p.turns_by_front.get("cli", 0) for p in snapshot.hour.points[-2:]] == [1, 3]
    assert [p.active_users for p in snapshot.hour.points[-2:]] == [1, 2]
    assert [p.turns_by_front.get("cli", 0) for p in snapshot.day.points[-2:]] == [1, 3]
    assert snapshot.hour.points[-1].start == boundary
    assert snapshot.day.points[-1].start == boundary


async def test_the_hour_holds_the_last_sixty_minutes_and_the_day_the_last_24_hours(
    metrics: Metrics, flusher: AnalyticsFlusher, reader: AnalyticsReader, clock: FakeClock
) -> None:
    now = clock.now
    for minutes_ago in (60, 59, 0):
        clock.now = now - minutes_ago * MINUTE_SECONDS
        metrics.turn_completed("cli", f"cli:{minutes_ago}")
    for hours_ago in (24, 23):
        clock.now = now - hours_ago * HOUR_SECONDS
        metrics.turn_completed("http", f"h{hours_ago}")
    clock.now = now
    assert await flusher.flush()

    snapshot = await reader.snapshot()

    assert snapshot.hour.turns_by_front == {"cli": 2}  # 59 minutes ago and now
    assert snapshot.hour.active_users == 2
    assert len(snapshot.hour.points) == 60
    assert snapshot.day.turns_by_front == {"cli": 3, "http": 1}  # 24 hours ago is out
    assert len(snapshot.day.points) == 24


# --- Redis away -----------------------------------------------------------------------------------


@pytest.fixture
async def own_client(own_redis: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(own_redis.url, decode_responses=True, socket_timeout=1)
    yield client
    await client.aclose()


async def test_counts_a_failed_flush_carried_are_written_by_the_next_one_once(
    own_redis: RedisProcess, own_client: aioredis.Redis, clock: FakeClock
) -> None:
    tallies = Tallies(clock)
    metrics, flusher = Metrics(tally=tallies), AnalyticsFlusher(own_client, tallies, clock=clock)
    metrics.turn_completed("telegram", "telegram:1")
    own_redis.kill()

    with capture_logs() as logs:
        assert not await flusher.flush()
    metrics.turn_completed("telegram", "telegram:2")  # counted while Redis was away
    assert [log["event"] for log in logs] == ["analytics.flush_failed"]

    own_redis.start()
    assert await flusher.flush()
    snapshot = await AnalyticsReader(own_client, clock).snapshot()
    assert snapshot.hour.turns_by_front == {"telegram": 2}
    assert snapshot.hour.active_users == 2


async def test_the_background_flusher_outlives_an_outage_and_flushes_once_redis_is_back(
    own_redis: RedisProcess, own_client: aioredis.Redis, clock: FakeClock
) -> None:
    tallies = Tallies(clock)
    metrics = Metrics(tally=tallies)
    flusher = AnalyticsFlusher(own_client, tallies, interval=0.05, clock=clock)
    key = minute_key(int(clock.now // 60))
    own_redis.kill()

    with capture_logs() as logs:
        async with flusher.running():
            metrics.turn_completed("discord", "discord:1")
            await until(
                lambda: sum(log["event"] == "analytics.flush_failed" for log in logs) >= 2,
                what="two failed flushes, the task still running",
            )
            own_redis.start()
            metrics.turn_completed("discord", "discord:2")
            await until_written(own_client, key, "turns|discord|completed", "2")
            metrics.turn_completed("discord", "discord:3")  # left for the flush on exit

    assert await own_client.hget(key, "turns|discord|completed") == "3"
    assert not any(log["log_level"] in {"error", "critical"} for log in logs), logs


async def until_written(client: aioredis.Redis, key: str, field: str, value: str) -> None:
    seen: list[str | None] = [None]

    async def read() -> None:
        while seen[0] != value:
            try:
                seen[0] = await client.hget(key, field)
            except (OSError, aioredis.ConnectionError):
                seen[0] = None
            await asyncio.sleep(0.02)

    await asyncio.wait_for(read(), 10)
