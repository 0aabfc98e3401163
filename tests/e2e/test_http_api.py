"""The HTTP API, black box, over real HTTP: DESIGN.md's "HTTP API" table is the contract.

The app runs in-process on the test's event loop (see tests/e2e/http_app.py), on the test Redis,
answered by the fake OpenRouter, and is called with httpx over a real socket.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.web_exceptions import NotAppKeyWarning
from jwt.warnings import InsecureKeyLengthWarning
from structlog.testing import capture_logs

from core.sessions.keys import session_key
from tests.e2e.http_app import (
    JSON_HEADERS,
    POLL_INTERVAL,
    POLL_WITHIN,
    TEST_MODEL,
    RunningApi,
    ServeApi,
    add_messages,
    all_messages,
    assert_error,
    assert_iso_utc,
    assert_message_shape,
    assert_nothing_leaks,
    assert_session_shape,
    bearer,
    create_session,
    poll_status,
    sse_events,
)
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.redis_process import RedisProcess
from tests.waiting import until

USAGE_FIELDS = {"promptTokens", "completionTokens", "totalTokens", "cost"}
UNKNOWN_SESSION = "0123456789abcdef0123456789abcdef"
API_TOKEN = "service-token-for-the-http-api-tests"
JWT_SECRET = "jwt-secret-of-the-http-api-tests-0123456789"
OTHER_SECRET = "another-secret-that-the-server-does-not-know"


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
async def api(serve_api: ServeApi) -> RunningApi:
    """The API with default limits and no authentication (loopback only)."""
    return await serve_api()


# --- helpers ---------------------------------------------------------------------------------


def user_jwt(
    user_id: str, *, secret: str = JWT_SECRET, expires_in: float | None = 600
) -> dict[str, str]:
    claims: dict[str, Any] = {"sub": user_id}
    if expires_in is not None:
        claims["exp"] = int(time.time() + expires_in)
    return bearer(jwt.encode(claims, secret, algorithm="HS256"))


def unsigned_jwt(user_id: str) -> dict[str, str]:
    """`alg: none`, built by hand: header.payload. with an empty signature."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"sub": user_id, "exp": int(time.time()) + 600}
    return bearer(f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.")


# --- every endpoint's success path -----------------------------------------------------------


async def test_creating_a_session_answers_201_with_the_session_in_camel_case(
    api: RunningApi,
) -> None:
    response = await api.client.post(
        "/api/sessions", json={"userId": "ana", "title": "Trip", "model": "test/other"}
    )

    assert response.status_code == 201, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    session = response.json()
    assert_session_shape(session)
    assert session["userId"] == "ana"
    assert session["title"] == "Trip"
    assert session["model"] == "test/other"
    assert session["messageCount"] == 0


async def test_a_session_created_with_a_system_prompt_sends_it_to_the_model(
    api: RunningApi, fake_openrouter: FakeOpenRouter
) -> None:
    response = await api.client.post(
        "/api/sessions", json={"userId": "ana", "systemPrompt": "You are a pirate."}
    )
    assert response.status_code == 201, response.text
    assert response.json()["systemPrompt"] == "You are a pirate."
    session_id = response.json()["id"]

    chat = await api.client.post(
        "/api/chat/session", json={"sessionId": session_id, "message": "ahoy"}
    )
    assert chat.status_code == 200, chat.text
    assert fake_openrouter.requests[-1].body["messages"][0] == {
        "role": "system",
        "content": "You are a pirate.",
    }


async def test_patch_changes_title_model_and_system_prompt_and_null_resets_it(
    api: RunningApi, fake_openrouter: FakeOpenRouter
) -> None:
    created = await create_session(api.client)
    assert created["systemPrompt"] is None
    path = f"/api/sessions/{created['id']}"

    changed = await api.client.patch(
        path, json={"title": "Sea", "model": "test/other", "systemPrompt": "Speak like a sailor."}
    )
    assert changed.status_code == 200, changed.text
    session = changed.json()
    assert_session_shape(session)
    assert (session["title"], session["model"], session["systemPrompt"]) == (
        "Sea", "test/other", "Speak like a sailor.",
    )  # fmt: skip
    await api.client.post("/api/chat/session", json={"sessionId": created["id"], "message": "hi"})
    sent = fake_openrouter.requests[-1].body
    assert sent["messages"][0] == {"role": "system", "content": "Speak like a sailor."}
    assert sent["model"] == "test/other"

    only_title = await api.client.patch(path, json={"title": "Ocean"})
    assert only_title.json()["systemPrompt"] == "Speak like a sailor."  # untouched
    reset = await api.client.patch(path, json={"systemPrompt": None})
    assert reset.status_code == 200, reset.text
    assert (reset.json()["title"], reset.json()["systemPrompt"]) == ("Ocean", None)
    await api.client.post("/api/chat/session", json={"sessionId": created["id"], "message": "yo"})
    assert fake_openrouter.requests[-1].body["messages"][0]["content"] != "Speak like a sailor."
    fetched = await api.client.get(path)
    assert fetched.json() == reset.json() | {"updatedAt": fetched.json()["updatedAt"],
                                             "messageCount": 4}  # fmt: skip


@pytest.mark.parametrize(
    ("length", "status"),
    [(3999, 200), (4000, 200), (4001, 422)],  # MAX_SYSTEM_PROMPT_LENGTH
)
async def test_a_system_prompt_is_held_to_4000_characters(
    api: RunningApi, length: int, status: int
) -> None:
    created = await create_session(api.client)
    response = await api.client.patch(
        f"/api/sessions/{created['id']}", json={"systemPrompt": "é" * length}
    )
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json()["systemPrompt"] == "é" * length


@pytest.mark.parametrize(
    "body", [{}, {"systemPrompt": ""}, {"systemPrompt": "  "}, {"model": "not a model"}]
)
async def test_a_patch_that_changes_nothing_valid_is_refused_with_422(
    api: RunningApi, body: dict[str, object]
) -> None:
    created = await create_session(api.client)
    response = await api.client.patch(f"/api/sessions/{created['id']}", json=body)
    assert response.status_code == 422, response.text


async def test_patching_a_missing_session_answers_404(api: RunningApi) -> None:
    response = await api.client.patch(f"/api/sessions/{'0' * 32}", json={"title": "x"})
    assert response.status_code == 404, response.text


async def test_a_session_created_without_a_model_uses_the_default_model(api: RunningApi) -> None:
    session = await create_session(api.client)

    assert session["model"] == TEST_MODEL
    assert session["title"] == ""


async def test_getting_a_session_answers_200_with_that_session(api: RunningApi) -> None:
    created = await create_session(api.client)

    response = await api.client.get(f"/api/sessions/{created['id']}")

    assert response.status_code == 200, response.text
    session = response.json()
    assert_session_shape(session)
    assert {k: session[k] for k in ("id", "userId", "title", "model", "createdAt")} == {
        k: created[k] for k in ("id", "userId", "title", "model", "createdAt")
    }


async def test_a_users_sessions_are_listed_most_recent_activity_first(api: RunningApi) -> None:
    first = await create_session(api.client)
    second = await create_session(api.client)
    third = await create_session(api.client)
    await create_session(api.client, "bob")
    await add_messages(api.client, first["id"], 1)

    response = await api.client.get("/api/users/ana/sessions")

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"sessions"}
    for session in body["sessions"]:
        assert_session_shape(session)
    assert [s["id"] for s in body["sessions"]] == [first["id"], third["id"], second["id"]]
    assert body["sessions"][0]["messageCount"] == 1


