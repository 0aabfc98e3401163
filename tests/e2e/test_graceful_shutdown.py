"""SIGTERM, end to end (HTTP API, Telegram, Discord): `python -m bots` stops taking work, lets
running turns finish within SHUTDOWN_GRACE_SECONDS, interrupts what is still running then (the
question kept for /retry, no partial answer stored), and exits 0.

The listening socket closes at once (a load balancer moves on to another replica); requests on
connections already open are still served, and a new turn among them is refused with 503.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from core.messages import text
from tests.e2e.conftest import Service, StartService, service_env
from tests.e2e.discord_support import Person
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.fakes.telegram_server import DEFAULT_USER_ID, FakeTelegram
from tests.redis_process import RedisProcess
from tests.stored_sessions import census
from tests.waiting import until

LONG_STALL = 60.0  # seconds: an answer that is still running when any grace below ends
WAIT = 15.0
USER = "ana"
CHAT = DEFAULT_USER_ID  # a private chat's id is its user's


@dataclass
class EventStream:
    """An SSE response read as it arrives: (event, data) pairs."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=WAIT) as client:
        yield client


@pytest.fixture
async def kept() -> AsyncIterator[httpx.AsyncClient]:
    """A second client, whose idle connection stays open while `http`'s is busy streaming."""
    async with httpx.AsyncClient(timeout=WAIT) as client:
        yield client


@pytest.fixture
def start_api_service(
    redis_server: RedisProcess,
    redis_client: aioredis.Redis,  # an empty database for this test
    fake_openrouter: FakeOpenRouter,
    start_service: StartService,
) -> Callable[..., Any]:
    async def start(grace: float) -> Service:
        return await start_service(
            service_env(
                REDIS_URL=redis_server.url,
                OPENROUTER_API_KEY=fake_openrouter.api_key,
                OPENROUTER_BASE_URL=fake_openrouter.base_url,
                SHUTDOWN_GRACE_SECONDS=str(grace),
            )
        )

    return start


async def read_events(response: httpx.Response, into: EventStream) -> None:
    name = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            into.events.append((name, json.loads(line.removeprefix("data: "))))


async def exit_code(service: Service) -> int:
    """The exit code of a service already sent SIGTERM (a second signal could cut its last
    moments, once its handlers are gone)."""
    try:
        await asyncio.wait_for(service.process.wait(), WAIT)
    except TimeoutError:
        pytest.fail(f"still running {WAIT:g} s after SIGTERM:\n{service.output}")
    return await service.stop()  # it has exited: reads the rest of its output


async def new_session(http: httpx.AsyncClient, service: Service) -> str:
    response = await http.post(f"{service.local_url}/api/sessions", json={"userId": USER})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def stream_turn(
    http: httpx.AsyncClient, service: Service, session_id: str, said: str, into: EventStream
) -> int:
    body = {"sessionId": session_id, "message": said, "stream": True}
    async with http.stream("POST", f"{service.local_url}/api/chat/session", json=body) as response:
        await read_events(response, into)
        return response.status_code


async def stored(redis_client: aioredis.Redis, session_id: str) -> list[tuple[str, str]]:
    """The session's conversation straight from Redis, after checking it is whole and unlocked."""
    found = await census(redis_client)
    found.assert_whole()
    session = found.sessions[session_id]
    assert not session.has_lock
    return session.conversation


async def test_sigterm_lets_a_running_turn_finish_and_closes_the_listener_at_once(
    start_api_service: Callable[..., Any],
    http: httpx.AsyncClient,
    fake_openrouter: FakeOpenRouter,
):
    service = await start_api_service(grace=30)
    session_id = await new_session(http, service)
    fake_openrouter.stall(after_deltas=1, seconds=2.0)
    stream = EventStream()
    turn = asyncio.create_task(stream_turn(http, service, session_id, "finish me", stream))
    await until(lambda: stream.names() == ["delta"], what="the first delta", within=WAIT)

    service.process.terminate()
    stopping = await service.wait_for_event("service.stopping")
    assert stopping["running_turns"] == 1
    with pytest.raises(httpx.ConnectError):  # a fresh connection: nobody listens any more
        async with httpx.AsyncClient() as fresh:
            await fresh.get(f"{service.local_url}/health")

    assert await turn == 200
    assert stream.names()[-1] == "done"
    assert stream.events[-1][1]["reply"]["content"] == "echo: finish me"
    assert await exit_code(service) == 0
    assert service.events("service.stopped")[0]["interrupted_turns"] == 0


