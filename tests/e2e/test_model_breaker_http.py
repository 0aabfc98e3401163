"""The model's circuit breaker through the HTTP API, wired from settings by `open_core`.

Over real HTTP (tests/e2e/http_app.py) on the test Redis, answered by the fake OpenRouter.
"""

from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.http_app import (
    TEST_MODEL,
    RunningApi,
    ServeApi,
    all_messages,
    assert_error,
    assert_nothing_leaks,
    create_session,
    sse_events,
)
from tests.fakes.openrouter_server import FakeOpenRouter

FAILURES = 2
COOLDOWN = 60
STORM = 100


@pytest.fixture
async def api(serve_api: ServeApi) -> RunningApi:
    """The API with a breaker that opens after FAILURES failed model requests."""
    return await serve_api(model_breaker_failures=FAILURES, model_breaker_cooldown=COOLDOWN)


async def say(
    api: RunningApi, session_id: str, message: str, *, stream: bool = False
) -> httpx.Response:
    body = {"sessionId": session_id, "message": message, "stream": stream}
    return await api.client.post("/api/chat/session", json=body)


async def test_an_open_breaker_answers_503_with_retry_after_and_sends_nothing_upstream(
    api: RunningApi, fake_openrouter: FakeOpenRouter
) -> None:
    session = await create_session(api.client)
    fake_openrouter.server_error(502, times=STORM)

    tripping = await say(api, session["id"], "first")
    assert len(fake_openrouter.requests) == FAILURES
    refused = await say(api, session["id"], "second")

    for response in (tripping, refused):
        message = assert_error(response, 503, "model_circuit_open")
        assert 1 <= int(response.headers["Retry-After"]) <= COOLDOWN
        assert "Retry-After" in message
    assert len(fake_openrouter.requests) == FAILURES  # the second turn sent nothing
    stored = await all_messages(api.client, session["id"])
    assert [(m["role"], m["content"]) for m in stored["messages"]] == [
        ("user", "first"),
        ("user", "second"),
    ]
    metrics = (await api.client.get("/metrics")).text
    assert f'chatbridge_model_breaker_opens_total{{model="{TEST_MODEL}"}} 1.0' in metrics
    assert "chatbridge_model_breakers_open 1.0" in metrics
    assert f'chatbridge_model_breaker_refusals_total{{model="{TEST_MODEL}"}}' in metrics


async def test_an_open_breaker_ends_a_streamed_turn_with_one_error_event(
    api: RunningApi, fake_openrouter: FakeOpenRouter
) -> None:
    session = await create_session(api.client)
    fake_openrouter.server_error(503, times=STORM)
    await say(api, session["id"], "trips the breaker")
    sent = len(fake_openrouter.requests)

    response = await say(api, session["id"], "streamed", stream=True)

    assert response.status_code == 200, response.text
    events = sse_events(response)
    assert [name for name, _ in events] == ["error"]
    assert events[0][1]["error"]["code"] == "model_circuit_open"
    seconds = re.search(r"for (\d+) s\.", events[0][1]["error"]["message"])
    assert seconds is not None
    assert 1 <= int(seconds[1]) <= COOLDOWN
    assert_nothing_leaks(response.text)
    assert len(fake_openrouter.requests) == sent