async def test_a_user_without_sessions_gets_an_empty_list(api: RunningApi) -> None:
    response = await api.client.get("/api/users/nobody/sessions")

    assert response.status_code == 200, response.text
    assert response.json() == {"sessions": []}


async def test_deleting_a_session_answers_204_then_404(api: RunningApi) -> None:
    session = await create_session(api.client)
    await add_messages(api.client, session["id"], 2)

    deleted = await api.client.delete(f"/api/sessions/{session['id']}")

    assert deleted.status_code == 204, deleted.text
    assert deleted.content == b""
    assert_error(await api.client.get(f"/api/sessions/{session['id']}"), 404, "session_not_found")
    again = await api.client.delete(f"/api/sessions/{session['id']}")
    assert_error(again, 404, "session_not_found")
    history = await api.client.get(f"/api/chat/session/{session['id']}/history")
    assert_error(history, 404, "session_not_found")
    listing = await api.client.get("/api/users/ana/sessions")
    assert listing.json() == {"sessions": []}


async def test_starting_a_chat_creates_a_session_and_answers_201_with_the_reply(
    api: RunningApi, fake_openrouter: FakeOpenRouter
) -> None:
    response = await api.client.post(
        "/api/chat/session/start",
        json={"userId": "ana", "title": "Greeting", "initialMessage": "Hello there"},
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"session", "reply", "notices"}
    assert_session_shape(body["session"])
    assert body["session"]["userId"] == "ana"
    assert body["session"]["messageCount"] == 2
    reply = body["reply"]
    assert_message_shape(reply)
    assert reply["role"] == "assistant"
    assert reply["content"] == "echo: Hello there"
    assert body["notices"] == []
    assert reply["model"] == TEST_MODEL
    assert set(reply["usage"]) == USAGE_FIELDS
    usage = reply["usage"]
    assert usage["totalTokens"] == usage["promptTokens"] + usage["completionTokens"]
    sent = fake_openrouter.requests[-1].body
    assert sent["messages"][-1] == {"role": "user", "content": "Hello there"}
    listing = await api.client.get("/api/users/ana/sessions")
    assert [s["id"] for s in listing.json()["sessions"]] == [body["session"]["id"]]


async def test_starting_a_chat_without_a_model_key_creates_nothing(serve_api: ServeApi) -> None:
    api = await serve_api(openrouter_api_key=None)

    response = await api.client.post(
        "/api/chat/session/start", json={"userId": "ana", "initialMessage": "Hi!"}
    )

    assert_error(response, 503, "model_not_configured")
    assert (await api.client.get("/api/users/ana/sessions")).json() == {"sessions": []}


async def test_starting_a_chat_with_a_model_id_asks_that_model(
    api: RunningApi, fake_openrouter: FakeOpenRouter
) -> None:
    response = await api.client.post(
        "/api/chat/session/start",
        json={"userId": "ana", "modelId": "test/chosen", "initialMessage": "Hi"},
    )

    assert response.status_code == 201, response.text
    assert fake_openrouter.requests[-1].body["model"] == "test/chosen"
    assert response.json()["reply"]["model"] == "test/chosen"


async def test_a_chat_turn_answers_200_with_the_models_echo_and_the_updated_session(
    api: RunningApi,
) -> None:
    session = await create_session(api.client)

    response = await api.client.post(
        "/api/chat/session", json={"sessionId": session["id"], "message": "What is Redis?"}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"session", "reply", "notices"}
    assert_session_shape(body["session"])
    assert body["session"]["id"] == session["id"]
    assert body["session"]["messageCount"] == 2
    assert_message_shape(body["reply"])
    assert body["reply"]["role"] == "assistant"
    assert body["reply"]["content"] == "echo: What is Redis?"
    history = await api.client.get(f"/api/chat/session/{session['id']}/history")
    assert [(m["role"], m["content"]) for m in history.json()["messages"]] == [
        ("user", "What is Redis?"),
        ("assistant", "echo: What is Redis?"),
    ]


async def test_history_defaults_to_20_messages_oldest_first_with_the_total(
    serve_api: ServeApi,
) -> None:
    api = await serve_api(rate_limit_messages=0)  # more adds than one window allows
    session = await create_session(api.client)
    await add_messages(api.client, session["id"], 30)

    response = await api.client.get(f"/api/chat/session/{session['id']}/history")

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"messages", "total", "summary"}
    assert body["summary"] is None
    assert body["total"] == 30
    assert [m["content"] for m in body["messages"]] == [f"m{i}" for i in range(20)]
    for message in body["messages"]:
        assert_message_shape(message)
        assert message["role"] == "user"
        assert message["usage"] is None


async def test_history_carries_the_sessions_summary_whatever_page_it_shows(
    serve_api: ServeApi, redis_client: aioredis.Redis
) -> None:
    api = await serve_api()
    session = await create_session(api.client)
    await add_messages(api.client, session["id"], 6)
    # As save_summary.lua leaves it (core/summaries.py makes it after a turn).
    await redis_client.hset(
        session_key(session["id"]), mapping={"summary": "Ana likes tea.", "summaryUpTo": 4}
    )

    pages = [
        (await api.client.get(f"/api/chat/session/{session['id']}/history?{query}")).json()
        for query in ("", "offset=5&limit=1")
    ]

    for page in pages:
        assert page["summary"] == {"text": "Ana likes tea.", "upToMessageId": f"{session['id']}-4"}
    assert pages[0]["messages"][3]["id"] == pages[0]["summary"]["upToMessageId"]
    assert pages[0]["messages"][3]["content"] == "m3"  # still listed: it is history
    listed = await api.client.get(f"/api/sessions/{session['id']}/messages")
    assert set(listed.json()) == {"messages", "total"}  # that listing is unchanged


async def test_messages_default_to_50_oldest_first_with_the_total(serve_api: ServeApi) -> None:
    api = await serve_api(rate_limit_messages=0)  # more adds than one window allows
    session = await create_session(api.client)
    await add_messages(api.client, session["id"], 55)

    response = await api.client.get(f"/api/sessions/{session['id']}/messages")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == 55
    assert [m["content"] for m in body["messages"]] == [f"m{i}" for i in range(50)]
    timestamps = [assert_iso_utc(m["timestamp"]) for m in body["messages"]]
    assert timestamps == sorted(timestamps)


async def test_adding_a_message_answers_201_with_the_stored_message(api: RunningApi) -> None:
    session = await create_session(api.client)

    response = await api.client.post(
        f"/api/sessions/{session['id']}/messages",
        json={"role": "assistant", "content": "Imported answer", "model": "test/imported"},
    )

    assert response.status_code == 201, response.text
    message = response.json()
    assert_message_shape(message)
    assert message["role"] == "assistant"
    assert message["content"] == "Imported answer"
    assert message["model"] == "test/imported"
    assert message["usage"] is None
    stored = await all_messages(api.client, session["id"])
    assert stored == {"messages": [message], "total": 1}
    after = await api.client.get(f"/api/sessions/{session['id']}")
    assert after.json()["messageCount"] == 1


