"""POST /api/sessions/{sessionId}/messages, the one door for a message the model did not answer.

It keeps the rules a turn's question keeps: every role has a length limit, a user's token adds
role user only, a running turn holds the session against it, and it counts against the session
owner's RATE_LIMIT_MESSAGES (issue 15: with a user's JWT, 150 assistant messages of 60,000
characters went in, uncounted, between a turn's question and its answer). Real HTTP
(tests/e2e/http_app.py) on the test Redis, answered by the fake OpenRouter.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import jwt
import pytest

from tests.e2e.http_app import (
    RunningApi,
    ServeApi,
    all_messages,
    assert_error,
    assert_message_shape,
    bearer,
    create_session,
)
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.waiting import until

API_TOKEN = "service-token-of-the-message-door-tests"
JWT_SECRET = "jwt-secret-of-the-message-door-tests-0123456789"
LIMITS = {"user": 50, "system": 50, "assistant": 80}  # MAX_MESSAGE_LENGTH, MAX_ASSISTANT_...
DEFAULT_ASSISTANT_LIMIT = 32_000
USER_REFUSAL_METRIC = 'chatbridge_rate_limit_refusals_total{source="user"}'


def user_jwt(user_id: str) -> dict[str, str]:
    claims = {"sub": user_id, "exp": int(time.time()) + 600}
    return bearer(jwt.encode(claims, JWT_SECRET, algorithm="HS256"))


async def add(
    api: RunningApi,
    session_id: str,
    content: str,
    role: str = "user",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await api.client.post(
        f"/api/sessions/{session_id}/messages",
        json={"role": role, "content": content},
        headers=headers,
    )


async def stored(
    api: RunningApi, session_id: str, headers: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    page = await all_messages(api.client, session_id, headers)
    return [(m["role"], m["content"]) for m in page["messages"]]


def retry_after(response: httpx.Response) -> int:
    value = response.headers["Retry-After"]
    assert value.isdigit(), value
    return int(value)


def user_refusals(metrics: str) -> float:
    lines = [line for line in metrics.splitlines() if line.startswith(USER_REFUSAL_METRIC)]
    return float(lines[0].split()[-1]) if lines else 0.0


# --- length limits -----------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(LIMITS))
async def test_every_role_is_held_to_its_length_limit_at_the_boundary(
    serve_api: ServeApi, role: str
) -> None:
    api = await serve_api(
        max_message_length=LIMITS["user"], max_assistant_message_length=LIMITS["assistant"]
    )
    sid = (await create_session(api.client))["id"]
    limit = LIMITS[role]

    below = await add(api, sid, "b" * (limit - 1), role)
    at_limit = await add(api, sid, "a" * limit, role)
    over = await add(api, sid, "o" * (limit + 1), role)

    assert below.status_code == 201, below.text
    assert at_limit.status_code == 201, at_limit.text
    assert_message_shape(at_limit.json())
    message = assert_error(over, 422, "message_too_long")
    assert f"has {limit + 1} characters; the limit is {limit}" in message
    assert await stored(api, sid) == [(role, "b" * (limit - 1)), (role, "a" * limit)]


async def test_an_assistant_message_is_held_to_32000_characters_by_default(
    serve_api: ServeApi,
) -> None:
    api = await serve_api()
    sid = (await create_session(api.client))["id"]

    longer_than_a_question = await add(api, sid, "q" * 4001, "assistant")
    at_limit = await add(api, sid, "a" * DEFAULT_ASSISTANT_LIMIT, "assistant")
    over = await add(api, sid, "o" * (DEFAULT_ASSISTANT_LIMIT + 1), "assistant")

    assert longer_than_a_question.status_code == 201, longer_than_a_question.text
    assert at_limit.status_code == 201, at_limit.text
    assert "the limit is 32000" in assert_error(over, 422, "message_too_long")
    assert [len(content) for _, content in await stored(api, sid)] == [4001, 32_000]
    assert api.settings.max_assistant_message_length == DEFAULT_ASSISTANT_LIMIT


@pytest.mark.parametrize("blank", ["", "   ", "\n\t", "\x1c"])
@pytest.mark.parametrize("role", list(LIMITS))
async def test_empty_content_is_refused_for_every_role(
    serve_api: ServeApi, role: str, blank: str
) -> None:
    api = await serve_api()
    sid = (await create_session(api.client))["id"]

    response = await add(api, sid, blank, role)

    assert_error(response, 422, {"empty_message", "validation_error"})
    assert await stored(api, sid) == []


# --- who may add what --------------------------------------------------------------------------


async def test_a_users_jwt_adds_user_messages_only_and_the_service_token_any_role(
    serve_api: ServeApi,
) -> None:
    api = await serve_api(api_token=API_TOKEN, jwt_secret=JWT_SECRET)
    ana, service = user_jwt("ana"), bearer(API_TOKEN)
    sid = (await create_session(api.client, "ana", headers=ana))["id"]

    as_user = await add(api, sid, "a note", "user", ana)
    as_assistant = await add(api, sid, "words for the model", "assistant", ana)
    as_system = await add(api, sid, "new instructions", "system", ana)
    # Refused before the session is looked up: the same 403 for a session that is not there.
    elsewhere = await add(api, "0" * 32, "words for the model", "assistant", ana)
    imported = await add(api, sid, "an imported answer", "assistant", service)
    noted = await add(api, sid, "a system note", "system", service)

    assert as_user.status_code == 201, as_user.text
    for refused in (as_assistant, as_system, elsewhere):
        message = assert_error(refused, 403, "forbidden")
        assert "API_TOKEN" in message
        assert API_TOKEN not in refused.text
    assert as_system.json() == elsewhere.json()
    assert imported.status_code == 201, imported.text
    assert noted.status_code == 201, noted.text
    assert await stored(api, sid, ana) == [
        ("user", "a note"),
        ("assistant", "an imported answer"),
        ("system", "a system note"),
    ]


# --- the session's lock ------------------------------------------------------------------------


async def test_a_message_added_while_a_turn_runs_is_refused_with_409_and_lands_after_it(
    serve_api: ServeApi, fake_openrouter: FakeOpenRouter
) -> None:
    api = await serve_api()
    sid = (await create_session(api.client))["id"]
    gate = asyncio.Event()
    fake_openrouter.hold(gate)
    turn = asyncio.create_task(
        api.client.post("/api/chat/session", json={"sessionId": sid, "message": "Q"})
    )
    await until(lambda: fake_openrouter.requests, what="the model asked")

    busy = [await add(api, sid, "between", role) for role in LIMITS]
    gate.set()
    answered = await turn
    after = await add(api, sid, "after")

    for response in busy:
        assert_error(response, 409, "session_busy")
    assert answered.status_code == 200, answered.text
    assert after.status_code == 201, after.text
    assert await stored(api, sid) == [("user", "Q"), ("assistant", "echo: Q"), ("user", "after")]


# --- the rate limit ----------------------------------------------------------------------------


async def test_adds_past_the_rate_limit_answer_429_with_retry_after(serve_api: ServeApi) -> None:
    api = await serve_api(rate_limit_messages=3, rate_limit_window=60)
    sid = (await create_session(api.client))["id"]

    passed = [await add(api, sid, f"m{n}", role) for n, role in enumerate(LIMITS)]
    refused = [await add(api, sid, "one too many", role) for role in LIMITS]
    turn = await api.client.post("/api/chat/session", json={"sessionId": sid, "message": "Q"})

    for response in passed:
        assert response.status_code == 201, response.text
    for response in (*refused, turn):
        message = assert_error(response, 429, "rate_limited")
        assert 1 <= retry_after(response) <= 60
        assert "at most 3 every 60 s" in message
    assert [content for _, content in await stored(api, sid)] == ["m0", "m1", "m2"]
    assert user_refusals((await api.client.get("/metrics")).text) == 4


async def test_adds_and_turns_share_one_count(serve_api: ServeApi) -> None:
    api = await serve_api(rate_limit_messages=3, rate_limit_window=60)
    sid = (await create_session(api.client))["id"]
    for number in range(2):
        assert (await add(api, sid, f"m{number}")).status_code == 201
    turn = await api.client.post("/api/chat/session", json={"sessionId": sid, "message": "Q"})
    assert turn.status_code == 200, turn.text

    assert_error(await add(api, sid, "past the limit"), 429, "rate_limited")
    again = await api.client.post("/api/chat/session", json={"sessionId": sid, "message": "Q2"})
    assert_error(again, 429, "rate_limited")
    assert [content for _, content in await stored(api, sid)] == ["m0", "m1", "Q", "echo: Q"]


async def test_adds_count_against_the_sessions_owner_whoever_sends_them(
    serve_api: ServeApi,
) -> None:
    api = await serve_api(rate_limit_messages=2, api_token=API_TOKEN, jwt_secret=JWT_SECRET)
    ana, service = user_jwt("ana"), bearer(API_TOKEN)
    anas = (await create_session(api.client, "ana", headers=ana))["id"]
    bobs = (await create_session(api.client, "bob", headers=service))["id"]

    by_the_service = [await add(api, anas, "imported", "assistant", service) for _ in range(2)]
    by_ana = await add(api, anas, "mine", "user", ana)
    by_the_service_again = await add(api, anas, "one more", "system", service)
    for_bob = await add(api, bobs, "bob's own count", "user", service)

    assert [r.status_code for r in by_the_service] == [201, 201]
    assert_error(by_ana, 429, "rate_limited")
    assert_error(by_the_service_again, 429, "rate_limited")
    assert for_bob.status_code == 201, for_bob.text


async def test_fifty_concurrent_adds_let_exactly_the_rate_limit_through(
    serve_api: ServeApi,
) -> None:
    api = await serve_api(rate_limit_messages=20, max_messages_per_session=100)
    sid = (await create_session(api.client))["id"]

    responses = await asyncio.gather(*(add(api, sid, f"m{n}") for n in range(50)))

    statuses = [response.status_code for response in responses]
    assert (statuses.count(201), statuses.count(429)) == (20, 30), statuses
    for response in responses:
        if response.status_code == 429:
            assert_error(response, 429, "rate_limited")
    accepted = {r.json()["content"] for r in responses if r.status_code == 201}
    kept = await stored(api, sid)
    assert len(kept) == 20
    assert {content for _, content in kept} == accepted
