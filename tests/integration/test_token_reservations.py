"""DAILY_TOKEN_BUDGET under concurrent turns and unfinished answers, against a real redis-server
(and its Cluster and Sentinel set) and the fake OpenRouter.

A turn reserves its worst case when it begins (its context's estimate plus MAX_COMPLETION_TOKENS
and the system prompt's estimate) and settles to what it spent when it ends, once.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.chat import ChatService, TurnSettings
from core.conversation import estimated_tokens
from core.errors import (
    DailyBudgetExhausted,
    ModelEmptyAnswer,
    ModelRejected,
    ModelStreamBroken,
    ModelUnavailable,
    TurnInterrupted,
    TurnLockLost,
)
from core.llm.openrouter import OpenRouterClient
from core.sessions.keys import session_key, user_tag, user_tokens_key
from core.sessions.store import SessionStore, TurnStart
from core.tokens import MESSAGE_OVERHEAD_TOKENS, count_tokens
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.integration.store_turns import MODEL, make_store, today
from tests.waiting import until

ANA = "telegram:1"
RESERVE = 4096
pytestmark = pytest.mark.all_redis_topologies


async def begin_reserving(
    store: SessionStore, user: str | None, session_id: str | None = None
) -> TurnStart:
    return await store.begin_turn(
        user, "How far is the Moon?", session_id=session_id, lock_token=secrets.token_hex(12),
        lock_ttl_ms=30_000, context_tokens=16_000, default_model=MODEL, reserve_tokens=RESERVE,
    )  # fmt: skip


async def spent_today(redis_client: aioredis.Redis, user: str = ANA) -> int:
    return int(await redis_client.get(user_tokens_key(user, await today(redis_client))) or 0)


async def stored_context_estimate(redis_client: aioredis.Redis, session_id: str) -> int:
    """begin_turn.lua's estimate of a context: a token per three bytes of its stored entries."""
    entries = await redis_client.lrange(session_key(session_id, ":messages"), 0, -1)
    return math.ceil(sum(len(entry.encode()) for entry in entries) / 3)


# --- on the store -----------------------------------------------------------------------------


async def test_a_turn_reserves_its_worst_case_until_it_settles_to_what_it_spent(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, daily_token_budget=10**6)
    start = await begin_reserving(store, ANA)
    context = await stored_context_estimate(redis_client, start.session.id)
    assert await spent_today(redis_client) == RESERVE + context

    await store.finish_turn(
        start, "384,400 km.", model=MODEL, usage=None, is_retry=False, spent_tokens=150
    )
    assert await spent_today(redis_client) == 150


async def test_concurrent_turns_overshoot_the_budget_by_at_most_one_reservation(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, daily_token_budget=100)
    sessions = [(await store.create_session(ANA, default_model=MODEL)).id for _ in range(5)]

    results = await asyncio.gather(
        *(begin_reserving(store, ANA, session_id) for session_id in sessions),
        return_exceptions=True,
    )

    begun = [result for result in results if isinstance(result, TurnStart)]
    assert len(begun) == 1
    assert all(isinstance(r, DailyBudgetExhausted) for r in results if r not in begun)


async def test_a_turn_ended_without_an_answer_settles_once_whichever_way_it_ends(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, daily_token_budget=10**6)
    start = await begin_reserving(store, ANA)

    assert await store.release_lock(start.session.id, start.lock_token, spent_tokens=7)
    assert await spent_today(redis_client) == 7
    # A repeated release (a lost reply), then an answer that comes too late: nothing more.
    await store.release_lock(start.session.id, start.lock_token, spent_tokens=7)
    with pytest.raises(TurnLockLost):
        await store.finish_turn(start, "late", model=MODEL, usage=None, is_retry=False,
                                spent_tokens=9)  # fmt: skip
    assert await spent_today(redis_client) == 7


async def test_a_release_after_the_answer_was_stored_settles_nothing_more(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, daily_token_budget=10**6)
    start = await begin_reserving(store, ANA)
    await store.finish_turn(start, "a", model=MODEL, usage=None, is_retry=False, spent_tokens=12)
    # What a turn does when the answer's reply was lost and it could not tell it was stored.
    await store.release_lock(start.session.id, start.lock_token, spent_tokens=12)
    assert await spent_today(redis_client) == 12


async def test_a_reservation_made_before_midnight_goes_with_its_day(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, daily_token_budget=10**6)
    start = await begin_reserving(store, ANA)
    day = await today(redis_client)
    reserved = await spent_today(redis_client)

    # Midnight passes while the answer streams: the reservation is yesterday's spending now.
    await redis_client.rename(user_tokens_key(ANA, day), user_tokens_key(ANA, day - 1))
    await redis_client.hset(f"call:{{{user_tag(ANA)}}}:{start.lock_token}", "day", day - 1)
    await store.finish_turn(start, "a", model=MODEL, usage=None, is_retry=False, spent_tokens=10)

    assert await spent_today(redis_client) == 10
    assert int(await redis_client.get(user_tokens_key(ANA, day - 1))) == reserved


async def test_without_a_budget_nothing_is_reserved(redis_client: aioredis.Redis):
    store = make_store(redis_client, daily_token_budget=0)
    start = await begin_reserving(store, ANA)
    assert not await redis_client.exists(user_tokens_key(ANA, await today(redis_client)))
    await store.release_lock(start.session.id, start.lock_token, spent_tokens=5)
    assert not await redis_client.exists(user_tokens_key(ANA, await today(redis_client)))