async def test_health_answers_200_with_redis_up(api: RunningApi) -> None:
    response = await api.client.get("/health")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["redis"]["status"] == "up"
    assert body["redis"]["latencyMs"] >= 0


async def test_sessions_health_reports_active_sessions_and_their_window(
    serve_api: ServeApi,
) -> None:
    api = await serve_api(session_ttl=1800)
    for _ in range(3):
        await create_session(api.client)

    response = await api.client.get("/api/sessions/health")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["redis"]["status"] == "up"
    assert body["sessions"]["windowSeconds"] == 1800
    assert 1 <= body["sessions"]["active"] <= 4  # a HyperLogLog estimate of 3


async def test_sessions_health_counts_in_redis_at_most_once_per_interval(
    serve_api: ServeApi, redis_client: aioredis.Redis
) -> None:
    api = await serve_api()
    await create_session(api.client)
    before = await pfcount_calls(redis_client)

    answers = [await api.client.get("/api/sessions/health") for _ in range(20)]

    assert {answer.json()["sessions"]["active"] for answer in answers} == {1}
    assert await pfcount_calls(redis_client) - before == 1  # the other 19 reuse its count


async def pfcount_calls(redis_client: aioredis.Redis) -> int:
    stats = await redis_client.info("commandstats")
    return int(stats.get("cmdstat_pfcount", {}).get("calls", 0))


DESIGN_OPERATIONS = {
    ("post", "/api/sessions"),
    ("get", "/api/sessions/{sessionId}"),
    ("get", "/api/users/{userId}/sessions"),
    ("get", "/api/users/{userId}/usage"),
    ("delete", "/api/sessions/{sessionId}"),
    ("patch", "/api/sessions/{sessionId}"),
    ("post", "/api/chat/session/start"),
    ("post", "/api/chat/session"),
    ("get", "/api/chat/session/{sessionId}/history"),
    ("post", "/api/sessions/{sessionId}/messages"),
    ("get", "/api/sessions/{sessionId}/messages"),
    ("get", "/health"),
    ("get", "/api/sessions/health"),
}


async def test_the_openapi_document_is_3_1_and_describes_every_operation_of_the_design(
    api: RunningApi,
) -> None:
    response = await api.client.get("/api/openapi.json")

    assert response.status_code == 200, response.text
    document = response.json()
    assert document["openapi"] == "3.1.0"
    described = {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert described >= DESIGN_OPERATIONS


async def test_the_first_reply_without_the_oldest_messages_lists_context_lost_once(
    serve_api: ServeApi,
) -> None:
    """At MAX_MESSAGES_PER_SESSION=4 the third question is the fifth message: the first one
    is trimmed, and that reply says so; streamed or not, the next says nothing."""
    api = await serve_api(max_messages_per_session=4, summaries="off")
    session = await create_session(api.client)

    async def notices_of(message: str, *, stream: bool = False) -> list[str]:
        body = {"sessionId": session["id"], "message": message, "stream": stream}
        response = await api.client.post("/api/chat/session", json=body)
        assert response.status_code == 200, response.text
        reply = sse_events(response)[-1][1] if stream else response.json()
        notices: list[str] = reply["notices"]
        return notices

    assert await notices_of("one") == []
    assert await notices_of("two", stream=True) == []
    assert await notices_of("three") == ["context_lost"]
    assert await notices_of("four", stream=True) == []


async def test_a_streamed_reply_lists_context_lost_in_its_done_event(serve_api: ServeApi) -> None:
    api = await serve_api(max_messages_per_session=2, summaries="off")
    session = await create_session(api.client)
    await api.client.post("/api/chat/session", json={"sessionId": session["id"], "message": "a"})

    response = await api.client.post(
        "/api/chat/session", json={"sessionId": session["id"], "message": "b", "stream": True}
    )

    events = sse_events(response)
    assert events[-1][0] == "done"
    assert events[-1][1]["notices"] == ["context_lost"]
    assert all("notices" not in data for name, data in events if name == "delta")


# --- Server-Sent Events ----------------------------------------------------------------------


async def test_a_streamed_turn_sends_deltas_then_done_and_stores_the_reply(
    api: RunningApi,
) -> None:
    session = await create_session(api.client)

    response = await api.client.post(
        "/api/chat/session",
        json={"sessionId": session["id"], "message": "Tell me a story", "stream": True},
    )

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(response)
    names = [name for name, _ in events]
    assert names[-1] == "done"
    assert set(names[:-1]) == {"delta"}
    assert len(names) - 1 >= 2
    streamed = "".join(data["text"] for name, data in events if name == "delta")
    assert streamed == "echo: Tell me a story"
    done = events[-1][1]
    assert set(done) == {"session", "reply", "notices"}
    assert_session_shape(done["session"])
    assert done["session"]["messageCount"] == 2
    assert_message_shape(done["reply"])
    assert done["reply"]["content"] == streamed
    history = await api.client.get(f"/api/chat/session/{session['id']}/history")
    assert [m["content"] for m in history.json()["messages"]] == ["Tell me a story", streamed]
    assert history.json()["messages"][-1]["id"] == done["reply"]["id"]


async def test_a_cut_stream_ends_with_an_error_event_and_stores_no_answer(
    api: RunningApi, fake_openrouter: FakeOpenRouter
) -> None:
    session = await create_session(api.client)
    fake_openrouter.cut_stream(after_deltas=2)

    response = await api.client.post(
        "/api/chat/session",
        json={"sessionId": session["id"], "message": "A long question", "stream": True},
    )

    assert response.status_code == 200, response.text
    events = sse_events(response)
    names = [name for name, _ in events]
    assert names == ["delta", "delta", "error"]
    error = events[-1][1]
    assert set(error) == {"error"}
    assert set(error["error"]) == {"code", "message"}
    assert error["error"]["code"] == "model_stream_broken"
    assert error["error"]["message"]
    assert_nothing_leaks(response.text)
    stored = await all_messages(api.client, session["id"])
    assert [(m["role"], m["content"]) for m in stored["messages"]] == [("user", "A long question")]


async def test_a_streamed_answer_whose_session_was_taken_over_ends_with_an_error_event(
    api: RunningApi, fake_openrouter: FakeOpenRouter
) -> None:
    session = await create_session(api.client)
    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=2)
    posted = asyncio.create_task(
        api.client.post(
            "/api/chat/session",
            json={"sessionId": session["id"], "message": "A long question", "stream": True},
        )
    )
    await until(lambda: fake_openrouter.requests, what="the model asked")
    lock = session_key(session["id"], ":lock")
    await api.services.redis.set(lock, "a-turn-of-another-replica", px=30_000)  # lapsed
    gate.set()
    response = await posted

    events = sse_events(response)
    assert [name for name, _ in events][-1] == "error"
    assert "".join(data["text"] for name, data in events if name == "delta") == (
        "echo: A long question"
    )
    assert events[-1][1]["error"]["code"] == "turn_lock_lost"
    stored = await all_messages(api.client, session["id"])
    assert [(m["role"], m["content"]) for m in stored["messages"]] == [("user", "A long question")]
    await api.services.redis.delete(lock)
    plain = await api.client.post(
        "/api/chat/session", json={"sessionId": session["id"], "message": "again"}
    )
    assert plain.status_code == 200, plain.text


