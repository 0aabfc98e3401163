"""`python -m bots` while its Redis is SIGKILLed in the middle of many users' turns and restarted.

Redis persists as the shipped redis.conf says (AOF, `appendfsync everysec`). While it is down the
service answers 503 with a clear body, on every request, without hanging or crashing; once it is
back the service reconnects by itself within RECONNECT_BOUND_SECONDS (the issue's requirement,
the one wall-clock bound asserted here), and every turn acknowledged more than
AOF_WINDOW_SECONDS before the kill is stored, in a whole session (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from bots.terminal import plain
from core.errors import StoreUnavailable
from core.messages import describe
from tests.e2e.conftest import RunCli, StartService, child_env, poll_status, service_env
from tests.e2e.http_app import assert_error
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.redis_process import RedisProcess
from tests.shipped_redis_conf import durable_redis
from tests.stored_sessions import census
from tests.waiting import until

USERS = 20
TRAFFIC_SECONDS = 1.5
AOF_WINDOW_SECONDS = 1.0
RECONNECT_BOUND_SECONDS = 5.0
CLIENT_TIMEOUT_SECONDS = 10.0  # a request that takes longer fails the test: nothing may hang
UNAVAILABLE = str(StoreUnavailable())


@dataclass(frozen=True)
class Acknowledged:
    user_id: str
    text: str
    at: float  # time.monotonic() once the 200/201 arrived


@dataclass(frozen=True)
class Refusal:
    response: httpx.Response
    at: float


@pytest.fixture
def durable(tmp_path: Path) -> RedisProcess:
    """Started by the test; stopped after the service (fixtures tear down in reverse order)."""
    directory = tmp_path / "redis"
    directory.mkdir()
    return durable_redis(directory)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_SECONDS) as client:
        yield client


@pytest.fixture
async def served(
    durable: RedisProcess, fake_openrouter: FakeOpenRouter, start_service: StartService
) -> AsyncIterator[str]:
    """The service's base URL, on the durable Redis and the fake OpenRouter."""
    durable.start()
    env = service_env(
        REDIS_URL=durable.url,
        OPENROUTER_API_KEY=fake_openrouter.api_key,
        OPENROUTER_BASE_URL=fake_openrouter.base_url,
        RATE_LIMIT_MESSAGES="0",
        MAX_MESSAGES_PER_SESSION="10000",
    )
    service = await start_service(env)
    yield service.http_url
    assert service.process.returncode is None, service.output  # nothing crashed
    assert service.events("http.unhandled") == [], service.output
    durable.stop()


async def talk_until_refused(
    http: httpx.AsyncClient, base: str, user_id: str, acknowledged: list[Acknowledged]
) -> Refusal:
    """One user's turns over HTTP, back to back; returns the first answer that is not a reply."""
    session_id = ""
    for number in itertools.count(1):
        text = f"{user_id} says {number}"
        if session_id:
            body: dict[str, Any] = {"sessionId": session_id, "message": text}
            response = await http.post(f"{base}/api/chat/session", json=body)
        else:
            body = {"userId": user_id, "initialMessage": text}
            response = await http.post(f"{base}/api/chat/session/start", json=body)
        if response.status_code not in (200, 201):
            return Refusal(response, time.monotonic())
        session_id = response.json()["session"]["id"]
        acknowledged.append(Acknowledged(user_id, text, time.monotonic()))
    raise AssertionError("unreachable")


