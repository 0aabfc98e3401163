"""Prometheus metrics: what turns, commands, the model and Redis count, and GET /metrics.

Every test counts into a Metrics of its own (its own registry), through the real store, the
real OpenRouter client against the fake OpenRouter, and the real HTTP app over a socket.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from pydantic import SecretStr

from bots.http.app import build_app
from bots.runtime import Services, open_services
from core.chat import ChatService, TurnSettings
from core.commands import CommandHandler, Reply, TurnReply
from core.errors import ChatbridgeError, ModelRateLimited, StoreUnavailable
from core.llm.openrouter import OpenRouterClient, RetryPolicy
from core.observability.metrics import MAX_MODEL_LABELS, OTHER_MODEL, Metrics
from core.sessions.limits import SessionLimits
from core.sessions.store import SessionStore
from core.settings import Settings
from core.storage.connection import redis_from_settings
from tests.fakes.openrouter_server import FAKE_API_KEY, FakeOpenRouter
from tests.redis_process import RedisProcess

MODEL = "test/model"
USER = "telegram:42"
READ_TIMEOUT = 0.3  # seconds: a stalled model times out quickly
API_TOKEN = "service-token-for-metrics-tests"
JWT_SECRET = "a-jwt-secret-of-at-least-32-bytes-for-hs256"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def value(metrics: Metrics, name: str, **labels: str) -> float:
    """A sample's value; 0 for a series that does not exist (yet)."""
    return metrics.registry.get_sample_value(name, labels) or 0.0


def total(metrics: Metrics, name: str) -> float:
    """The sum of a counter over all its label values."""
    return sum(
        sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name
    )


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def fast_model(fake_openrouter: FakeOpenRouter) -> AsyncIterator[OpenRouterClient]:
    client = OpenRouterClient(
        api_key=SecretStr(FAKE_API_KEY),
        base_url=fake_openrouter.base_url,
        fallback_models=["backup/model"],
        read_timeout=READ_TIMEOUT,
        retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02),
    )
    yield client
    await client.aclose()


@pytest.fixture
def metered_chat(
    redis_client: aioredis.Redis, fast_model: OpenRouterClient, metrics: Metrics
) -> ChatService:
    store = SessionStore(redis_client, SessionLimits(), metrics)
    return ChatService(store, fast_model, TurnSettings("Be brief.", MODEL), metrics)


@pytest.fixture
def metered_commands(metered_chat: ChatService, metrics: Metrics) -> CommandHandler:
    return CommandHandler(metered_chat, metrics)


async def run_turn(chat: ChatService, text: str, front: str = "telegram") -> None:
    async with chat.turn(text, user_id=USER, front=front) as turn:
        async for _ in turn.deltas():
            pass


# --- turns ------------------------------------------------------------------------------------


async def test_a_completed_turn_counts_once_with_latency_first_token_and_usage(
    metered_chat: ChatService, metrics: Metrics
):
    async with metered_chat.turn("hello there", user_id=USER, front="telegram") as turn:
        _ = [delta async for delta in turn.deltas()]

    assert value(metrics, "chatbridge_turns_total", front="telegram", outcome="completed") == 1
    assert total(metrics, "chatbridge_turns_total") == 1
    assert total(metrics, "chatbridge_errors_total") == 0
    latency = value(metrics, "chatbridge_model_latency_seconds_count", model=MODEL)
    first_token = value(metrics, "chatbridge_model_time_to_first_token_seconds_count", model=MODEL)
    assert (latency, first_token) == (1, 1)
    assert (
        0
        < value(metrics, "chatbridge_model_time_to_first_token_seconds_sum", model=MODEL)
        <= value(metrics, "chatbridge_model_latency_seconds_sum", model=MODEL)
    )
    usage = turn.reply.usage if turn.reply else None
    assert usage is not None
    assert usage.cost is not None
    tokens = "chatbridge_model_tokens_total"
    assert value(metrics, tokens, model=MODEL, kind="prompt") == usage.prompt_tokens
    assert value(metrics, tokens, model=MODEL, kind="completion") == usage.completion_tokens
    assert value(metrics, "chatbridge_model_cost_usd_total", model=MODEL) == pytest.approx(
        usage.cost
    )


async def test_latency_and_usage_are_labelled_with_the_fallback_model_that_answered(
    metered_chat: ChatService, metrics: Metrics, fake_openrouter: FakeOpenRouter
):
    fake_openrouter.primary_fails()
    await run_turn(metered_chat, "hi")
    assert value(metrics, "chatbridge_model_latency_seconds_count", model="backup/model") == 1
    assert value(metrics, "chatbridge_model_latency_seconds_count", model=MODEL) == 0
    assert value(metrics, "chatbridge_model_tokens_total", model="backup/model", kind="prompt")