async def test_an_answer_past_turn_timeout_ends_with_a_turn_timeout_event_keeping_the_question(
    serve_api: ServeApi, fake_openrouter: FakeOpenRouter
) -> None:
    api = await serve_api(turn_timeout=0.5)
    session = await create_session(api.client)
    fake_openrouter.keep_alive_forever(after_deltas=1)

    response = await api.client.post(
        "/api/chat/session",
        json={"sessionId": session["id"], "message": "A long question", "stream": True},
    )

    assert response.status_code == 200, response.text
    events = sse_events(response)
    assert [name for name, _ in events] == ["delta", "error"]
    assert events[-1][1]["error"]["code"] == "turn_timeout"
    assert_nothing_leaks(response.text)
    fake_openrouter.keep_alive_forever(after_deltas=1)
    plain = await api.client.post(
        "/api/chat/session", json={"sessionId": session["id"], "message": "Another"}
    )
    assert_error(plain, 504, "turn_timeout")
    stored = await all_messages(api.client, session["id"])
    assert [(m["role"], m["content"]) for m in stored["messages"]] == [
        ("user", "A long question"),
        ("user", "Another"),
    ]  # each question kept for a retry, nothing of the answers, no lock left
    answered = await api.client.post(
        "/api/chat/session", json={"sessionId": session["id"], "message": "Quick"}
    )
    assert answered.json()["reply"]["content"] == "echo: Quick"


async def test_an_empty_answer_is_a_502_model_empty_answer_and_an_error_event_storing_nothing(
    api: RunningApi, fake_openrouter: FakeOpenRouter
) -> None:
    session = await create_session(api.client)
    fake_openrouter.empty_answer(times=2)  # `data: [DONE]` with no delta, twice

    plain = await api.client.post(
        "/api/chat/session", json={"sessionId": session["id"], "message": "Say nothing"}
    )
    streamed = await api.client.post(
        "/api/chat/session",
        json={"sessionId": session["id"], "message": "Again", "stream": True},
    )

    assert_error(plain, 502, "model_empty_answer")
    assert streamed.status_code == 200, streamed.text
    events = sse_events(streamed)
    assert [name for name, _ in events] == ["error"]
    assert events[0][1]["error"]["code"] == "model_empty_answer"
    assert events[0][1]["error"]["message"]
    stored = await all_messages(api.client, session["id"])
    assert [(m["role"], m["content"]) for m in stored["messages"]] == [
        ("user", "Say nothing"),
        ("user", "Again"),
    ]  # both questions kept for /retry; no empty answer between them
    assert len(fake_openrouter.requests) == 2  # one each: never retried


async def test_a_model_failure_before_any_text_of_a_stream_is_an_error_event(
    api: RunningApi, fake_openrouter: FakeOpenRouter
) -> None:
    session = await create_session(api.client)
    fake_openrouter.reject(400)

    response = await api.client.post(
        "/api/chat/session",
        json={"sessionId": session["id"], "message": "Hello", "stream": True},
    )

    events = sse_events(response)
    assert [name for name, _ in events] == ["error"]
    assert events[0][1]["error"]["code"] == "model_rejected"
    assert_nothing_leaks(response.text)
    stored = await all_messages(api.client, session["id"])
    assert [m["role"] for m in stored["messages"]] == ["user"]


async def test_a_streamed_turn_on_an_unknown_session_is_a_plain_json_404(
    api: RunningApi, fake_openrouter: FakeOpenRouter
) -> None:
    response = await api.client.post(
        "/api/chat/session",
        json={"sessionId": UNKNOWN_SESSION, "message": "Hello", "stream": True},
    )

    assert_error(response, 404, "session_not_found")
    assert fake_openrouter.requests == []


async def leave_after_the_first_delta(api: RunningApi, session_id: str) -> None:
    """Start a streamed turn and close the connection once the first delta has arrived."""
    request = {"sessionId": session_id, "message": "Are you still there?", "stream": True}
    async with api.client.stream("POST", "/api/chat/session", json=request) as response:
        async for chunk in response.aiter_text():
            assert chunk.startswith("event: delta"), chunk
            break


async def poll_for_assistant_reply(api: RunningApi, session_id: str) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + POLL_WITHIN
    while True:
        page = await all_messages(api.client, session_id)
        if page["messages"] and page["messages"][-1]["role"] == "assistant":
            return page
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"no reply stored within {POLL_WITHIN:g} s: {page}")
        await asyncio.sleep(POLL_INTERVAL)


async def test_a_client_leaving_mid_stream_still_gets_its_reply_stored(
    api: RunningApi, fake_openrouter: FakeOpenRouter
) -> None:
    session = await create_session(api.client)
    fake_openrouter.stall(after_deltas=1, seconds=0.2)  # time for the client to leave

    await leave_after_the_first_delta(api, session["id"])

    page = await poll_for_assistant_reply(api, session["id"])
    assert [(m["role"], m["content"]) for m in page["messages"]] == [
        ("user", "Are you still there?"),
        ("assistant", "echo: Are you still there?"),
    ]


async def test_a_client_leaving_mid_stream_is_not_logged_as_an_unhandled_error(
    api: RunningApi, fake_openrouter: FakeOpenRouter
) -> None:
    session = await create_session(api.client)
    fake_openrouter.stall(after_deltas=1, seconds=0.2)

    with capture_logs() as logs:
        await leave_after_the_first_delta(api, session["id"])
        await poll_for_assistant_reply(api, session["id"])
        await api.stop()  # waits for the handler to end

    events = [entry["event"] for entry in logs]
    assert "http.stream_client_gone" in events
    assert "http.unhandled" not in events


# --- paging ----------------------------------------------------------------------------------

PAGED_PATHS = ("/api/chat/session/{id}/history", "/api/sessions/{id}/messages")


@pytest.mark.parametrize("path", PAGED_PATHS)
@pytest.mark.parametrize("limit", [1, 100])
async def test_page_limits_from_1_to_100_are_accepted(
    api: RunningApi, path: str, limit: int
) -> None:
    session = await create_session(api.client)
    await add_messages(api.client, session["id"], 3)

    response = await api.client.get(path.format(id=session["id"]), params={"limit": limit})

    assert response.status_code == 200, response.text
    assert response.json()["total"] == 3
    assert [m["content"] for m in response.json()["messages"]] == ["m0", "m1", "m2"][:limit]


@pytest.mark.parametrize("path", PAGED_PATHS)
@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "-1"},
        {"limit": "abc"},
        {"limit": "1.5"},
        {"limit": ""},
        {"offset": "-1"},
        {"offset": "abc"},
    ],
)
async def test_page_parameters_outside_their_range_are_refused_with_422(
    api: RunningApi, path: str, query: dict[str, str]
) -> None:
    session = await create_session(api.client)

    response = await api.client.get(path.format(id=session["id"]), params=query)

    assert_error(response, 422, "validation_error")


@pytest.mark.parametrize("path", PAGED_PATHS)
async def test_an_offset_beyond_the_total_gives_an_empty_page_with_the_total(
    api: RunningApi, path: str
) -> None:
    session = await create_session(api.client)
    await add_messages(api.client, session["id"], 3)

    response = await api.client.get(path.format(id=session["id"]), params={"offset": 10})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["messages"], body["total"], body.get("summary")) == ([], 3, None)


