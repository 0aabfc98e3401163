"""Stopping the chat service (`ChatService.stop_turns`), as SIGTERM does: new turns are refused,
running ones finish within the grace period, and the rest are interrupted the way a cut stream
is — the question kept for /retry, no partial answer stored, the session's lock released.

Real store, real OpenRouter client, the fake OpenRouter; a long read timeout, so a stalled
answer is still running when the grace period ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from core.chat import ChatService, TurnSettings
from core.errors import ServiceStopping, TurnInterrupted
from core.llm.breaker import ModelBreaker
from core.llm.openrouter import OpenRouterClient, RetryPolicy
from core.sessions.keys import session_key
from core.sessions.store import SessionStore
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.waiting import until

USER = "telegram:42"
LONG_STALL = 20.0  # seconds; far past every grace period below
WAIT = 10.0  # bound on waiting for what must happen at once


@pytest.fixture
async def patient_model(fake_openrouter: FakeOpenRouter) -> AsyncIterator[OpenRouterClient]:
    client = OpenRouterClient(
        api_key=SecretStr(fake_openrouter.api_key),
        base_url=fake_openrouter.base_url,
        read_timeout=LONG_STALL * 2,
        retry=RetryPolicy(attempts=1),
        # One failure would open it: an interruption counted as the model's fault would show.
        breaker=ModelBreaker(failures=1),
    )
    yield client
    await client.aclose()


@pytest.fixture
def chat(store: SessionStore, patient_model: OpenRouterClient) -> ChatService:
    return ChatService(store, patient_model, TurnSettings("", "test/model", lock_wait_seconds=10))


async def streamed(chat: ChatService, text: str, seen: list[str], user: str = USER) -> str:
    async with chat.turn(text, user_id=user) as turn:
        async for delta in turn.deltas():
            seen.append(delta)
    return "".join(seen)


async def history(store: SessionStore, user: str = USER) -> list[tuple[str, str]]:
    session = await store.active_session(user)
    assert session is not None
    page = await store.read_messages(session.id, limit=100)
    return [(m.role.value, m.content) for m in page.messages]


async def test_with_nothing_running_stop_returns_at_once_and_refuses_new_turns(
    chat: ChatService, store: SessionStore
):
    assert await streamed(chat, "before", []) == "echo: before"
    async with asyncio.timeout(WAIT):  # not the 60 s grace: nothing is running
        assert await chat.stop_turns(grace_seconds=60) == 0
    assert chat.is_stopping
    with pytest.raises(ServiceStopping):
        await streamed(chat, "after", [])
    with pytest.raises(ServiceStopping):
        async with chat.retry(user_id=USER):
            pass
    assert await history(store) == [("user", "before"), ("assistant", "echo: before")]


async def test_a_turn_that_ends_within_the_grace_is_stored_whole(
    chat: ChatService, store: SessionStore, fake_openrouter: FakeOpenRouter
):
    fake_openrouter.stall(after_deltas=2, seconds=0.3)
    seen: list[str] = []
    turn = asyncio.create_task(streamed(chat, "finish me", seen))
    await until(lambda: seen, what="the first delta")

    assert await chat.stop_turns(grace_seconds=LONG_STALL) == 0
    assert await turn == "echo: finish me"
    assert await history(store) == [("user", "finish me"), ("assistant", "echo: finish me")]


async def test_a_turn_still_running_after_the_grace_is_interrupted_keeping_the_question(
    chat: ChatService,
    store: SessionStore,
    redis_client: aioredis.Redis,
    patient_model: OpenRouterClient,
    fake_openrouter: FakeOpenRouter,
):
    fake_openrouter.stall(after_deltas=2, seconds=LONG_STALL)
    seen: list[str] = []
    turn = asyncio.create_task(streamed(chat, "too slow", seen))
    await until(lambda: len(seen) == 2, what="two deltas")

    assert await chat.stop_turns(grace_seconds=0.2) == 1
    with pytest.raises(TurnInterrupted) as interrupted:
        await turn
    assert interrupted.value.partial_text == "".join(seen) != ""
    assert await history(store) == [("user", "too slow")]
    session = await store.active_session(USER)
    assert session is not None
    assert not await redis_client.exists(session_key(session.id, ":lock"))
    # Another replica takes the session at once (no lock to wait for) and answers the question.
    other = ChatService(store, patient_model, TurnSettings("", "test/model", lock_wait_seconds=0))
    async with other.retry(user_id=USER) as retry:
        answer = "".join([delta async for delta in retry.deltas()])
    assert await history(store) == [("user", "too slow"), ("assistant", answer)]
    # Stopping is ours, not the model's fault: its breaker counted no failure.
    assert patient_model.breaker.state("test/model") == "closed"


async def test_a_turn_whose_front_is_busy_ends_at_its_next_read_from_the_model(
    chat: ChatService, store: SessionStore
):
    async with chat.turn("pause between deltas", user_id=USER) as turn:
        deltas = turn.deltas()
        first = await anext(deltas)
        # The front is busy elsewhere (sending the first delta) while the service stops.
        stopping = asyncio.create_task(chat.stop_turns(grace_seconds=0))
        await until(lambda: chat.is_stopping, what="the stop")
        await asyncio.sleep(0.05)
        with pytest.raises(TurnInterrupted) as interrupted:
            await anext(deltas)
        assert interrupted.value.partial_text == first
    assert await stopping == 1
    assert await history(store) == [("user", "pause between deltas")]


async def test_a_turn_waiting_for_the_session_lock_is_refused_and_stores_nothing(
    chat: ChatService, store: SessionStore
):
    await store.begin_turn(
        USER, "holding", session_id=None, lock_token="other-replica", lock_ttl_ms=30_000,
        context_tokens=16_000, default_model="test/model",
    )  # fmt: skip
    waiting = asyncio.create_task(streamed(chat, "waiting", []))
    await until(lambda: chat.running_turns == 1, what="the waiting turn")

    await chat.stop_turns(grace_seconds=LONG_STALL)
    with pytest.raises(ServiceStopping):
        await waiting
    assert await history(store) == [("user", "holding")]


async def test_many_turns_at_a_stop_each_end_whole_or_interrupted_never_half_written(
    chat: ChatService, store: SessionStore, fake_openrouter: FakeOpenRouter
):
    users = [f"discord:{n}" for n in range(20)]
    # In the order requests arrive: 10 answers stall past the grace, 5 briefly, 5 not at all.
    fake_openrouter.stall(after_deltas=1, seconds=LONG_STALL, times=10)
    fake_openrouter.stall(after_deltas=1, seconds=0.2, times=5)
    turns = [asyncio.create_task(streamed(chat, f"I am {user}", [], user)) for user in users]
    await until(lambda: len(fake_openrouter.requests) == len(users), what="every request")

    assert await chat.stop_turns(grace_seconds=1.0) == 10
    endings = await asyncio.gather(*turns, return_exceptions=True)

    assert sum(isinstance(ending, TurnInterrupted) for ending in endings) == 10
    for user, ending in zip(users, endings, strict=True):
        stored = await history(store, user)
        if isinstance(ending, TurnInterrupted):
            assert stored == [("user", f"I am {user}")]
        else:
            assert ending == f"echo: I am {user}"
            assert stored == [("user", f"I am {user}"), ("assistant", ending)]
    assert chat.running_turns == 0


async def test_closing_the_service_interrupts_a_turn_left_running_and_ends_its_lock_keeper(
    chat: ChatService, store: SessionStore, fake_openrouter: FakeOpenRouter
):
    # What open_services does before the Redis client closes, when no stop_turns came first.
    fake_openrouter.stall(after_deltas=1, seconds=LONG_STALL)
    seen: list[str] = []
    turn = asyncio.create_task(streamed(chat, "left running", seen))
    await until(lambda: seen, what="the first delta")
    keepers = {task for task in asyncio.all_tasks() if "_TurnWatch" in repr(task.get_coro())}
    assert len(keepers) == 1

    async with asyncio.timeout(WAIT):  # not the model's 20 s stall
        await chat.aclose()
    with pytest.raises(TurnInterrupted):
        await turn
    assert all(keeper.done() for keeper in keepers)
    assert chat.is_stopping
    assert chat.running_turns == 0
    assert await history(store) == [("user", "left running")]
    with pytest.raises(ServiceStopping):
        await streamed(chat, "after", [])