async def test_a_turn_still_running_after_the_grace_is_interrupted_and_only_the_question_kept(
    start_api_service: Callable[..., Any],
    http: httpx.AsyncClient,
    redis_client: aioredis.Redis,
    fake_openrouter: FakeOpenRouter,
):
    service = await start_api_service(grace=0.5)
    session_id = await new_session(http, service)
    fake_openrouter.stall(after_deltas=1, seconds=LONG_STALL)
    stream = EventStream()
    turn = asyncio.create_task(stream_turn(http, service, session_id, "too slow", stream))
    await until(lambda: stream.names() == ["delta"], what="the first delta", within=WAIT)

    assert await service.stop() == 0  # long before the model's 60 s stall ends

    assert await turn == 200
    assert stream.names() == ["delta", "error"]
    assert stream.events[-1][1]["error"]["code"] == "turn_interrupted"
    assert await stored(redis_client, session_id) == [("user", "too slow")]
    assert service.events("service.stopped")[0]["interrupted_turns"] == 1


async def test_a_new_turn_on_an_open_connection_during_the_stop_is_refused_with_503(
    start_api_service: Callable[..., Any],
    http: httpx.AsyncClient,
    kept: httpx.AsyncClient,
    redis_client: aioredis.Redis,
    fake_openrouter: FakeOpenRouter,
):
    service = await start_api_service(grace=30)
    busy_session = await new_session(http, service)
    session_id = await new_session(kept, service)  # opens the connection `kept` keeps alive
    fake_openrouter.stall(after_deltas=1, seconds=3.0)
    stream = EventStream()
    turn = asyncio.create_task(stream_turn(http, service, busy_session, "keep me busy", stream))
    await until(lambda: stream.names() == ["delta"], what="the first delta", within=WAIT)

    service.process.terminate()
    await service.wait_for_event("service.stopping")
    body = {"sessionId": session_id, "message": "one more", "stream": False}
    refused = await kept.post(f"{service.local_url}/api/chat/session", json=body)

    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "service_stopping"
    assert await stored(redis_client, session_id) == []
    assert await turn == 200
    assert stream.names()[-1] == "done"
    assert await exit_code(service) == 0


async def test_telegram_shows_an_interrupted_answer_as_incomplete_with_a_retry_hint(
    start_telegram_service: Callable[..., Any],
    fake_telegram: FakeTelegram,
    fake_openrouter: FakeOpenRouter,
):
    service = await start_telegram_service(SHUTDOWN_GRACE_SECONDS="0.5", TELEGRAM_EDIT_INTERVAL="0")
    fake_openrouter.reply_text = "the first part, and then a long pause"
    fake_openrouter.stall(after_deltas=1, seconds=LONG_STALL)
    fake_telegram.user_says("tell me slowly")
    # A private chat: the first part shows as a draft, not yet as a message.
    await fake_telegram.wait_for(lambda: fake_telegram.drafts(CHAT), what="a draft")

    assert await service.stop() == 0

    [answer] = fake_telegram.messages(CHAT)
    notice = text("en", "turn_interrupted")
    shown = answer.visible_text
    assert shown.startswith("the first"), shown
    assert shown.endswith(notice), shown


async def test_telegram_webhook_answers_503_while_stopping_so_telegram_delivers_again(
    start_telegram_service: Callable[..., Any],
    fake_telegram: FakeTelegram,
    fake_openrouter: FakeOpenRouter,
    http: httpx.AsyncClient,
):
    secret = "webhook-Secret_0123456789"
    service = await start_telegram_service(
        SHUTDOWN_GRACE_SECONDS="30",
        TELEGRAM_WEBHOOK_URL="https://bot.example.com/telegram/webhook",
        TELEGRAM_WEBHOOK_SECRET=secret,
    )
    webhook = f"{service.local_url}/telegram/webhook"
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret}
    fake_openrouter.stall(after_deltas=1, seconds=3.0)
    taken = await http.post(webhook, json=fake_telegram.user_says("keep it busy"), headers=headers)
    assert taken.status_code == 200
    await fake_telegram.wait_for(lambda: fake_telegram.drafts(CHAT), what="the answer under way")

    service.process.terminate()
    await service.wait_for_event("service.stopping")
    later = await http.post(webhook, json=fake_telegram.user_says("later"), headers=headers)

    assert later.status_code == 503
    assert await exit_code(service) == 0
    shown = [message.visible_text for message in fake_telegram.messages(CHAT)]
    assert shown == ["echo: keep it busy"]


async def test_discord_shows_an_interrupted_answer_as_incomplete_before_disconnecting(
    start_discord_service: Callable[..., Any],
    fake_discord: FakeDiscord,
    fake_openrouter: FakeOpenRouter,
):
    service = await start_discord_service(SHUTDOWN_GRACE_SECONDS="0.5", DISCORD_EDIT_INTERVAL="0")
    alice = Person(fake_discord)
    fake_openrouter.reply_text = "the first part, and then a long pause"
    fake_openrouter.stall(after_deltas=1, seconds=LONG_STALL)
    alice.posts("tell me slowly")
    await until(lambda: fake_discord.messages(alice.where), what="the first part", within=WAIT)

    assert await service.stop() == 0

    (answer,) = fake_discord.messages(alice.where)
    assert answer.content.startswith("the first"), answer.content
    assert answer.content.endswith(text("en", "turn_interrupted")), answer.content
