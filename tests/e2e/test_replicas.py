"""Two replicas on one Redis, end to end: two `python -m bots` processes serve the same user at
once, and the user sees one service.

Proven here, each against both processes and the test Redis:
- one session's turns never mix, whichever replica takes them: the history alternates question
  and answer, and every context sent to the model is a prefix of that history;
- the per-user limits (turns per window, sessions at once) are counted once for both replicas;
- a replica SIGKILLed mid-turn leaves its session locked only until the lock expires; then the
  other replica answers, and only whole answers are stored;
- in Telegram webhook mode, updates of one chat posted to both replicas are all answered, each
  by its own answer, in one well-ordered history.

The model is the fake OpenRouter (it echoes the last user message), made slow where turns must
overlap. Every wait is bounded: the service's own 60 s lock wait, or a poll that fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from core.messages import ENGLISH, text
from core.sessions.keys import session_key, user_turns_key
from tests.e2e.conftest import Service, StartService, service_env
from tests.e2e.http_app import assert_error, create_session
from tests.fakes.openrouter_server import FakeOpenRouter, RecordedRequest
from tests.fakes.telegram_server import DEFAULT_GROUP_ID, DEFAULT_USER_ID, FakeTelegram
from tests.redis_process import RedisProcess
from tests.stored_sessions import census

API_TOKEN = "replica-token-of-the-e2e-tests"
USER = "ana"
TURN_TIMEOUT = 90.0  # a turn may wait up to 60 s for its session's lock (lock_wait_seconds)
ANSWER_WITHIN = 60.0
WEBHOOK_URL = "https://bot.example.test/tg/hook"
WEBHOOK_PATH = "/tg/hook"
WEBHOOK_SECRET = "replicas-webhook-Secret_0123"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

Conversation = list[tuple[str, str]]  # (role, content), oldest first


@dataclass
class Replica:
    """One running `python -m bots` and an HTTP client bound to it with the service token."""

    service: Service
    client: httpx.AsyncClient


StartReplicas = Callable[..., Awaitable[tuple[Replica, Replica]]]


@pytest.fixture
async def start_replicas(
    redis_server: RedisProcess,
    redis_client: aioredis.Redis,  # an empty database for this test
    fake_openrouter: FakeOpenRouter,
    start_service: StartService,  # last, so the services stop before the fakes close
) -> AsyncIterator[StartReplicas]:
    """Start two replicas with the same settings (keywords are extra variables): A and B."""
    async with contextlib.AsyncExitStack() as clients:

        async def start(**variables: str) -> tuple[Replica, Replica]:
            env = service_env(
                REDIS_URL=redis_server.url,
                OPENROUTER_API_KEY=fake_openrouter.api_key,
                OPENROUTER_BASE_URL=fake_openrouter.base_url,
                API_TOKEN=API_TOKEN,
                **variables,
            )
            a, b = await asyncio.gather(start_service(env), start_service(env))
            assert a.local_url != b.local_url
            replicas = []
            for service in (a, b):
                client = httpx.AsyncClient(
                    base_url=service.local_url,
                    headers={"Authorization": f"Bearer {API_TOKEN}"},
                    timeout=TURN_TIMEOUT,
                )
                replicas.append(Replica(service, await clients.enter_async_context(client)))
            return replicas[0], replicas[1]

        yield start


@pytest.fixture
def start_telegram_replicas(
    fake_telegram: FakeTelegram, start_replicas: StartReplicas
) -> StartReplicas:
    """Two replicas in webhook mode on the fake Bot API, their Telegram fronts started."""

    async def start() -> tuple[Replica, Replica]:
        a, b = await start_replicas(
            TELEGRAM_BOT_TOKEN=fake_telegram.token,
            TELEGRAM_API_BASE_URL=fake_telegram.base_url,
            TELEGRAM_WEBHOOK_URL=WEBHOOK_URL,
            TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET,
            TELEGRAM_EDIT_INTERVAL="0.2",
        )
        await asyncio.gather(*(r.service.wait_for_event("telegram.started") for r in (a, b)))
        return a, b

    return start


# --- helpers ---------------------------------------------------------------------------------


async def chat_turn(replica: Replica, session_id: str, message: str) -> httpx.Response:
    return await replica.client.post(
        "/api/chat/session", json={"sessionId": session_id, "message": message}
    )


async def stored_conversations(redis: aioredis.Redis) -> dict[str, Conversation]:
    """Every session's messages straight from Redis, by session id; every session whole."""
    found = await census(redis)
    found.assert_whole()
    return {sid: session.conversation for sid, session in found.sessions.items()}