@dataclass(frozen=True)
class ModelFault:
    """A fault scripted on the fake OpenRouter, and the turn outcome it must count as."""

    arrange: Callable[[FakeOpenRouter], object]
    outcome: str
    sends_text_first: bool = False


MODEL_FAULTS = {
    "502 storm": ModelFault(lambda fake: fake.server_error(502, times=3), "model_unavailable"),
    "timeout": ModelFault(lambda fake: fake.slow_first_token(READ_TIMEOUT * 4), "model_timeout"),
    "cut stream": ModelFault(
        lambda fake: fake.cut_stream(after_deltas=2), "model_stream_broken", sends_text_first=True
    ),
}


@pytest.mark.parametrize("fault", MODEL_FAULTS.values(), ids=MODEL_FAULTS.keys())
async def test_a_failed_model_call_counts_its_error_as_the_turn_outcome(
    metered_chat: ChatService, metrics: Metrics, fake_openrouter: FakeOpenRouter, fault: ModelFault
):
    fault.arrange(fake_openrouter)
    with pytest.raises(ChatbridgeError) as raised:
        await run_turn(metered_chat, "are you there?", front="discord")
    outcome = fault.outcome
    assert raised.value.code == outcome
    assert value(metrics, "chatbridge_turns_total", front="discord", outcome=outcome) == 1
    assert total(metrics, "chatbridge_turns_total") == 1
    assert value(metrics, "chatbridge_errors_total", front="discord", kind=outcome) == 1
    # Failures are timed under the model that was asked; no usage is counted for them.
    assert value(metrics, "chatbridge_model_latency_seconds_count", model=MODEL) == 1
    first_token = value(metrics, "chatbridge_model_time_to_first_token_seconds_count", model=MODEL)
    assert first_token == (1 if fault.sends_text_first else 0)
    assert total(metrics, "chatbridge_model_tokens_total") == 0


async def test_a_model_rate_limit_that_reaches_the_caller_counts_a_model_refusal(
    metered_chat: ChatService, metrics: Metrics, fake_openrouter: FakeOpenRouter
):
    assert value(metrics, "chatbridge_rate_limit_refusals_total", source="model") == 0
    fake_openrouter.rate_limit(retry_after=120)  # beyond the wait cap: given up at once
    with pytest.raises(ModelRateLimited):
        await run_turn(metered_chat, "hello", front="cli")
    assert value(metrics, "chatbridge_rate_limit_refusals_total", source="model") == 1
    assert value(metrics, "chatbridge_turns_total", front="cli", outcome="model_rate_limited") == 1


async def test_an_abandoned_stream_counts_as_abandoned_not_as_an_error(
    metered_chat: ChatService, metrics: Metrics, fake_openrouter: FakeOpenRouter
):
    fake_openrouter.reply_text = "a long answer in several parts"
    async with metered_chat.turn("start", user_id=USER, front="telegram") as turn:
        async for _ in turn.deltas():
            break
    assert value(metrics, "chatbridge_turns_total", front="telegram", outcome="abandoned") == 1
    assert total(metrics, "chatbridge_turns_total") == 1
    assert total(metrics, "chatbridge_errors_total") == 0


async def test_a_turn_without_a_front_is_counted_as_unknown(
    metered_chat: ChatService, metrics: Metrics
):
    async with metered_chat.turn("hi", user_id=USER) as turn:
        _ = [delta async for delta in turn.deltas()]
    assert value(metrics, "chatbridge_turns_total", front="unknown", outcome="completed") == 1


# --- commands ---------------------------------------------------------------------------------


async def test_a_failed_command_counts_an_error_under_the_front_of_the_user_id(
    metered_commands: CommandHandler, metrics: Metrics
):
    reply = await metered_commands.handle("discord:7", "/switch 99")
    assert isinstance(reply, Reply)
    assert reply.is_error
    assert value(metrics, "chatbridge_errors_total", front="discord", kind="invalid_argument") == 1
    assert total(metrics, "chatbridge_errors_total") == 1
    assert total(metrics, "chatbridge_turns_total") == 0


async def test_turns_started_by_commands_carry_the_front_of_the_user_id(
    metered_commands: CommandHandler, metrics: Metrics
):
    for user, message in (("cli:me", "hello"), ("cli:me", "/retry"), ("telegram:9", "hi")):
        outcome = await metered_commands.handle(user, message)
        assert isinstance(outcome, TurnReply)
        async with outcome.turn as turn:
            _ = [delta async for delta in turn.deltas()]
    assert value(metrics, "chatbridge_turns_total", front="cli", outcome="completed") == 2
    assert value(metrics, "chatbridge_turns_total", front="telegram", outcome="completed") == 1


# --- Redis ------------------------------------------------------------------------------------


