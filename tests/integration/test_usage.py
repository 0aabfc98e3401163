"""`/usage`: a person's tokens and cost per UTC day as the fake OpenRouter reported them, on a
real redis-server (each topology), through the command layer every front uses.

Another day is what Redis holds (a day's hash under another day's name), never a wait; expiry
is `let_time_pass`.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.chat import ChatService, TurnSettings
from core.commands import CommandHandler, Reply, TurnReply
from core.conversation import Usage
from core.llm.openrouter import OpenRouterClient
from core.messages import ENGLISH, PORTUGUESE, text
from core.sessions.bills import PersonBills
from core.sessions.keys import user_usage_key
from core.sessions.limits import SessionLimits
from core.sessions.scripts import LuaScripts
from core.sessions.store import SessionStore
from core.sessions.usage import UsageTotals
from core.spaces import GroupSessions, Speaker, chat_of, group_speaker
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.integration.store_turns import DAY_MS, make_store, redis_now_ms, spend, today
from tests.redis_expiry import let_time_pass

ANA = "telegram:1"
BOB = "telegram:2"
GROUP = chat_of("telegram", -1001)
BUDGET = 1000
pytestmark = pytest.mark.all_redis_topologies


def commands_on(store: SessionStore, model: OpenRouterClient) -> CommandHandler:
    settings = TurnSettings(system_prompt="Be brief.", default_model="test/model")
    return CommandHandler(ChatService(store, model, settings))


async def turn(commands: CommandHandler, speaker: Speaker | str, message: str) -> None:
    outcome = await commands.handle(speaker, message)
    assert isinstance(outcome, TurnReply), outcome
    async with outcome.turn as running:
        assert [delta async for delta in running.deltas()]


async def say(
    commands: CommandHandler, speaker: Speaker | str, message: str, locale: str = ENGLISH
) -> Reply:
    outcome = await commands.handle(speaker, message, locale=locale)
    assert isinstance(outcome, Reply), outcome
    return outcome


def reported(usages: list[dict[str, Any]]) -> UsageTotals:
    """What the fake OpenRouter reported, added up."""
    return UsageTotals(
        sum(usage["prompt_tokens"] for usage in usages),
        sum(usage["completion_tokens"] for usage in usages),
        sum(usage.get("cost", 0.0) for usage in usages),
    )


def assert_same(shown: UsageTotals, expected: UsageTotals) -> None:
    assert (shown.prompt_tokens, shown.completion_tokens) == (
        expected.prompt_tokens,
        expected.completion_tokens,
    )
    assert shown.cost == pytest.approx(expected.cost, abs=1e-6)


async def test_usage_is_the_tokens_and_cost_the_model_reported(
    commands: CommandHandler, fake_openrouter: FakeOpenRouter
):
    await turn(commands, ANA, "hello there")
    await turn(commands, ANA, "and now four more words")
    expected = reported(fake_openrouter.reported_usages)
    assert expected.total_tokens > 0
    assert expected.cost > 0

    report = await commands.store.usage(ANA)
    assert_same(report.today, expected)
    assert report.last_30_days == report.today
    assert (report.daily_budget, report.budget_left) == (None, None)
    assert (await commands.store.usage(BOB)).last_30_days == UsageTotals()

    shown = (await say(commands, ANA, "/usage")).text
    total, prompt, completion = (
        expected.total_tokens,
        expected.prompt_tokens,
        expected.completion_tokens,
    )
    assert f"{total} tokens ({prompt} prompt + {completion} answer)" in shown
    assert shown.endswith(text(ENGLISH, "usage_no_budget"))
    in_portuguese = (await say(commands, ANA, "/usage", PORTUGUESE)).text
    assert f"{total} tokens ({prompt} de entrada + {completion} de resposta)" in in_portuguese


async def test_a_turn_without_reported_cost_adds_its_tokens_and_no_cost(
    commands: CommandHandler, fake_openrouter: FakeOpenRouter
):
    fake_openrouter.reports_cost = False
    await turn(commands, ANA, "hello there")
    report = await commands.store.usage(ANA)
    assert report.today.total_tokens == reported(fake_openrouter.reported_usages).total_tokens
    assert report.today.cost == 0.0
    assert "$0.00" in (await say(commands, ANA, "/usage")).text


@pytest.mark.parametrize(("spent", "left"), [(BUDGET - 1, 1), (BUDGET, 0), (BUDGET + 1, 0)])
async def test_usage_says_what_is_left_of_the_daily_budget(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, spent: int, left: int
):
    commands = commands_on(make_store(redis_client, daily_token_budget=BUDGET), model_client)
    await spend(redis_client, ANA, spent, day=await today(redis_client))

    report = await commands.store.usage(ANA)
    assert (report.daily_budget, report.budget_left) == (BUDGET, left)
    shown = (await say(commands, ANA, "/usage")).text
    assert shown.endswith(text(ENGLISH, "usage_budget", left=str(left), budget="1,000"))
    in_portuguese = (await say(commands, ANA, "/usage", PORTUGUESE)).text
    assert in_portuguese.endswith(text(PORTUGUESE, "usage_budget", left=str(left), budget="1.000"))


async def test_with_a_budget_the_turns_usage_is_counted_and_the_budget_spent(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    commands = commands_on(make_store(redis_client, daily_token_budget=BUDGET), model_client)
    await turn(commands, ANA, "hello there")
    expected = reported(fake_openrouter.reported_usages)
    report = await commands.store.usage(ANA)
    assert_same(report.today, expected)
    assert report.budget_left == BUDGET - expected.total_tokens


async def test_a_utc_day_ends_in_the_30_days_and_not_in_today(
    commands: CommandHandler, redis_client: aioredis.Redis, fake_openrouter: FakeOpenRouter
):
    await turn(commands, ANA, "yesterday's words")
    yesterday_reported = reported(fake_openrouter.reported_usages)
    day = await today(redis_client)
    # As if that turn had been the day before: its hash under yesterday's name.
    await redis_client.rename(user_usage_key(ANA, day), user_usage_key(ANA, day - 1))

    report = await commands.store.usage(ANA)
    assert report.today == UsageTotals()
    assert_same(report.last_30_days, yesterday_reported)

    await turn(commands, ANA, "today's words")
    today_reported = reported(fake_openrouter.reported_usages[1:])
    report = await commands.store.usage(ANA)
    assert_same(report.today, today_reported)
    assert_same(report.last_30_days, reported(fake_openrouter.reported_usages))


async def test_the_30_days_are_today_and_the_29_before_it(
    commands: CommandHandler, redis_client: aioredis.Redis
):
    day = await today(redis_client)
    for back, prompt in ((29, 10), (30, 1000)):  # the last day in, the first day out
        key = user_usage_key(ANA, day - back)
        await redis_client.hset(key, mapping={"prompt": prompt, "completion": 1, "cost": 0.25})
    report = await commands.store.usage(ANA)
    assert report.last_30_days == UsageTotals(10, 1, 0.25)
    assert report.today == UsageTotals()


async def test_a_days_usage_expires_31_days_after_that_day_began(
    commands: CommandHandler, redis_client: aioredis.Redis
):
    await turn(commands, ANA, "hello there")
    day = await today(redis_client)
    key = user_usage_key(ANA, day)
    seconds_left = ((day + 31) * DAY_MS - await redis_now_ms(redis_client)) / 1000
    assert 30 * 86_400 < seconds_left <= 31 * 86_400

    await let_time_pass(redis_client, seconds_left - 1)  # a second before: still kept
    assert await redis_client.exists(key)
    await let_time_pass(redis_client, 2)
    assert not await redis_client.exists(key)


async def test_a_shared_chats_turn_counts_in_its_writers_usage_and_usage_is_their_own(
    store: SessionStore, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    commands = commands_on(store, model_client)
    bob_in_group = group_speaker(BOB, GROUP, GroupSessions.SHARED, author="Bob")
    await turn(commands, bob_in_group, "hello all")
    expected = reported(fake_openrouter.reported_usages)

    assert_same((await store.usage(BOB)).today, expected)
    assert (await store.usage(ANA)).today == UsageTotals()
    assert (await store.usage(GROUP)).today == UsageTotals()
    shown = (await say(commands, bob_in_group, "/usage")).text
    assert f"{expected.total_tokens} tokens" in shown


async def test_a_repeated_settling_of_a_shared_chats_turn_counts_its_usage_once(
    redis_client: aioredis.Redis, store: SessionStore
):
    bills = PersonBills(LuaScripts(redis_client, store.activity, store.metrics), SessionLimits())
    token = secrets.token_hex(12)
    usage = Usage(prompt_tokens=7, completion_tokens=3, cost=0.5)
    for _ in range(2):  # the client retrying after a lost reply
        await bills.settle(BOB, token, 10, usage=usage)
    assert (await store.usage(BOB)).today == UsageTotals(7, 3, 0.5)