def assert_question_then_its_answer(conversation: Conversation) -> None:
    """user, assistant, user, assistant...; each answer the echo of the question before it."""
    roles = [role for role, _ in conversation]
    assert roles == ["user", "assistant"] * (len(conversation) // 2), conversation
    for (_, asked), (_, answered) in zip(conversation[::2], conversation[1::2], strict=True):
        assert answered == f"echo: {asked}", conversation


def sent_conversation(request: RecordedRequest) -> Conversation:
    return [(m["role"], m["content"]) for m in request.body["messages"] if m["role"] != "system"]


def assert_every_context_is_a_prefix_of(
    conversation: Conversation, requests: list[RecordedRequest]
) -> None:
    """Each turn sent the history up to its own question, nothing of another turn in flight."""
    for request in requests:
        sent = sent_conversation(request)
        assert sent, request.body
        assert sent[-1][0] == "user", sent
        assert sent == conversation[: len(sent)], f"sent {sent}\nstored {conversation}"
    lengths = sorted(len(sent_conversation(request)) for request in requests)
    assert lengths == list(range(1, len(conversation), 2)), lengths  # each question once


async def first_delta(streaming: httpx.Response) -> None:
    """Read the SSE stream until its first `delta` event; fail if it ends or takes too long."""
    try:
        async with asyncio.timeout(ANSWER_WITHIN):
            async for line in streaming.aiter_lines():
                if line == "event: delta":
                    return
    except TimeoutError:
        pytest.fail(f"no delta within {ANSWER_WITHIN:g} s")
    pytest.fail("the stream ended before its first delta")


# --- one session, two replicas ---------------------------------------------------------------


async def test_concurrent_turns_of_one_session_on_both_replicas_never_interleave(
    start_replicas: StartReplicas, fake_openrouter: FakeOpenRouter, redis_client: aioredis.Redis
) -> None:
    a, b = await start_replicas()
    session_id = (await create_session(a.client, USER))["id"]
    questions = [f"question {n}" for n in range(20)]
    fake_openrouter.slow_first_token(0.05, times=len(questions))  # each turn holds the lock

    responses = await asyncio.gather(
        *(chat_turn((a, b)[n % 2], session_id, q) for n, q in enumerate(questions))
    )

    for question, response in zip(questions, responses, strict=True):
        assert response.status_code == 200, response.text
        assert response.json()["reply"]["content"] == f"echo: {question}"
    conversation = (await stored_conversations(redis_client))[session_id]
    assert_question_then_its_answer(conversation)
    assert sorted(content for role, content in conversation if role == "user") == sorted(questions)
    assert_every_context_is_a_prefix_of(conversation, fake_openrouter.requests)


# --- limits counted once for both replicas ---------------------------------------------------


async def test_the_rate_limit_admits_exactly_its_turns_over_both_replicas(
    start_replicas: StartReplicas, fake_openrouter: FakeOpenRouter, redis_client: aioredis.Redis
) -> None:
    """One session per turn: one session's lock would take the turns one at a time, so the limit
    would never be checked by two of them at once. Here all twelve reach it together."""
    a, b = await start_replicas(
        RATE_LIMIT_MESSAGES="5", RATE_LIMIT_WINDOW="60", MAX_SESSIONS_PER_USER="12"
    )
    sessions = [(await create_session((a, b)[n % 2].client, USER))["id"] for n in range(12)]
    fake_openrouter.slow_first_token(0.2, times=len(sessions))  # the admitted turns overlap

    responses = await asyncio.gather(
        *(chat_turn((a, b)[n % 2], sid, f"turn {n}") for n, sid in enumerate(sessions))
    )

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: 5, 429: 7}, [(r.status_code, r.text) for r in responses]
    for refused in (r for r in responses if r.status_code == 429):
        assert_error(refused, 429, "rate_limited")
        assert refused.headers["Retry-After"].isdigit(), refused.headers
        assert 1 <= int(refused.headers["Retry-After"]) <= 60, refused.headers
    stored = [m for c in (await stored_conversations(redis_client)).values() for m in c]
    assert Counter(role for role, _ in stored) == {"user": 5, "assistant": 5}, stored
    assert await redis_client.zcard(user_turns_key(USER)) == 5


