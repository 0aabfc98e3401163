"""A user's turn limits as the fronts show them: the HTTP API's 429 with Retry-After, and the
terminal's sentence. Real HTTP (tests/e2e/http_app.py) and a real `python -m bots chat`."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
import redis.asyncio as aioredis

from bots.terminal import plain
from core.messages import text
from core.sessions.keys import user_tokens_key
from tests.e2e.conftest import RunCli, child_env
from tests.e2e.http_app import RunningApi, ServeApi, assert_error, create_session
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.redis_process import RedisProcess
from tests.waiting import until

DAY_SECONDS = 86_400
WAIT = r"\d+ (s|min|h)( \d+ min)?"  # as core.messages.duration says it


@pytest.fixture
async def api(serve_api: ServeApi) -> RunningApi:
    """Two turns per user per minute."""
    return await serve_api(rate_limit_messages=2, rate_limit_window=60)


def retry_after(response: httpx.Response) -> int:
    """The Retry-After header: whole seconds, as RFC 9110 allows."""
    value = response.headers["Retry-After"]
    assert value.isdigit(), value
    return int(value)


async def test_chat_turns_past_the_rate_limit_answer_429_with_retry_after(api: RunningApi) -> None:
    session = await create_session(api.client)
    turn = {"sessionId": session["id"], "message": "Hello"}
    for _ in range(2):
        assert (await api.client.post("/api/chat/session", json=turn)).status_code == 200

    for body in (turn, turn | {"stream": True}):
        response = await api.client.post("/api/chat/session", json=body)
        message = assert_error(response, 429, "rate_limited")
        assert 1 <= retry_after(response) <= 60
        assert "at most 2 every 60 s" in message

    history = await api.client.get(f"/api/chat/session/{session['id']}/history")
    assert history.json()["total"] == 4  # the refused turns stored nothing


async def test_starting_a_chat_past_the_rate_limit_answers_429_and_creates_nothing(
    api: RunningApi,
) -> None:
    start = {"userId": "ana", "initialMessage": "Hi!"}
    for _ in range(2):
        assert (await api.client.post("/api/chat/session/start", json=start)).status_code == 201

    response = await api.client.post("/api/chat/session/start", json=start)

    assert_error(response, 429, "rate_limited")
    assert 1 <= retry_after(response) <= 60
    assert "Location" not in response.headers
    listing = (await api.client.get("/api/users/ana/sessions")).json()
    assert len(listing["sessions"]) == 2
    # Only turns are limited: a session can still be made without one.
    assert (await api.client.post("/api/sessions", json={"userId": "ana"})).status_code == 201


async def test_a_user_over_the_daily_budget_gets_429_until_utc_midnight(
    serve_api: ServeApi, redis_client: aioredis.Redis
) -> None:
    api = await serve_api(daily_token_budget=1)
    start = {"userId": "ana", "initialMessage": "Hi!"}
    first = await api.client.post("/api/chat/session/start", json=start)
    assert first.status_code == 201, first.text
    session_id = first.json()["session"]["id"]

    seconds, _ = await redis_client.time()
    response = await api.client.post(
        "/api/chat/session", json={"sessionId": session_id, "message": "more"}
    )

    assert_error(response, 429, "daily_budget_exhausted")
    assert 1 <= retry_after(response) <= DAY_SECONDS - int(seconds) % DAY_SECONDS
    assert_error(await api.client.post("/api/chat/session/start", json=start), 429,
                 "daily_budget_exhausted")  # fmt: skip
    spent = await redis_client.get(user_tokens_key("ana", int(seconds) // DAY_SECONDS))
    assert int(spent) == first.json()["reply"]["usage"]["totalTokens"]


async def test_concurrent_chats_of_one_user_cannot_all_start_on_a_small_budget(
    serve_api: ServeApi, fake_openrouter: FakeOpenRouter
) -> None:
    # The first turn reserves more than the budget (its answer may take 512 tokens): the
    # others, checked while it runs, are refused.
    api = await serve_api(daily_token_budget=100, max_completion_tokens=512)
    sessions = [await create_session(api.client) for _ in range(5)]
    gate = asyncio.Event()
    fake_openrouter.hold(gate, times=5)

    posts = [
        asyncio.create_task(
            api.client.post("/api/chat/session", json={"sessionId": s["id"], "message": "Hi"})
        )
        for s in sessions
    ]
    # Released only once every turn has begun or been refused: one holds the model.
    await until(
        lambda: sum(post.done() for post in posts) == 4 and len(fake_openrouter.requests) == 1,
        what="four chats refused while one waits for the model",
    )
    gate.set()
    responses = await asyncio.gather(*posts)

    assert sorted(response.status_code for response in responses) == [200, 429, 429, 429, 429]
    (request,) = fake_openrouter.requests
    assert request.body["max_tokens"] == 512


async def test_the_openapi_document_promises_retry_after_on_the_chat_429s(
    api: RunningApi,
) -> None:
    paths = (await api.client.get("/api/openapi.json")).json()["paths"]
    for path in ("/api/chat/session", "/api/chat/session/start"):
        too_many = paths[path]["post"]["responses"]["429"]
        assert too_many["headers"]["Retry-After"]["required"] is True
        assert "rate limit" in too_many["description"]


async def test_the_terminal_says_when_to_try_again(
    run_cli: RunCli, redis_server: RedisProcess, fake_openrouter: FakeOpenRouter
) -> None:
    env = child_env(
        REDIS_URL=redis_server.url,
        OPENROUTER_API_KEY=fake_openrouter.api_key,
        OPENROUTER_BASE_URL=fake_openrouter.base_url,
        RATE_LIMIT_MESSAGES="1",
        RATE_LIMIT_WINDOW="3600",
        LANG="pt_BR.UTF-8",
    )
    stdin = "primeira\nsegunda\n/history\n"

    result = await run_cli("chat", "--user", "ana", env=env, stdin=stdin, within=30.0)

    assert result.returncode == 0, result.output
    assert "echo: primeira" in result.stdout
    refusal = plain(text("pt-BR", "rate_limited", limit=1, window="1 h", wait="WAIT"))
    assert re.search(re.escape(refusal).replace("WAIT", WAIT), result.stdout), result.output
    assert "echo: segunda" not in result.stdout
    assert len(fake_openrouter.requests) == 1