# --- through the chat service and the OpenRouter client ---------------------------------------


@pytest.fixture
def budgeted_chat(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, turn_settings: TurnSettings
) -> ChatService[SessionStore]:
    return ChatService(
        make_store(redis_client, daily_token_budget=100), model_client, turn_settings
    )


def sent_estimate(fake_openrouter: FakeOpenRouter) -> int:
    body: dict[str, Any] = fake_openrouter.requests[-1].body
    return sum(
        count_tokens(message["content"]) + MESSAGE_OVERHEAD_TOKENS for message in body["messages"]
    )


def reported_prompt_tokens(fake_openrouter: FakeOpenRouter) -> int:
    """The fake's usage: a word is a token."""
    body: dict[str, Any] = fake_openrouter.requests[-1].body
    return sum(len(message["content"].split()) for message in body["messages"])


async def ask(chat: ChatService[SessionStore], session_id: str | None = None) -> str:
    async with chat.turn("How far is the Moon?", user_id=ANA, session_id=session_id) as turn:
        return "".join([delta async for delta in turn.deltas()])


async def test_the_model_is_asked_for_at_most_max_completion_tokens(
    budgeted_chat: ChatService[SessionStore], fake_openrouter: FakeOpenRouter
):
    await ask(budgeted_chat)
    assert fake_openrouter.requests[-1].body["max_tokens"] == 4096


async def test_five_concurrent_turns_on_five_sessions_spend_one_answer_of_a_small_budget(
    budgeted_chat: ChatService[SessionStore],
    fake_openrouter: FakeOpenRouter,
    redis_client: aioredis.Redis,
):
    store = budgeted_chat.store
    sessions = [(await store.create_session(ANA, default_model=MODEL)).id for _ in range(5)]
    gate = asyncio.Event()
    fake_openrouter.hold(gate, times=5)

    asked = [asyncio.create_task(ask(budgeted_chat, session_id)) for session_id in sessions]
    # Released only once every turn has begun or been refused: one holds the model.
    await until(
        lambda: sum(task.done() for task in asked) == 4 and len(fake_openrouter.requests) == 1,
        what="four turns refused while one waits for the model",
    )
    gate.set()
    results = await asyncio.gather(*asked, return_exceptions=True)

    answered = [result for result in results if isinstance(result, str)]
    assert len(answered) == 1
    assert sum(isinstance(result, DailyBudgetExhausted) for result in results) == 4
    assert len(fake_openrouter.requests) == 1
    assert await spent_today(redis_client) == reported_prompt_tokens(fake_openrouter) + len(
        answered[0].split()
    )


async def test_a_cut_stream_is_charged_what_it_was_sent_and_streamed(
    budgeted_chat: ChatService[SessionStore],
    fake_openrouter: FakeOpenRouter,
    redis_client: aioredis.Redis,
):
    fake_openrouter.cut_stream(after_deltas=2)
    with pytest.raises(ModelStreamBroken) as cut:
        await ask(budgeted_chat)
    assert cut.value.partial_text
    expected = sent_estimate(fake_openrouter) + estimated_tokens(cut.value.partial_text)
    assert await spent_today(redis_client) == expected


async def test_an_interrupted_stream_is_charged_what_it_was_sent_and_streamed(
    budgeted_chat: ChatService[SessionStore],
    fake_openrouter: FakeOpenRouter,
    redis_client: aioredis.Redis,
):
    fake_openrouter.pause(asyncio.Event(), after_deltas=2)
    seen: list[str] = []

    async def listen() -> None:
        async with budgeted_chat.turn("How far is the Moon?", user_id=ANA) as turn:
            async for delta in turn.deltas():
                seen.append(delta)

    listening = asyncio.create_task(listen())
    await until(lambda: len(seen) == 2, what="two deltas before the pause")
    await budgeted_chat.stop_turns(grace_seconds=0)
    with pytest.raises(TurnInterrupted):
        await listening

    expected = sent_estimate(fake_openrouter) + estimated_tokens("".join(seen))
    assert await spent_today(redis_client) == expected


async def test_an_empty_answer_is_charged_the_usage_openrouter_reported(
    budgeted_chat: ChatService[SessionStore],
    fake_openrouter: FakeOpenRouter,
    redis_client: aioredis.Redis,
):
    fake_openrouter.empty_answer(with_usage=True)
    with pytest.raises(ModelEmptyAnswer):
        await ask(budgeted_chat)
    assert await spent_today(redis_client) == reported_prompt_tokens(fake_openrouter) > 0


async def test_an_empty_answer_without_usage_is_charged_the_prompts_estimate(
    budgeted_chat: ChatService[SessionStore],
    fake_openrouter: FakeOpenRouter,
    redis_client: aioredis.Redis,
):
    fake_openrouter.empty_answer()
    with pytest.raises(ModelEmptyAnswer):
        await ask(budgeted_chat)
    assert await spent_today(redis_client) == sent_estimate(fake_openrouter)


@pytest.mark.parametrize(
    ("status", "error"), [(400, ModelRejected), (500, ModelUnavailable)], ids=["400", "500"]
)
async def test_a_request_refused_with_an_error_status_costs_nothing(
    budgeted_chat: ChatService[SessionStore],
    fake_openrouter: FakeOpenRouter,
    redis_client: aioredis.Redis,
    status: int,
    error: type[Exception],
):
    fake_openrouter.server_error(status)
    with pytest.raises(error):
        await ask(budgeted_chat)
    assert await spent_today(redis_client) == 0