@pytest.mark.parametrize("path", PAGED_PATHS)
@pytest.mark.parametrize(
    ("offset", "limit", "expected"),
    [(0, 5, range(5)), (5, 5, range(5, 10)), (25, 10, range(25, 30)), (29, 1, range(29, 30))],
)
async def test_offset_and_limit_select_a_window_oldest_first(
    serve_api: ServeApi, path: str, offset: int, limit: int, expected: range
) -> None:
    api = await serve_api(rate_limit_messages=0)  # more adds than one window allows
    session = await create_session(api.client)
    await add_messages(api.client, session["id"], 30)

    response = await api.client.get(
        path.format(id=session["id"]), params={"offset": offset, "limit": limit}
    )

    assert response.status_code == 200, response.text
    assert [m["content"] for m in response.json()["messages"]] == [f"m{n}" for n in expected]
    assert response.json()["total"] == 30


@pytest.mark.parametrize("path", PAGED_PATHS)
async def test_an_offset_too_large_for_redis_is_refused_with_422(
    api: RunningApi, path: str
) -> None:
    session = await create_session(api.client)

    response = await api.client.get(
        path.format(id=session["id"]), params={"offset": "99999999999999999999"}
    )

    assert_error(response, 422, "validation_error")


# --- errors ----------------------------------------------------------------------------------

BODY_PATHS = (
    "/api/sessions",
    "/api/chat/session/start",
    "/api/chat/session",
    f"/api/sessions/{UNKNOWN_SESSION}/messages",
)


@pytest.mark.parametrize("path", BODY_PATHS)
@pytest.mark.parametrize("body", [b"{", b"not json", b"\xff\xfe", b""])
async def test_a_malformed_json_body_is_refused_with_400(
    api: RunningApi, path: str, body: bytes
) -> None:
    response = await api.client.post(path, content=body, headers=JSON_HEADERS)

    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/sessions", {}),
        ("/api/sessions", {"userId": 7}),
        ("/api/sessions", {"userId": ""}),
        ("/api/sessions", {"userId": "ana", "title": 3}),
        ("/api/sessions", {"userId": "ana", "unknown": True}),
        ("/api/sessions", {"userId": "ana", "model": "not a model"}),
        ("/api/sessions", {"userId": ".."}),
        ("/api/sessions", {"userId": "a/b"}),
        ("/api/sessions", ["ana"]),
        ("/api/chat/session/start", {"userId": "ana"}),
        ("/api/chat/session/start", {"userId": "ana", "initialMessage": None}),
        ("/api/chat/session", {"message": "hi"}),
        ("/api/chat/session", {"sessionId": UNKNOWN_SESSION, "message": ["hi"]}),
        ("/api/chat/session", {"sessionId": UNKNOWN_SESSION, "message": "hi", "stream": 1}),
        (f"/api/sessions/{UNKNOWN_SESSION}/messages", {"role": "robot", "content": "hi"}),
        (f"/api/sessions/{UNKNOWN_SESSION}/messages", {"role": "user"}),
    ],
)
async def test_a_body_of_the_wrong_shape_is_refused_with_422(
    api: RunningApi, path: str, body: object
) -> None:
    response = await api.client.post(path, json=body)

    message = assert_error(response, 422, "validation_error")
    assert "\\x" not in message  # a rule in words, not a regular expression


async def test_a_stream_flag_that_is_not_a_boolean_is_refused_with_422(
    api: RunningApi,
) -> None:
    session = await create_session(api.client)

    response = await api.client.post(
        "/api/chat/session", json={"sessionId": session["id"], "message": "hi", "stream": "yes"}
    )

    assert_error(response, 422, "validation_error")


@pytest.mark.parametrize("path", BODY_PATHS)
async def test_a_body_over_64_kib_is_refused_with_413(
    serve_api: ServeApi, fake_openrouter: FakeOpenRouter, path: str
) -> None:
    # A chat turn's body may also hold 4 files of MAX_ATTACHMENT_BYTES in base64: 1 KiB here.
    api = await serve_api(max_attachment_bytes=1024)
    padding = "x" * (70 * 1024)
    body = {
        "userId": "ana",
        "title": padding,
        "initialMessage": padding,
        "sessionId": UNKNOWN_SESSION,
        "message": padding,
        "role": "user",
        "content": padding,
    }

    response = await api.client.post(path, json=body)

    assert_error(response, 413, "payload_too_large")
    assert fake_openrouter.requests == []
    assert (await api.client.get("/api/users/ana/sessions")).json() == {"sessions": []}


def json_of_size(size: int) -> bytes:
    """`{"userId": "ana"}` padded with blanks to exactly `size` bytes."""
    body = b'{"userId": "ana"}'
    return body[:-1] + b" " * (size - len(body)) + b"}"


async def test_a_body_of_exactly_64_kib_is_accepted_and_one_byte_more_refused(
    api: RunningApi,
) -> None:
    accepted = await api.client.post(
        "/api/sessions", content=json_of_size(64 * 1024), headers=JSON_HEADERS
    )
    refused = await api.client.post(
        "/api/sessions", content=json_of_size(64 * 1024 + 1), headers=JSON_HEADERS
    )

    assert accepted.status_code == 201, accepted.text
    assert_error(refused, 413, "payload_too_large")


SESSION_SCOPED = [
    ("GET", "/api/sessions/{id}", None),
    ("DELETE", "/api/sessions/{id}", None),
    ("GET", "/api/chat/session/{id}/history", None),
    ("GET", "/api/sessions/{id}/messages", None),
    ("GET", "/api/sessions/{id}/export", None),
    ("POST", "/api/sessions/{id}/messages", {"role": "user", "content": "sneaky"}),
    ("POST", "/api/chat/session", {"sessionId": "{id}", "message": "sneaky"}),
    ("POST", "/api/chat/session", {"sessionId": "{id}", "message": "sneaky", "stream": True}),
    ("POST", "/api/sessions/{id}/stop", None),
]


def session_request(
    method: str, path: str, body: dict[str, Any] | None, session_id: str
) -> dict[str, Any]:
    """Keyword arguments of `client.request` for one SESSION_SCOPED call on `session_id`."""
    request: dict[str, Any] = {"method": method, "url": path.format(id=session_id)}
    if body is not None:
        request["json"] = {k: session_id if v == "{id}" else v for k, v in body.items()}
    return request


async def test_an_unknown_session_is_404_session_not_found(
    api: RunningApi, fake_openrouter: FakeOpenRouter
) -> None:
    for method, path, body in SESSION_SCOPED:
        request = session_request(method, path, body, UNKNOWN_SESSION)
        assert_error(await api.client.request(**request), 404, "session_not_found")
    assert fake_openrouter.requests == []


@pytest.mark.parametrize(
    "session_id",
    ["nope", "0123456789ABCDEF0123456789ABCDEF", "a" * 31, "a" * 33, "%2e%2e", "-"],
)
async def test_a_malformed_session_id_is_404(
    api: RunningApi, fake_openrouter: FakeOpenRouter, session_id: str
) -> None:
    for method, path, body in SESSION_SCOPED:
        request = session_request(method, path, body, session_id)
        response = await api.client.request(**request)
        # In a path the router refuses it (not_found); in a body the store does.
        assert_error(response, 404, {"not_found", "session_not_found"})
    assert fake_openrouter.requests == []


