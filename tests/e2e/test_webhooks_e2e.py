"""Webhooks end to end: `python -m bots` with WEBHOOK_URLS delivers a turn's events, signed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis

from core.events.publisher import EVENTS_STREAM_KEY
from tests.e2e.conftest import StartService, service_env
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.fakes.webhook_receiver import FakeWebhookReceiver
from tests.redis_process import RedisProcess
from tests.waiting import until

SECRET = "e2e-webhook-secret-0123456789"


@pytest.fixture
async def receiver() -> AsyncIterator[FakeWebhookReceiver]:
    fake = FakeWebhookReceiver(SECRET)
    await fake.start()
    yield fake
    await fake.stop()


async def test_a_turn_over_the_http_api_reaches_the_receiver_signed(
    redis_server: RedisProcess,
    redis_client: aioredis.Redis,  # an empty database for this test
    fake_openrouter: FakeOpenRouter,
    receiver: FakeWebhookReceiver,
    start_service: StartService,
):
    url_with_token = receiver.url + "?token=e2e-receiver-token"
    env = service_env(
        REDIS_URL=redis_server.url,
        OPENROUTER_API_KEY=fake_openrouter.api_key,
        OPENROUTER_BASE_URL=fake_openrouter.base_url,
        WEBHOOK_URLS=url_with_token,
        WEBHOOK_SECRET=SECRET,
    )
    service = await start_service(env)
    started = await service.wait_for_event("webhooks.started")
    assert started["receivers"] == [receiver.url]

    async with httpx.AsyncClient(base_url=service.local_url, timeout=10) as http:
        response = await http.post(
            "/api/chat/session/start", json={"userId": "ana", "initialMessage": "hello hooks"}
        )
    assert response.status_code == 201
    session_id = response.json()["session"]["id"]

    await until(lambda: len(receiver.accepted) >= 2, what="session.created and turn.completed")
    assert all(d.is_signed_correctly for d in receiver.requests)
    types = sorted(d.event["type"] for d in receiver.accepted)
    assert types == ["session.created", "turn.completed"]
    completed = receiver.accepted_of_type("turn.completed")[0]["data"]
    assert completed["sessionId"] == session_id
    assert completed["userId"] == "ana"
    assert completed["front"] == "http"
    assert await redis_client.exists(EVENTS_STREAM_KEY) == 1
    await service.stop()
    assert SECRET not in service.output
    assert "e2e-receiver-token" not in service.output
