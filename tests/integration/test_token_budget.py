"""DAILY_TOKEN_BUDGET, per user and UTC day, against a real redis-server and the fake OpenRouter.

A new day is simulated by what Redis holds (a spending key for another day), never by waiting.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from core.chat import ChatService, TurnSettings
from core.conversation import Usage
from core.errors import DailyBudgetExhausted, RateLimited
from core.llm.openrouter import OpenRouterClient
from core.sessions.keys import user_tokens_key
from tests.integration.store_turns import (
    DAY_MS,
    begin,
    make_store,
    redis_now_ms,
    snapshot,
    spend,
    store_turn,
    today,
    whole_seconds_until,
)

ANA = "discord:1"
BOB = "discord:2"
BUDGET = 100
pytestmark = pytest.mark.all_redis_topologies


@pytest.mark.parametrize(
    ("spent", "is_allowed"), [(0, True), (BUDGET - 1, True), (BUDGET, False), (BUDGET + 1, False)]
)
async def test_a_turn_starts_only_while_todays_spending_is_under_the_budget(
    redis_client: aioredis.Redis, spent: int, is_allowed: bool
):
    store = make_store(redis_client, daily_token_budget=BUDGET)
    await spend(redis_client, ANA, spent, day=await today(redis_client))

    if is_allowed:
        await store_turn(store, ANA)
    else:
        with pytest.raises(DailyBudgetExhausted) as refused:
            await begin(store, ANA)
        assert refused.value.params["budget"] == BUDGET


async def test_reported_usage_adds_up_until_the_turn_that_crosses_the_budget(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, daily_token_budget=BUDGET)
    for _ in range(3):  # 0, 40 and 80 tokens spent before each: all under the budget
        await store_turn(store, ANA, usage=Usage(prompt_tokens=30, completion_tokens=10))
    spent_key = user_tokens_key(ANA, await today(redis_client))
    assert int(await redis_client.get(spent_key)) == 120

    with pytest.raises(DailyBudgetExhausted):
        await begin(store, ANA)


async def test_a_refusal_says_to_come_back_at_the_next_utc_midnight(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, daily_token_budget=BUDGET)
    day = await today(redis_client)
    await spend(redis_client, ANA, BUDGET, day=day)

    before = await redis_now_ms(redis_client)
    with pytest.raises(DailyBudgetExhausted) as refused:
        await begin(store, ANA)
    after = await redis_now_ms(redis_client)

    assert refused.value.retry_after in whole_seconds_until((day + 1) * DAY_MS, before, after)
    assert 0 < refused.value.retry_after <= 86_400


async def test_the_budget_renews_on_the_next_utc_day(redis_client: aioredis.Redis):
    store = make_store(redis_client, daily_token_budget=BUDGET)
    day = await today(redis_client)
    await spend(redis_client, ANA, BUDGET, day=day)
    with pytest.raises(DailyBudgetExhausted):
        await begin(store, ANA)

    # Midnight passes: what was today's spending is now yesterday's, and counts no more.
    await redis_client.rename(user_tokens_key(ANA, day), user_tokens_key(ANA, day - 1))
    await store_turn(store, ANA, usage=Usage(prompt_tokens=5, completion_tokens=5))

    assert int(await redis_client.get(user_tokens_key(ANA, day))) == 10
    assert int(await redis_client.get(user_tokens_key(ANA, day - 1))) == BUDGET


async def test_todays_spending_expires_at_the_end_of_the_utc_day(redis_client: aioredis.Redis):
    store = make_store(redis_client, daily_token_budget=BUDGET)
    await store_turn(store, ANA, usage=Usage(prompt_tokens=1, completion_tokens=1))
    day = await today(redis_client)
    assert await redis_client.pexpiretime(user_tokens_key(ANA, day)) == (day + 1) * DAY_MS


async def test_a_retry_spends_tokens_too(redis_client: aioredis.Redis):
    store = make_store(redis_client, daily_token_budget=BUDGET)
    await store_turn(store, ANA, "question", usage=Usage(prompt_tokens=4, completion_tokens=1))
    await store_turn(store, ANA, None, usage=Usage(prompt_tokens=7, completion_tokens=3))
    spent_key = user_tokens_key(ANA, await today(redis_client))
    assert int(await redis_client.get(spent_key)) == 15


async def test_without_a_budget_nothing_is_counted(redis_client: aioredis.Redis):
    store = make_store(redis_client, daily_token_budget=0)
    await spend(redis_client, ANA, 10**9, day=await today(redis_client))
    await store_turn(store, ANA, usage=Usage(prompt_tokens=30, completion_tokens=10))
    assert int(await redis_client.get(user_tokens_key(ANA, await today(redis_client)))) == 10**9
    await store_turn(store, BOB, usage=Usage(prompt_tokens=30, completion_tokens=10))
    assert not await redis_client.exists(user_tokens_key(BOB, await today(redis_client)))


async def test_a_turn_refused_over_budget_stores_nothing(redis_client: aioredis.Redis):
    store = make_store(redis_client, daily_token_budget=BUDGET)
    session_id = (await store_turn(store, ANA, usage=Usage(BUDGET, 0))).session.id
    before = await snapshot(redis_client, ANA, session_id)

    for user, session in ((ANA, None), (None, session_id)):
        for text in ("more", None):
            with pytest.raises(DailyBudgetExhausted):
                await begin(store, user, text, session)

    assert await snapshot(redis_client, ANA, session_id) == before
    assert before["lock"] is None


async def test_each_user_has_a_budget_of_their_own(redis_client: aioredis.Redis):
    store = make_store(redis_client, daily_token_budget=BUDGET)
    await spend(redis_client, ANA, BUDGET, day=await today(redis_client))
    await store_turn(store, BOB)
    with pytest.raises(DailyBudgetExhausted):
        await begin(store, ANA)


async def test_when_both_limits_refuse_the_longer_wait_of_the_budget_is_told(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, rate_limit_messages=1, daily_token_budget=BUDGET)
    await store_turn(store, ANA, usage=Usage(BUDGET, 0))
    with pytest.raises(DailyBudgetExhausted):
        await begin(store, ANA)

    unbudgeted = make_store(redis_client, rate_limit_messages=1)
    with pytest.raises(RateLimited):
        await begin(unbudgeted, ANA)


async def test_the_usage_openrouter_reports_is_what_the_budget_counts(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, turn_settings: TurnSettings
):
    chat = ChatService(make_store(redis_client, daily_token_budget=1), model_client, turn_settings)
    async with chat.turn("how many tokens is this?", user_id=ANA) as turn:
        _ = [delta async for delta in turn.deltas()]
    reply, _ = turn.outcome()
    assert reply.usage is not None

    spent = await redis_client.get(user_tokens_key(ANA, await today(redis_client)))
    assert int(spent) == reply.usage.total_tokens
    with pytest.raises(DailyBudgetExhausted):
        async with chat.turn("and this?", user_id=ANA):
            pass