async def test_a_redis_outage_counts_unavailable_redis_errors_and_the_turn_outcome(
    tmp_path: Path, fast_model: OpenRouterClient, metrics: Metrics
):
    server = RedisProcess(tmp_path)
    server.start()
    client = redis_from_settings(Settings(_env_file=None), url=server.url)  # type: ignore[call-arg]
    store = SessionStore(client, SessionLimits(), metrics)
    chat = ChatService(store, fast_model, TurnSettings("", MODEL), metrics)
    try:
        await run_turn(chat, "before")
        assert value(metrics, "chatbridge_redis_errors_total", kind="unavailable") == 0
        server.kill()
        with pytest.raises(StoreUnavailable):
            await run_turn(chat, "during")
    finally:
        await client.aclose()
        server.stop()
    assert value(metrics, "chatbridge_redis_errors_total", kind="unavailable") >= 1
    assert value(metrics, "chatbridge_redis_errors_total", kind="full") == 0
    assert value(metrics, "chatbridge_turns_total", front="telegram", outcome="completed") == 1
    unavailable = value(
        metrics, "chatbridge_turns_total", front="telegram", outcome="store_unavailable"
    )
    assert unavailable == 1


# --- labels stay bounded ----------------------------------------------------------------------


def test_model_labels_past_the_cap_are_counted_as_other_but_configured_models_keep_theirs():
    metrics = Metrics(models=[MODEL])
    for number in range(MAX_MODEL_LABELS + 5):
        metrics.observe_model_call(f"vendor/model-{number}", 1.0, None)
    metrics.observe_model_call(MODEL, 1.0, None)
    name = "chatbridge_model_latency_seconds_count"
    assert value(metrics, name, model="vendor/model-0") == 1
    assert value(metrics, name, model=f"vendor/model-{MAX_MODEL_LABELS - 1}") == 0
    assert value(metrics, name, model=OTHER_MODEL) == 6
    assert value(metrics, name, model=MODEL) == 1


def test_each_metrics_object_counts_on_its_own_registry():
    first, second = Metrics(), Metrics()
    first.turn_completed("http")
    assert value(first, "chatbridge_turns_total", front="http", outcome="completed") == 1
    assert value(second, "chatbridge_turns_total", front="http", outcome="completed") == 0


# --- GET /metrics over HTTP -------------------------------------------------------------------


def forget_settings_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No chatbridge variable of the developer's reaches the settings (names match any case)."""
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)


@asynccontextmanager
async def served_api(
    redis_url: str, fake: FakeOpenRouter, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    """The service's core and HTTP app on 127.0.0.1, on a free port; a client bound to it."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=redis_url,  # type: ignore[arg-type]
        openrouter_api_key=fake.api_key,  # type: ignore[arg-type]
        openrouter_base_url=fake.base_url,
        default_model=MODEL,
        **overrides,
    )
    async with open_services(settings) as services:
        runner = web.AppRunner(build_app(services), shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            host, port = runner.addresses[0][:2]
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as client:
                yield client, services
        finally:
            await runner.cleanup()


async def test_get_metrics_shows_a_turn_made_through_the_http_api(
    redis_server: RedisProcess,
    redis_client: aioredis.Redis,
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
):
    forget_settings_environment(monkeypatch)
    async with served_api(redis_server.url, fake_openrouter) as (client, services):
        created = await client.post("/api/sessions", json={"userId": "ana"})
        assert created.status_code == 201
        session_id = created.json()["id"]
        chat = await client.post(
            "/api/chat/session", json={"sessionId": session_id, "message": "hello"}
        )
        assert chat.status_code == 200

        scraped = await client.get("/metrics")

    assert scraped.status_code == 200
    assert scraped.headers["Content-Type"] == METRICS_CONTENT_TYPE
    assert 'chatbridge_turns_total{front="http",outcome="completed"} 1.0' in scraped.text
    assert f'chatbridge_model_latency_seconds_count{{model="{MODEL}"}} 1.0' in scraped.text
    assert value(services.metrics, "chatbridge_turns_total", front="http", outcome="completed") == 1


async def test_get_metrics_needs_the_service_token_when_auth_is_on(
    redis_server: RedisProcess,
    redis_client: aioredis.Redis,
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
):
    forget_settings_environment(monkeypatch)
    user_token = jwt.encode(
        {"sub": "ana", "exp": int(time.time()) + 300}, JWT_SECRET, algorithm="HS256"
    )
    async with served_api(
        redis_server.url, fake_openrouter, api_token=API_TOKEN, jwt_secret=JWT_SECRET
    ) as (client, _):
        anonymous = await client.get("/metrics")
        service = await client.get("/metrics", headers={"Authorization": f"Bearer {API_TOKEN}"})
        user = await client.get("/metrics", headers={"Authorization": f"Bearer {user_token}"})
    assert anonymous.status_code == 401
    assert service.status_code == 200
    assert service.headers["Content-Type"] == METRICS_CONTENT_TYPE
    assert "chatbridge_turns_total" in service.text
    assert user.status_code == 403
