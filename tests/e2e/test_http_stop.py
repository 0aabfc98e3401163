"""POST /api/sessions/{sessionId}/stop over real HTTP: an answer streaming from one replica is
stopped from another within a second, its SSE stream ends with a `stopped` event, and what it
showed is stored marked stopped. Two apps in this process on one Redis stand for two replicas
(each has its own core: nothing is shared but Redis)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import jwt
import pytest

from tests.e2e.http_app import (
    RunningApi,
    ServeApi,
    all_messages,
    assert_error,
    assert_message_shape,
    assert_session_shape,
    bearer,
    create_session,
)
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.waiting import until

STOP_WITHIN_SECONDS = 1.0  # the promise; the replicas poll every 0.25 s
JWT_SECRET = "jwt-secret-of-the-http-stop-tests-0123456789"


@pytest.fixture
async def replicas(serve_api: ServeApi) -> tuple[RunningApi, RunningApi]:
    return await serve_api(), await serve_api()


def has_read_a_delta(api: RunningApi) -> bool:
    """Whether a turn running in `api` has text already (a non-streamed answer shows none)."""
    return any(turn._parts for turn in api.services.chat._running.now())


class SseReader:
    """An SSE response read as it arrives: its events, and when it ended."""

    def __init__(self, api: RunningApi, body: dict[str, Any]) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.ended_at: float | None = None
        self.task = asyncio.create_task(self._read(api, body))

    def deltas(self) -> str:
        return "".join(data["text"] for name, data in self.events if name == "delta")

    async def _read(self, api: RunningApi, body: dict[str, Any]) -> None:
        async with api.client.stream("POST", "/api/chat/session", json=body) as response:
            assert response.status_code == 200
            fields: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line:
                    name, _, value = line.partition(": ")
                    fields[name] = value
                elif fields:
                    self.events.append((fields["event"], json.loads(fields["data"])))
                    fields = {}
        self.ended_at = time.monotonic()


async def test_a_stream_stopped_from_another_replica_ends_with_a_stopped_event_within_a_second(
    replicas: tuple[RunningApi, RunningApi], fake_openrouter: FakeOpenRouter
) -> None:
    streaming, other = replicas
    session = await create_session(streaming.client)
    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=2)
    body = {"sessionId": session["id"], "message": "Tell me everything", "stream": True}
    reader = SseReader(streaming, body)
    await until(lambda: len(reader.events) == 2, what="two delta events")

    asked_at = time.monotonic()
    response = await other.client.post(f"/api/sessions/{session['id']}/stop")
    assert response.status_code == 200, response.text
    assert response.json() == {"stopped": True}
    await asyncio.wait_for(reader.task, 10)
    gate.set()

    assert reader.ended_at is not None
    assert reader.ended_at - asked_at < STOP_WITHIN_SECONDS
    stopped = reader.events[-1][1]
    assert [n for n, _ in reader.events] == ["delta", "delta", "stopped"]
    assert set(stopped) == {"session", "reply"}
    assert_session_shape(stopped["session"])
    assert_message_shape(stopped["reply"])
    assert stopped["reply"]["stopped"] is True
    assert stopped["reply"]["content"] == reader.deltas()
    assert stopped["reply"]["usage"] is None
    stored = await all_messages(other.client, session["id"])
    assert [(m["role"], m["content"], m["stopped"]) for m in stored["messages"]] == [
        ("user", "Tell me everything", False),
        ("assistant", reader.deltas(), True),
    ]


async def test_a_stop_before_the_first_word_ends_the_stream_with_no_reply_and_keeps_the_question(
    replicas: tuple[RunningApi, RunningApi], fake_openrouter: FakeOpenRouter
) -> None:
    streaming, other = replicas
    session = await create_session(streaming.client)
    gate = asyncio.Event()
    fake_openrouter.hold(gate)
    body = {"sessionId": session["id"], "message": "Anyone?", "stream": True}
    reader = SseReader(streaming, body)
    await until(lambda: fake_openrouter.requests, what="the model's request")

    response = await other.client.post(f"/api/sessions/{session['id']}/stop")
    assert response.json() == {"stopped": True}
    await asyncio.wait_for(reader.task, 10)
    gate.set()

    assert [n for n, _ in reader.events] == ["stopped"]
    assert reader.events[0][1]["reply"] is None
    stored = await all_messages(other.client, session["id"])
    assert [(m["role"], m["content"]) for m in stored["messages"]] == [("user", "Anyone?")]


async def test_a_turn_without_streaming_answers_200_with_what_was_written_marked_stopped(
    replicas: tuple[RunningApi, RunningApi], fake_openrouter: FakeOpenRouter
) -> None:
    streaming, other = replicas
    session = await create_session(streaming.client)
    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=1)
    body = {"sessionId": session["id"], "message": "Be long"}
    turn = asyncio.create_task(streaming.client.post("/api/chat/session", json=body))
    await until(lambda: has_read_a_delta(streaming), what="the first delta read by the turn")

    assert (await other.client.post(f"/api/sessions/{session['id']}/stop")).json() == {
        "stopped": True
    }
    response = await asyncio.wait_for(turn, 10)
    gate.set()

    assert response.status_code == 200, response.text
    reply = response.json()["reply"]
    assert reply["stopped"] is True
    assert reply["content"]
    assert response.json()["session"]["messageCount"] == 2


async def test_a_turn_stopped_before_a_word_without_streaming_is_409_turn_stopped(
    replicas: tuple[RunningApi, RunningApi], fake_openrouter: FakeOpenRouter
) -> None:
    streaming, other = replicas
    session = await create_session(streaming.client)
    gate = asyncio.Event()
    fake_openrouter.hold(gate)
    body = {"sessionId": session["id"], "message": "Be long"}
    turn = asyncio.create_task(streaming.client.post("/api/chat/session", json=body))
    await until(lambda: fake_openrouter.requests, what="the model's request")

    await other.client.post(f"/api/sessions/{session['id']}/stop")
    response = await asyncio.wait_for(turn, 10)
    gate.set()
    assert_error(response, 409, "turn_stopped")


async def test_with_nothing_running_a_stop_answers_false(
    replicas: tuple[RunningApi, RunningApi],
) -> None:
    api, _ = replicas
    session = await create_session(api.client)
    response = await api.client.post(f"/api/sessions/{session['id']}/stop")
    assert response.status_code == 200, response.text
    assert response.json() == {"stopped": False}


async def test_a_stop_on_an_unknown_session_is_404(replicas: tuple[RunningApi, RunningApi]) -> None:
    api, _ = replicas
    response = await api.client.post("/api/sessions/0123456789abcdef0123456789abcdef/stop")
    assert_error(response, 404, "session_not_found")


async def test_a_user_stops_their_own_answer_never_anothers(
    serve_api: ServeApi, fake_openrouter: FakeOpenRouter
) -> None:
    api = await serve_api(jwt_secret=JWT_SECRET)

    def token(user: str) -> dict[str, str]:
        claims = {"sub": user, "exp": int(time.time()) + 600}
        return bearer(jwt.encode(claims, JWT_SECRET, algorithm="HS256"))

    session = await create_session(api.client, "ana", headers=token("ana"))
    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=1)
    body = {"sessionId": session["id"], "message": "Mine"}
    turn = asyncio.create_task(
        api.client.post("/api/chat/session", json=body, headers=token("ana"))
    )
    await until(lambda: fake_openrouter.requests, what="the model's request")

    refused = await api.client.post(f"/api/sessions/{session['id']}/stop", headers=token("bob"))
    assert_error(refused, 404, "session_not_found")
    gate.set()
    response = await asyncio.wait_for(turn, 10)
    assert response.status_code == 200, response.text
    assert response.json()["reply"] == {**response.json()["reply"], "stopped": False}
    assert response.json()["reply"]["content"] == "echo: Mine"
