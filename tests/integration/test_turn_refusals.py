"""A turn refused by a user's limits, above the store: the chat service, the commands in both
languages, the metrics, and what it costs in Redis round trips."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.chat import ChatService, TurnSettings
from core.commands import CommandHandler, Reply, TurnReply
from core.conversation import Usage
from core.errors import DailyBudgetExhausted, QuotaExceeded, RateLimited
from core.llm.openrouter import OpenRouterClient
from core.messages import ENGLISH, PORTUGUESE, describe
from core.observability.metrics import Metrics
from core.sessions.limits import SessionLimits
from core.sessions.store import SessionStore
from tests.integration.round_trips import CountingConnection, counting_client  # noqa: F401
from tests.integration.store_turns import make_store, spend, store_turn, today

ANA = "telegram:1"


def limited_chat(
    redis_client: aioredis.Redis,
    model_client: OpenRouterClient,
    turn_settings: TurnSettings,
    metrics: Metrics | None = None,
    **limits: Any,
) -> ChatService:
    store = SessionStore(redis_client, SessionLimits(**limits), metrics)
    return ChatService(store, model_client, turn_settings)


async def answer(commands: CommandHandler, message: str, locale: str = ENGLISH) -> str:
    """What a front shows for `message`: the streamed answer, or the sentence of its error."""
    outcome = await commands.handle(ANA, message, locale=locale)
    if isinstance(outcome, Reply):
        return outcome.text
    try:
        async with outcome.turn as turn:
            return "".join([delta async for delta in turn.deltas()])
    except QuotaExceeded as error:
        return describe(error, locale)


# --- the chat service -------------------------------------------------------------------------


async def test_concurrent_turns_of_one_user_let_exactly_the_limit_through(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, turn_settings: TurnSettings
):
    chat = limited_chat(redis_client, model_client, turn_settings, rate_limit_messages=5)

    async def one_turn(number: int) -> str:
        async with chat.turn(f"question {number}", user_id=ANA) as turn:
            return "".join([delta async for delta in turn.deltas()])

    outcomes = await asyncio.gather(*(one_turn(n) for n in range(20)), return_exceptions=True)

    answered = [outcome for outcome in outcomes if isinstance(outcome, str)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, RateLimited)]
    assert (len(answered), len(refused)) == (5, 15), outcomes
    session = await chat.store.active_session(ANA)
    assert session is not None
    assert session.message_count == 10


# --- the commands, as every front shows them -----------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "sentence"),
    [
        (ENGLISH, "You're sending messages too fast: at most 2 messages in 1 min. Try again in"),
        (PORTUGUESE, "Você está mandando mensagens rápido demais: no máximo 2 mensagens em 1 min."),
    ],
)
async def test_a_message_over_the_rate_limit_is_answered_with_when_to_try_again(
    redis_client: aioredis.Redis,
    model_client: OpenRouterClient,
    turn_settings: TurnSettings,
    locale: str,
    sentence: str,
):
    chat = limited_chat(redis_client, model_client, turn_settings, rate_limit_messages=2)
    commands = CommandHandler(chat)
    assert await answer(commands, "one") == "echo: one"
    assert await answer(commands, "/retry") == "echo: one"

    for message in ("two", "/retry"):
        refusal = await answer(commands, message, locale)
        assert refusal.startswith(sentence), refusal
        assert refusal.endswith((" s.", " min.")), refusal
    # Commands that start no turn are never limited.
    assert "1." in await answer(commands, "/sessions", locale)


@pytest.mark.parametrize(
    ("locale", "sentence"),
    [
        (ENGLISH, "You've used your 100 tokens for today. Your budget renews at midnight UTC, in"),
        (PORTUGUESE, "Você já usou seus 100 tokens de hoje. Seu limite renova à meia-noite UTC,"),
    ],
)
async def test_a_message_over_the_daily_budget_is_answered_with_when_it_renews(
    redis_client: aioredis.Redis,
    model_client: OpenRouterClient,
    turn_settings: TurnSettings,
    locale: str,
    sentence: str,
):
    chat = limited_chat(redis_client, model_client, turn_settings, daily_token_budget=100)
    await spend(redis_client, ANA, 100, day=await today(redis_client))

    refusal = await answer(CommandHandler(chat), "hello", locale)

    assert refusal.startswith(sentence), refusal
    assert refusal.endswith((" s.", " min.", " h.")), refusal


# --- metrics ----------------------------------------------------------------------------------


async def test_refused_turns_are_counted_by_the_limit_that_refused_them(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, turn_settings: TurnSettings
):
    metrics = Metrics()
    chat = limited_chat(
        redis_client, model_client, turn_settings, metrics,
        rate_limit_messages=1, daily_token_budget=100,
    )  # fmt: skip
    commands = CommandHandler(chat)
    await answer(commands, "allowed")
    await answer(commands, "too fast")
    await spend(redis_client, ANA, 100, day=await today(redis_client))
    await answer(commands, "over budget")

    def count(name: str, **labels: str) -> float:
        return metrics.registry.get_sample_value(name, labels) or 0.0

    assert count("chatbridge_rate_limit_refusals_total", source="user") == 1
    assert count("chatbridge_rate_limit_refusals_total", source="budget") == 1
    assert count("chatbridge_rate_limit_refusals_total", source="model") == 0
    for outcome in ("rate_limited", "daily_budget_exhausted"):
        assert count("chatbridge_turns_total", front="telegram", outcome=outcome) == 1
        assert count("chatbridge_errors_total", front="telegram", kind=outcome) == 1


# --- round trips ------------------------------------------------------------------------------


async def test_a_turn_with_both_limits_on_still_costs_two_round_trips_and_a_refusal_one(
    counting_client: aioredis.Redis,  # noqa: F811
    model_client: OpenRouterClient,
    turn_settings: TurnSettings,
):
    limits = {"rate_limit_messages": 3, "daily_token_budget": 10**6}
    chat = limited_chat(counting_client, model_client, turn_settings, **limits)
    await store_turn(make_store(counting_client, **limits), ANA, usage=Usage(1, 1))  # loads scripts

    async def round_trips_of_a_turn(text: str) -> int:
        CountingConnection.writes = 0
        async with chat.turn(text, user_id=ANA) as turn:
            _ = [delta async for delta in turn.deltas()]
        return CountingConnection.writes

    assert await round_trips_of_a_turn("counted and charged") == 2
    assert await round_trips_of_a_turn("the last one allowed") == 2
    CountingConnection.writes = 0
    with pytest.raises(RateLimited):
        await round_trips_of_a_turn("refused")
    assert CountingConnection.writes == 1


async def test_a_refused_turn_reaches_a_front_as_a_quota_error_with_its_wait(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, turn_settings: TurnSettings
):
    chat = limited_chat(redis_client, model_client, turn_settings, daily_token_budget=5)
    await spend(redis_client, ANA, 5, day=await today(redis_client))
    outcome = await CommandHandler(chat).handle(ANA, "hello")
    assert isinstance(outcome, TurnReply)
    with pytest.raises(DailyBudgetExhausted) as refused:
        async with outcome.turn:
            pass
    assert 1 <= refused.value.retry_after <= 86_400