async def test_creating_a_session_past_the_limit_is_refused_with_409_naming_the_limit(
    serve_api: ServeApi, fake_openrouter: FakeOpenRouter
) -> None:
    api = await serve_api(max_sessions_per_user=2)
    first = await create_session(api.client)
    await create_session(api.client)

    refused = await api.client.post("/api/sessions", json={"userId": "ana"})
    refused_start = await api.client.post(
        "/api/chat/session/start", json={"userId": "ana", "initialMessage": "Hi"}
    )

    assert "2" in assert_error(refused, 409, "session_limit_reached")
    assert "2" in assert_error(refused_start, 409, "session_limit_reached")
    assert fake_openrouter.requests == []
    assert len((await api.client.get("/api/users/ana/sessions")).json()["sessions"]) == 2
    await create_session(api.client, "bob")  # the limit is per user
    assert (await api.client.delete(f"/api/sessions/{first['id']}")).status_code == 204
    await create_session(api.client)  # a freed slot can be used again


async def test_a_message_at_the_length_limit_is_accepted_and_one_longer_is_refused(
    serve_api: ServeApi, fake_openrouter: FakeOpenRouter
) -> None:
    api = await serve_api(max_message_length=50)
    session = await create_session(api.client)
    sid = session["id"]

    at_limit = await api.client.post(
        "/api/chat/session", json={"sessionId": sid, "message": "a" * 50}
    )
    assert at_limit.status_code == 200, at_limit.text
    stored = await api.client.post(
        f"/api/sessions/{sid}/messages", json={"role": "user", "content": "b" * 50}
    )
    assert stored.status_code == 201, stored.text
    requests_before = len(fake_openrouter.requests)

    too_long = [
        await api.client.post("/api/chat/session", json={"sessionId": sid, "message": "c" * 51}),
        await api.client.post(
            "/api/chat/session", json={"sessionId": sid, "message": "c" * 51, "stream": True}
        ),
        await api.client.post(
            f"/api/sessions/{sid}/messages", json={"role": "user", "content": "c" * 51}
        ),
        await api.client.post(
            f"/api/sessions/{sid}/messages", json={"role": "system", "content": "c" * 51}
        ),
        await api.client.post(
            "/api/chat/session/start", json={"userId": "bob", "initialMessage": "c" * 51}
        ),
    ]

    for response in too_long:
        message = assert_error(response, 422, "message_too_long")
        assert "50" in message
        assert "51" in message
    assert len(fake_openrouter.requests) == requests_before
    page = await all_messages(api.client, sid)
    assert page["total"] == 3
    assert all(not m["content"].startswith("c") for m in page["messages"])
    assert (await api.client.get("/api/users/bob/sessions")).json() == {"sessions": []}


async def test_an_assistant_message_longer_than_the_limit_may_be_imported(
    serve_api: ServeApi,
) -> None:
    api = await serve_api(max_message_length=50)
    session = await create_session(api.client)

    response = await api.client.post(
        f"/api/sessions/{session['id']}/messages", json={"role": "assistant", "content": "d" * 51}
    )

    assert response.status_code == 201, response.text


@pytest.mark.parametrize("blank", ["", "   ", "\n\t"])
async def test_an_empty_message_is_refused_with_422_and_nothing_is_stored(
    api: RunningApi, fake_openrouter: FakeOpenRouter, blank: str
) -> None:
    session = await create_session(api.client)
    sid = session["id"]

    responses = [
        await api.client.post("/api/chat/session", json={"sessionId": sid, "message": blank}),
        await api.client.post(
            f"/api/sessions/{sid}/messages", json={"role": "user", "content": blank}
        ),
        await api.client.post(
            "/api/chat/session/start", json={"userId": "bob", "initialMessage": blank}
        ),
    ]

    for response in responses:
        assert_error(response, 422, {"empty_message", "validation_error"})
    assert fake_openrouter.requests == []
    assert (await all_messages(api.client, sid))["total"] == 0
    assert (await api.client.get("/api/users/bob/sessions")).json() == {"sessions": []}


async def test_a_rate_limited_model_answers_429_with_retry_after(
    api: RunningApi, fake_openrouter: FakeOpenRouter
) -> None:
    session = await create_session(api.client)
    fake_openrouter.rate_limit(retry_after=120)

    response = await api.client.post(
        "/api/chat/session", json={"sessionId": session["id"], "message": "Hello"}
    )

    assert_error(response, 429, "model_rate_limited")
    assert response.headers["Retry-After"] == "120"
    assert len(fake_openrouter.requests) == 1  # a wait beyond the client's cap is not retried


async def test_a_model_rejecting_the_request_answers_502_model_rejected(
    api: RunningApi, fake_openrouter: FakeOpenRouter
) -> None:
    session = await create_session(api.client)
    fake_openrouter.reject(400)

    response = await api.client.post(
        "/api/chat/session", json={"sessionId": session["id"], "message": "Hello"}
    )

    assert_error(response, 502, "model_rejected")
    stored = await all_messages(api.client, session["id"])
    assert [m["role"] for m in stored["messages"]] == ["user"]  # kept for a retry


@pytest.mark.parametrize("path", ["/api/nothing", "/nothing", "/api/sessions/", "/api"])
async def test_an_unknown_path_is_a_json_404(api: RunningApi, path: str) -> None:
    response = await api.client.get(path)

    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", f"/api/sessions/{UNKNOWN_SESSION}", {"GET", "DELETE"}),
        ("GET", "/api/sessions", {"POST"}),
        ("GET", "/api/chat/session", {"POST"}),
        ("DELETE", "/api/chat/session/start", {"POST"}),
        ("POST", "/health", {"GET"}),
        ("POST", "/api/openapi.json", {"GET"}),
        ("PATCH", f"/api/sessions/{UNKNOWN_SESSION}/messages", {"GET", "POST"}),
    ],
)
async def test_a_wrong_method_is_a_json_405_with_allow(
    api: RunningApi, method: str, path: str, allowed: set[str]
) -> None:
    response = await api.client.request(method, path)

    assert_error(response, 405, "method_not_allowed")
    assert {m.strip() for m in response.headers["Allow"].split(",")} >= allowed


@pytest.mark.parametrize("method", ["DELETE", "POST", "PUT"])
async def test_an_open_path_with_another_method_is_refused_not_served(
    serve_api: ServeApi, method: str
) -> None:
    api = await serve_api(api_token=API_TOKEN)

    response = await api.client.request(method, "/api/sessions/health")

    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"].split(",")


async def test_serving_api_requests_raises_no_request_key_warning(api: RunningApi) -> None:
    """A str request key warns on its first use in a process: a 500 under filterwarnings=error."""
    # aiohttp warns once per str key per process: forget the keys it has seen, for this test.
    seen: set[str] = getattr(web.BaseRequest, "_seen_str_keys", set())
    saved = set(seen)
    seen.clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            session = await create_session(api.client)
            for stream in (False, True):
                turn = {"sessionId": session["id"], "message": "hi", "stream": stream}
                response = await api.client.post("/api/chat/session", json=turn)
                assert response.status_code == 200, response.text
            await all_messages(api.client, session["id"])
    finally:
        seen.update(saved)

    assert [str(w.message) for w in caught if issubclass(w.category, NotAppKeyWarning)] == []


# --- authentication --------------------------------------------------------------------------