async def test_the_session_limit_admits_exactly_its_sessions_over_both_replicas(
    start_replicas: StartReplicas,
) -> None:
    a, b = await start_replicas(MAX_SESSIONS_PER_USER="3", SESSION_LIMIT_POLICY="reject")

    responses = await asyncio.gather(
        *((a, b)[n % 2].client.post("/api/sessions", json={"userId": USER}) for n in range(8))
    )

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 3, 409: 5}, [(r.status_code, r.text) for r in responses]
    for refused in (r for r in responses if r.status_code == 409):
        assert_error(refused, 409, "session_limit_reached")
    created = {r.json()["id"] for r in responses if r.status_code == 201}
    for replica in (a, b):
        listing = await replica.client.get(f"/api/users/{USER}/sessions")
        assert listing.status_code == 200, listing.text
        assert {s["id"] for s in listing.json()["sessions"]} == created


# --- a replica dies mid-turn -----------------------------------------------------------------


async def test_a_session_left_locked_by_a_killed_replica_is_answered_by_the_other_in_time(
    start_replicas: StartReplicas, fake_openrouter: FakeOpenRouter, redis_client: aioredis.Redis
) -> None:
    """Takes ~30 s: B's turn waits (lock wait 60 s) for the lock A took to expire (TTL 30 s)."""
    a, b = await start_replicas()
    session_id = (await create_session(a.client, USER))["id"]
    lock = session_key(session_id, ":lock")
    fake_openrouter.stall(after_deltas=1, seconds=60)
    in_flight = {"sessionId": session_id, "message": "before the kill", "stream": True}

    async with a.client.stream("POST", "/api/chat/session", json=in_flight) as streaming:
        assert streaming.status_code == 200, await streaming.aread()
        await first_delta(streaming)
        assert len(fake_openrouter.requests) == 1
        assert await redis_client.pttl(lock) > 0  # A holds the session
        await a.service.kill()
    answered = await chat_turn(b, session_id, "after the kill")

    assert answered.status_code == 200, f"{answered.text}\n{b.service.output}"
    assert answered.json()["reply"]["content"] == "echo: after the kill"
    assert (await stored_conversations(redis_client))[session_id] == [
        ("user", "before the kill"),  # kept, for /retry; A's partial answer is not
        ("user", "after the kill"),
        ("assistant", "echo: after the kill"),
    ]
    assert await redis_client.exists(lock) == 0


# --- Telegram webhook mode -------------------------------------------------------------------


def answers_by_question(fake: FakeTelegram) -> dict[int, str]:
    """What the bot shows now in reply to each of the user's messages, by their message_id."""
    return {
        message.extra["reply_to_message"]["message_id"]: message.visible_text
        for message in fake.messages(DEFAULT_USER_ID)
        if "reply_to_message" in message.extra
    }


async def post_update(replica: Replica, update: dict[str, Any]) -> httpx.Response:
    """What Telegram does: POST the update to the webhook path, with the secret header."""
    headers = {SECRET_HEADER: WEBHOOK_SECRET}
    return await replica.client.post(WEBHOOK_PATH, json=update, headers=headers)