async def test_a_redis_crash_answers_503_then_reconnects_within_5_s_keeping_acknowledged_turns(
    served: str, durable: RedisProcess, http: httpx.AsyncClient
) -> None:
    acknowledged: list[Acknowledged] = []
    users = [f"api-user-{number}" for number in range(USERS)]
    loops = [
        asyncio.create_task(talk_until_refused(http, served, user, acknowledged)) for user in users
    ]
    # Traffic, so that some turns are older than the window (counted from the first one: on a
    # loaded machine the service may take a while to answer at all).
    await until(lambda: acknowledged, what="a first acknowledged turn")
    await asyncio.sleep(TRAFFIC_SECONDS)
    killed_at = time.monotonic()
    durable.kill()

    # Every turn in flight ends with a clear 503, none hangs (the client gives up after 10 s).
    refusals = await asyncio.gather(*loops)
    for refusal in refusals:
        assert assert_error(refusal.response, 503, "store_unavailable") == UNAVAILABLE
    slowest_refusal = max(refusal.at for refusal in refusals) - killed_at

    health = await poll_status(http, f"{served}/health", 503, within=CLIENT_TIMEOUT_SECONDS)
    assert health.json() == {
        "status": "unavailable",
        "redis": {"status": "down", "error": UNAVAILABLE},
    }
    outage_started = time.monotonic()
    start = {"userId": "new", "initialMessage": "hi"}
    streamed = {"sessionId": "0" * 32, "message": "hi", "stream": True}
    during = await asyncio.gather(
        http.get(f"{served}/api/sessions/health"),
        http.post(f"{served}/api/chat/session/start", json=start),
        http.post(f"{served}/api/chat/session", json=streamed),
        http.get(f"{served}/api/users/{users[0]}/sessions"),
    )
    outage_answer = time.monotonic() - outage_started
    assert during[0].status_code == 503
    for response in during[1:]:
        assert assert_error(response, 503, "store_unavailable") == UNAVAILABLE

    await asyncio.to_thread(durable.start)  # same port and directory: it loads its AOF
    returned_at = time.monotonic()
    await poll_status(http, f"{served}/health", 200, within=RECONNECT_BOUND_SECONDS)
    reconnected_after = time.monotonic() - returned_at

    client = aioredis.Redis.from_url(durable.url, decode_responses=True)
    try:
        found = await census(client)
    finally:
        await client.aclose()
    found.assert_whole()
    stored = {
        (session.user_id, question)
        for session in found.sessions.values()
        for (role, question), (_, answer) in itertools.pairwise(session.conversation)
        if role == "user" and answer == f"echo: {question}"
    }
    older = [turn for turn in acknowledged if turn.at < killed_at - AOF_WINDOW_SECONDS]
    recent = [turn for turn in acknowledged if turn.at >= killed_at - AOF_WINDOW_SECONDS]
    assert older, "no turn was acknowledged early enough to test anything"
    assert [turn for turn in older if (turn.user_id, turn.text) not in stored] == []
    lost = [turn for turn in recent if (turn.user_id, turn.text) not in stored]
    locked = sum(session.has_lock for session in found.sessions.values())
    print(
        f"\n[redis-outage] {len(acknowledged)} HTTP turns acknowledged by {USERS} users in "
        f"{TRAFFIC_SECONDS:g} s; {len(recent)} in the last {AOF_WINDOW_SECONDS:g} s, "
        f"{len(lost)} of them lost; in-flight turns answered 503 within "
        f"{slowest_refusal:.2f} s of the kill; 4 requests during the outage answered in "
        f"{outage_answer:.2f} s; /health 200 again {reconnected_after:.2f} s after Redis "
        f"returned; {locked} sessions locked by a turn the kill cut"
    )

    # Back to normal: what was stored is served, and new conversations go on.
    old = found.by_user()[users[0]][0]
    page = await http.get(f"{served}/api/sessions/{old.session_id}/messages?limit=100")
    assert page.status_code == 200, page.text
    assert page.json()["total"] == len(old.conversation)
    again = {"userId": "after", "initialMessage": "hello again"}
    started = await http.post(f"{served}/api/chat/session/start", json=again)
    assert started.status_code == 201, started.text
    follow_up = {"sessionId": started.json()["session"]["id"], "message": "still there?"}
    response = await http.post(f"{served}/api/chat/session", json=follow_up)
    assert response.status_code == 200, response.text
    assert response.json()["session"]["messageCount"] == 4


async def test_the_terminal_answers_temporarily_unavailable_while_redis_is_down(
    run_cli: RunCli, own_redis: RedisProcess, fake_openrouter: FakeOpenRouter
) -> None:
    own_redis.kill()
    env = child_env(
        REDIS_URL=own_redis.url,
        OPENROUTER_API_KEY=fake_openrouter.api_key,
        OPENROUTER_BASE_URL=fake_openrouter.base_url,
    )
    lines = "hello there\n/sessions\n/new Later\n"

    result = await run_cli("chat", "--user", "ana", env=env, stdin=lines)

    assert result.returncode == 0, result.output
    sentence = plain(describe(StoreUnavailable(), "en"))
    assert result.stdout.count(sentence) == 3, result.output
    assert "Traceback" not in result.output