@pytest.fixture
async def secured_api(serve_api: ServeApi) -> RunningApi:
    """The API with both API_TOKEN and JWT_SECRET set."""
    return await serve_api(api_token=API_TOKEN, jwt_secret=JWT_SECRET)


PROTECTED = [
    ("POST", "/api/sessions", {"userId": "ana"}),
    ("GET", "/api/users/ana/sessions", None),
    ("GET", "/api/users/ana/usage", None),
    ("POST", "/api/chat/session/start", {"userId": "ana", "initialMessage": "Hi"}),
    *SESSION_SCOPED,
]


def protected_requests(session_id: str) -> Iterator[dict[str, Any]]:
    for method, path, body in PROTECTED:
        yield session_request(method, path, body, session_id)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {API_TOKEN}"},
        {"Authorization": API_TOKEN},
    ],
)
async def test_without_a_bearer_token_the_api_answers_401_with_www_authenticate(
    secured_api: RunningApi, fake_openrouter: FakeOpenRouter, headers: dict[str, str]
) -> None:
    session = await create_session(secured_api.client, headers=bearer(API_TOKEN))

    for request in protected_requests(session["id"]):
        response = await secured_api.client.request(**request, headers=headers)
        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert fake_openrouter.requests == []


def signed_jwt(claims: dict[str, Any], algorithm: str = "HS256") -> dict[str, str]:
    with warnings.catch_warnings():  # a short key for HS512 is the point of that case
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return bearer(jwt.encode(claims, JWT_SECRET, algorithm=algorithm))


def in_ten_minutes() -> int:
    return int(time.time()) + 600


INVALID_TOKENS: dict[str, Callable[[], dict[str, str]]] = {
    "wrong-token": lambda: bearer("wrong-token"),
    "token-plus-one": lambda: bearer(API_TOKEN + "x"),
    "token-minus-one": lambda: bearer(API_TOKEN[:-1]),
    "expired-jwt": lambda: user_jwt("ana", expires_in=-60),
    "jwt-of-another-secret": lambda: user_jwt("ana", secret=OTHER_SECRET),
    "jwt-without-exp": lambda: user_jwt("ana", expires_in=None),
    "alg-none": lambda: unsigned_jwt("ana"),
    "jwt-without-sub": lambda: signed_jwt({"exp": in_ten_minutes()}),
    "jwt-with-empty-sub": lambda: signed_jwt({"sub": "", "exp": in_ten_minutes()}),
    "jwt-hs512": lambda: signed_jwt({"sub": "ana", "exp": in_ten_minutes()}, "HS512"),
    "jwt-sub-not-a-string": lambda: signed_jwt({"sub": 7, "exp": in_ten_minutes()}),
    "jwt-exp-not-a-number": lambda: signed_jwt({"sub": "ana", "exp": "tomorrow"}),
    "jwt-garbage": lambda: bearer("a.b.c"),
}


@pytest.mark.parametrize("token", INVALID_TOKENS)
async def test_an_invalid_token_is_refused_with_401(
    secured_api: RunningApi, fake_openrouter: FakeOpenRouter, token: str
) -> None:
    headers = INVALID_TOKENS[token]()
    session = await create_session(secured_api.client, headers=bearer(API_TOKEN))

    for request in protected_requests(session["id"]):
        response = await secured_api.client.request(**request, headers=headers)
        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert JWT_SECRET not in response.text
        assert API_TOKEN not in response.text
    assert fake_openrouter.requests == []
    untouched = await secured_api.client.get(
        f"/api/sessions/{session['id']}", headers=bearer(API_TOKEN)
    )
    assert untouched.json()["messageCount"] == 0


async def test_the_api_token_has_full_access_to_every_users_sessions(
    secured_api: RunningApi,
) -> None:
    client, service = secured_api.client, bearer(API_TOKEN)
    ana = await create_session(client, "ana", headers=service)
    bob = await create_session(client, "bob", headers=service)

    for user, session in (("ana", ana), ("bob", bob)):
        sid = session["id"]
        got = await client.get(f"/api/sessions/{sid}", headers=service)
        assert got.status_code == 200, got.text
        listing = await client.get(f"/api/users/{user}/sessions", headers=service)
        assert [s["id"] for s in listing.json()["sessions"]] == [sid]
        added = await client.post(
            f"/api/sessions/{sid}/messages",
            json={"role": "user", "content": "note"},
            headers=service,
        )
        assert added.status_code == 201, added.text
        turn = await client.post(
            "/api/chat/session", json={"sessionId": sid, "message": "hi"}, headers=service
        )
        assert turn.status_code == 200, turn.text
        for path in (f"/api/chat/session/{sid}/history", f"/api/sessions/{sid}/messages"):
            page = await client.get(path, headers=service)
            assert page.json()["total"] == 3
    started = await client.post(
        "/api/chat/session/start", json={"userId": "carol", "initialMessage": "Hi"}, headers=service
    )
    assert started.status_code == 201, started.text
    deleted = await client.delete(f"/api/sessions/{bob['id']}", headers=service)
    assert deleted.status_code == 204


async def test_a_users_jwt_reaches_that_users_own_sessions(secured_api: RunningApi) -> None:
    client, ana = secured_api.client, user_jwt("ana")

    started = await client.post(
        "/api/chat/session/start", json={"userId": "ana", "initialMessage": "Hi"}, headers=ana
    )
    assert started.status_code == 201, started.text
    session = await create_session(client, "ana", headers=ana)
    sid = session["id"]
    requests = [
        ("GET", f"/api/sessions/{sid}", None, 200),
        ("GET", "/api/users/ana/sessions", None, 200),
        ("POST", f"/api/sessions/{sid}/messages", {"role": "user", "content": "note"}, 201),
        ("POST", "/api/chat/session", {"sessionId": sid, "message": "Hello"}, 200),
        ("GET", f"/api/chat/session/{sid}/history", None, 200),
        ("GET", f"/api/sessions/{sid}/messages", None, 200),
        ("DELETE", f"/api/sessions/{sid}", None, 204),
    ]
    for method, path, body, status in requests:
        response = await client.request(method, path, json=body, headers=ana)
        assert response.status_code == status, (method, path, response.text)


async def test_a_users_jwt_never_reaches_another_users_session(
    secured_api: RunningApi, fake_openrouter: FakeOpenRouter
) -> None:
    client, service = secured_api.client, bearer(API_TOKEN)
    bob = await create_session(client, "bob", headers=service)
    secret_note = f"bob's secret {secrets.token_hex(4)}"
    added = await client.post(
        f"/api/sessions/{bob['id']}/messages",
        json={"role": "user", "content": secret_note},
        headers=service,
    )
    assert added.status_code == 201

    for method, path, body in SESSION_SCOPED:
        request = session_request(method, path, body, bob["id"])
        response = await client.request(**request, headers=user_jwt("ana"))
        assert_error(response, 404, "session_not_found")
        assert secret_note not in response.text
        assert "bob" not in response.text
    for path in ("/api/users/bob/sessions", f"/api/users/bob/sessions?x={bob['id']}"):
        listing = await client.get(path, headers=user_jwt("ana"))
        assert_error(listing, 403, "forbidden")
        assert bob["id"] not in listing.text

    assert fake_openrouter.requests == []
    after = await client.get(f"/api/sessions/{bob['id']}", headers=service)
    assert after.status_code == 200
    assert after.json()["messageCount"] == 1
    page = await all_messages(client, bob["id"], headers=service)
    assert [m["content"] for m in page["messages"]] == [secret_note]