async def wait_for_answers(fake: FakeTelegram, expected: dict[int, str | None]) -> None:
    """Until each message shows its expected answer (None: any answer); fail with what shows."""

    def is_all_answered() -> bool:
        shown = answers_by_question(fake)
        return all(
            question in shown and answer in (None, shown[question])
            for question, answer in expected.items()
        )

    try:
        await fake.wait_for(is_all_answered, ANSWER_WITHIN)
    except TimeoutError:
        pytest.fail(f"expected {expected}\nshown {answers_by_question(fake)}")


async def test_one_chats_updates_posted_to_both_replicas_are_each_answered_unmixed(
    start_telegram_replicas: StartReplicas,
    fake_telegram: FakeTelegram,
    fake_openrouter: FakeOpenRouter,
    redis_client: aioredis.Redis,
) -> None:
    """`/new` first (on A, answered before going on), then eight messages posted at once,
    alternately to A and B, while the model is slow: Telegram may deliver the next update while
    the last is still being answered (the webhook answers 200 before handling it). Their order
    among themselves is not asserted, only that none is lost, doubled or mixed with another."""
    a, b = await start_telegram_replicas()
    new_session = fake_telegram.user_says("/new")
    assert (await post_update(a, new_session)).status_code == 200
    await wait_for_answers(fake_telegram, {new_session["message"]["message_id"]: None})
    questions = [fake_telegram.user_says(f"message {n}") for n in range(8)]
    fake_openrouter.slow_first_token(0.1, times=len(questions))

    posted = await asyncio.gather(
        *(post_update((a, b)[n % 2], update) for n, update in enumerate(questions))
    )

    assert [response.status_code for response in posted] == [200] * len(questions)
    expected: dict[int, str | None] = {
        u["message"]["message_id"]: f"echo: {u['message']['text']}" for u in questions
    }
    await wait_for_answers(fake_telegram, expected)
    assert len(fake_telegram.messages(DEFAULT_USER_ID)) == 1 + len(questions)  # none doubled
    conversations = await stored_conversations(redis_client)
    assert len(conversations) == 1, conversations  # the one /new made, used by both replicas
    [conversation] = conversations.values()
    assert_question_then_its_answer(conversation)
    assert sorted(content for role, content in conversation if role == "user") == sorted(
        u["message"]["text"] for u in questions
    )
    assert_every_context_is_a_prefix_of(conversation, fake_openrouter.requests)


async def test_a_stop_tapped_on_one_replica_ends_the_answer_streaming_on_the_other(
    start_telegram_replicas: StartReplicas,
    fake_telegram: FakeTelegram,
    fake_openrouter: FakeOpenRouter,
) -> None:
    """In a group, the message goes to A, which streams its answer; the ⏹ under it is tapped
    and Telegram delivers that tap to B. B marks the turn in Redis; A reads the mark and ends
    the answer within a second, showing what it had, marked stopped."""
    a, b = await start_telegram_replicas()
    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=1)
    asked = f"@{fake_telegram.bot_username} tell me a long story"
    question = fake_telegram.user_says(asked, chat_id=DEFAULT_GROUP_ID, chat_type="group")
    assert (await post_update(a, question)).status_code == 200
    preview = await fake_telegram.wait_for(
        lambda: [m for m in fake_telegram.messages(DEFAULT_GROUP_ID) if m.buttons()],
        what="the preview with its ⏹",
    )
    [streaming] = preview
    [stop] = [button["callback_data"] for button in streaming.buttons()]
    tap = fake_telegram.user_taps(stop, message_id=streaming.message_id, chat_id=DEFAULT_GROUP_ID)

    tapped_at = asyncio.get_running_loop().time()
    assert (await post_update(b, tap)).status_code == 200
    stopped = text(ENGLISH, "answer_stopped")
    await fake_telegram.wait_for(lambda: streaming.visible_text.endswith(stopped), what="mark")
    took = asyncio.get_running_loop().time() - tapped_at
    gate.set()

    assert took < 1.0, f"stopped after {took:.2f} s"
    assert streaming.reply_markup is None
    assert tap["callback_query"]["id"] in fake_telegram.callback_answers