async def test_a_users_jwt_may_not_list_or_create_for_another_user(
    secured_api: RunningApi, fake_openrouter: FakeOpenRouter
) -> None:
    client, ana = secured_api.client, user_jwt("ana")

    responses = [
        await client.get("/api/users/bob/sessions", headers=ana),
        await client.get("/api/users/bob/usage", headers=ana),
        await client.post("/api/sessions", json={"userId": "bob"}, headers=ana),
        await client.post(
            "/api/chat/session/start", json={"userId": "bob", "initialMessage": "Hi"}, headers=ana
        ),
    ]

    for response in responses:
        assert_error(response, 403, "forbidden")
    assert fake_openrouter.requests == []
    listing = await client.get("/api/users/bob/sessions", headers=bearer(API_TOKEN))
    assert listing.json() == {"sessions": []}


async def test_usage_is_the_users_own_reported_tokens_and_cost_for_their_jwt_or_the_service(
    serve_api: ServeApi, fake_openrouter: FakeOpenRouter
) -> None:
    api = await serve_api(api_token=API_TOKEN, jwt_secret=JWT_SECRET, daily_token_budget=10_000)
    client, ana = api.client, user_jwt("ana")
    started = await client.post(
        "/api/chat/session/start", json={"userId": "ana", "initialMessage": "Hello there"},
        headers=ana,
    )  # fmt: skip
    assert started.status_code == 201, started.text
    (reported,) = fake_openrouter.reported_usages

    own = await client.get("/api/users/ana/usage", headers=ana)
    assert own.status_code == 200, own.text
    body = own.json()
    today = {
        "promptTokens": reported["prompt_tokens"],
        "completionTokens": reported["completion_tokens"],
        "totalTokens": reported["total_tokens"],
        "cost": pytest.approx(reported["cost"], abs=1e-6),
    }
    assert body == {
        "today": today,
        "last30Days": today,
        "dailyBudget": 10_000,
        "budgetLeft": 10_000 - reported["total_tokens"],
    }
    by_service = await client.get("/api/users/ana/usage", headers=bearer(API_TOKEN))
    assert by_service.json() == own.json()
    assert_error(
        await client.get("/api/users/ana/usage", headers=user_jwt("bob")), 403, "forbidden"
    )
    nobody = (await client.get("/api/users/bob/usage", headers=user_jwt("bob"))).json()
    assert nobody["today"] == dict.fromkeys(USAGE_FIELDS, 0)
    assert nobody["budgetLeft"] == 10_000


async def test_without_a_daily_budget_usage_says_null_for_it(api: RunningApi) -> None:
    body = (await api.client.get("/api/users/ana/usage")).json()
    assert (body["dailyBudget"], body["budgetLeft"]) == (None, None)
    assert body["last30Days"] == dict.fromkeys(USAGE_FIELDS, 0)


async def test_a_jwt_alone_works_when_no_api_token_is_set(serve_api: ServeApi) -> None:
    api = await serve_api(jwt_secret=JWT_SECRET)

    created = await api.client.post(
        "/api/sessions", json={"userId": "ana"}, headers=user_jwt("ana")
    )
    anonymous = await api.client.post("/api/sessions", json={"userId": "ana"})

    assert created.status_code == 201, created.text
    assert_error(anonymous, 401, "unauthorized")


@pytest.mark.parametrize("path", ["/health", "/api/sessions/health", "/api/openapi.json"])
async def test_health_and_the_openapi_document_need_no_token(
    secured_api: RunningApi, path: str
) -> None:
    response = await secured_api.client.get(path)

    assert response.status_code == 200, response.text


async def test_the_openapi_document_of_a_secured_api_asks_for_a_bearer_token(
    secured_api: RunningApi,
) -> None:
    document = (await secured_api.client.get("/api/openapi.json")).json()

    assert document["security"] == [{"bearer": []}]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert API_TOKEN not in json.dumps(document)
    assert JWT_SECRET not in json.dumps(document)


# --- concurrency -----------------------------------------------------------------------------


async def test_concurrent_turns_on_one_session_never_interleave(api: RunningApi) -> None:
    session = await create_session(api.client)
    sent = [f"question {i}" for i in range(20)]

    responses = await asyncio.gather(
        *(
            api.client.post("/api/chat/session", json={"sessionId": session["id"], "message": m})
            for m in sent
        )
    )

    answered = []
    for message, response in zip(sent, responses, strict=True):
        if response.status_code == 200:
            assert response.json()["reply"]["content"] == f"echo: {message}"
            answered.append(message)
        else:
            assert_error(response, 409, "session_busy")
    assert answered
    page = await all_messages(api.client, session["id"])
    stored = [(m["role"], m["content"]) for m in page["messages"]]
    assert page["total"] == 2 * len(answered)
    assert [role for role, _ in stored] == ["user", "assistant"] * len(answered)
    for (_, question), (_, answer) in zip(stored[::2], stored[1::2], strict=True):
        assert answer == f"echo: {question}"
    assert sorted(question for _, question in stored[::2]) == sorted(answered)


async def test_concurrent_session_creation_stops_exactly_at_the_limit(
    serve_api: ServeApi,
) -> None:
    api = await serve_api(max_sessions_per_user=5)

    responses = await asyncio.gather(
        *(api.client.post("/api/sessions", json={"userId": "ana"}) for _ in range(20))
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 5 + [409] * 15
    for response in responses:
        if response.status_code == 409:
            assert_error(response, 409, "session_limit_reached")
    listing = await api.client.get("/api/users/ana/sessions")
    created = {r.json()["id"] for r in responses if r.status_code == 201}
    assert {s["id"] for s in listing.json()["sessions"]} == created


# --- Redis outage ----------------------------------------------------------------------------


async def test_while_redis_is_down_the_api_answers_503_and_recovers_once_it_is_back(
    serve_api: ServeApi, own_redis: RedisProcess
) -> None:
    api = await serve_api(redis_url=own_redis.url)
    session = await create_session(api.client)

    own_redis.kill()

    health = await poll_status(api.client, "/health", 503)
    assert health.json()["status"] == "unavailable"
    assert health.json()["redis"]["status"] == "down"
    assert_nothing_leaks(health.text)
    sessions_health = await api.client.get("/api/sessions/health")
    assert sessions_health.status_code == 503
    sid = session["id"]
    calls = [
        ("POST", "/api/sessions", {"userId": "ana"}),
        ("GET", f"/api/sessions/{sid}", None),
        ("GET", "/api/users/ana/sessions", None),
        ("GET", f"/api/sessions/{sid}/messages", None),
        ("POST", f"/api/sessions/{sid}/messages", {"role": "user", "content": "hi"}),
        ("POST", "/api/chat/session", {"sessionId": sid, "message": "hi"}),
        ("POST", "/api/chat/session/start", {"userId": "ana", "initialMessage": "hi"}),
    ]
    for method, path, body in calls:
        response = await api.client.request(method, path, json=body)
        assert_error(response, 503, "store_unavailable")

    await asyncio.to_thread(own_redis.start)

    await poll_status(api.client, "/health", 200)
    assert (await api.client.get("/api/sessions/health")).status_code == 200
    await create_session(api.client)
