"""Rolling summaries and a context sized by tokens (core/summaries.py, core/turn.py), on a real
redis-server (each topology) and the fake OpenRouter: what falls out of the context is
summarised after the answer, the summary goes with the next requests, replicas make one
summary, the person pays for it, and a model with a small context gets a request that fits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.chat import ChatService, TurnSettings
from core.conversation import Notice
from core.llm.models import ModelCatalog
from core.llm.openrouter import OpenRouterClient
from core.sessions.keys import session_key
from core.sessions.store import SessionStore
from core.summaries import SUMMARY_PREFACE, Fold, Summarizer
from core.tokens import MESSAGE_OVERHEAD_TOKENS, count_tokens
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.integration.store_turns import make_store

pytestmark = pytest.mark.all_redis_topologies

ANA = "telegram:1"
MODEL = "test/model"
SUMMARY_MODEL = "test/summarizer"
# Each question about 60 tokens: a few turns overflow a context of 400.
FILLER = " ".join(f"word{n}" for n in range(25))


@pytest.fixture(autouse=True)
async def _summaries_end_with_the_test(
    redis_client: aioredis.Redis, model_client: OpenRouterClient
) -> AsyncIterator[None]:
    """Summaries still being made when a test ends are waited for, before its clients close
    (set up after them, so torn down before)."""
    del redis_client, model_client
    yield
    for summarizer in STARTED:
        await summarizer.close(10)
    STARTED.clear()


STARTED: list[Summarizer] = []


def chat_on(
    store: SessionStore,
    model: OpenRouterClient,
    *,
    context_tokens: int = 400,
    summaries: bool = True,
    catalog: ModelCatalog | None = None,
    default_model: str = MODEL,
) -> ChatService[SessionStore]:
    summarizer = None
    if summaries:
        summarizer = Summarizer(
            store.summaries, model, summary_model=SUMMARY_MODEL,
            max_messages=store.limits.max_messages_per_session,
        )  # fmt: skip
        STARTED.append(summarizer)
    settings = TurnSettings("Be brief.", default_model, context_tokens=context_tokens)
    return ChatService(store, model, settings, catalog=catalog, summarizer=summarizer)


async def ask(chat: ChatService[SessionStore], text: str) -> tuple[Notice, ...]:
    async with chat.turn(text, user_id=ANA) as turn:
        _ = [delta async for delta in turn.deltas()]
    return turn.notices


async def settled(chat: ChatService[SessionStore]) -> None:
    assert chat.summarizer is not None
    await chat.summarizer.wait(10)


def summary_requests(fake: FakeOpenRouter) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests if r.body and r.body.get("model") == SUMMARY_MODEL]


def turn_requests(fake: FakeOpenRouter) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests if r.body and r.body.get("model") != SUMMARY_MODEL]


def contents(body: dict[str, Any]) -> str:
    return "\n".join(str(m["content"]) for m in body["messages"])


async def test_what_falls_out_is_summarised_and_the_next_requests_carry_the_summary(
    store: SessionStore, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    chat = chat_on(store, model_client)
    assert await ask(chat, f"My cat is called Tom. {FILLER}") == ()
    turns = 1
    while not summary_requests(fake_openrouter):
        assert await ask(chat, f"question {turns} {FILLER}") == ()  # nothing lost: summarised
        await settled(chat)
        turns += 1
        assert turns < 10
    # The summary request carried the first fact; the fake echoes it into the summary.
    (asked,) = summary_requests(fake_openrouter)
    assert "My cat is called Tom." in contents(asked)
    assert asked["max_tokens"] == 100  # a quarter of CONTEXT_TOKENS

    assert await ask(chat, "What is my cat called?") == (Notice.CONTEXT_SUMMARIZED,)
    last = turn_requests(fake_openrouter)[-1]
    system, summary = last["messages"][:2]
    assert system == {"role": "system", "content": "Be brief."}
    assert summary["role"] == "system"
    assert summary["content"].startswith(SUMMARY_PREFACE)
    assert "My cat is called Tom." in summary["content"]
    # The first question is no longer sent in its own words.
    assert all("My cat is called Tom." not in str(m["content"]) for m in last["messages"][2:])
    assert await ask(chat, "And again?") == ()  # told once


async def test_every_request_fits_context_tokens_with_the_summary_in_it(
    store: SessionStore, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    chat = chat_on(store, model_client, context_tokens=400)
    for number in range(12):
        await ask(chat, f"question {number} {FILLER}")
        await settled(chat)
    for body in turn_requests(fake_openrouter):
        used = sum(
            count_tokens(str(m["content"])) + MESSAGE_OVERHEAD_TOKENS for m in body["messages"]
        )
        assert used <= 400
    assert len(summary_requests(fake_openrouter)) >= 2  # the summary rolls on


async def test_the_summary_is_kept_in_the_session_and_goes_with_it(
    store: SessionStore,
    model_client: OpenRouterClient,
    fake_openrouter: FakeOpenRouter,
    redis_client: aioredis.Redis,
):
    chat = chat_on(store, model_client)
    while not summary_requests(fake_openrouter):
        await ask(chat, f"more {FILLER}")
        await settled(chat)
    session = await store.active_session(ANA)
    assert session is not None
    fields = await redis_client.hgetall(session_key(session.id))
    assert fields["summary"].startswith("echo: ")
    assert int(fields["summaryUpTo"]) >= 1
    assert not await redis_client.exists(session_key(session.id, ":summarizing"))
    await store.delete_session(session.id)
    assert not await redis_client.exists(session_key(session.id))


async def session_after_turns(
    store: SessionStore, model_client: OpenRouterClient, turns: int
) -> str:
    """The id of a session of `turns` turns, none summarised."""
    chat = chat_on(store, model_client, summaries=False)
    for number in range(turns):
        await ask(chat, f"q{number} {FILLER}")
    session = await store.active_session(ANA)
    assert session is not None
    return session.id


def replica(store: SessionStore, model_client: OpenRouterClient) -> Summarizer:
    """The summarizer of one more replica."""
    return Summarizer(store.summaries, model_client, summary_model=SUMMARY_MODEL, max_messages=100)


async def test_two_replicas_make_one_summary(
    store: SessionStore, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    session_id = await session_after_turns(store, model_client, 6)
    replicas = [replica(store, model_client) for _ in range(2)]
    fake_openrouter.deltas_per_reply = 20  # a summary that takes a while to stream
    made = await asyncio.gather(*(one.summarize(Fold(session_id, ANA, 6)) for one in replicas))
    assert sorted(made) == [False, True]
    assert len(summary_requests(fake_openrouter)) == 1
    # Done: asked again, nothing is made.
    assert await replicas[0].summarize(Fold(session_id, ANA, 6)) is False
    assert len(summary_requests(fake_openrouter)) == 1


async def test_the_person_pays_for_the_summary_once(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    store = make_store(redis_client, daily_token_budget=1_000_000)
    session_id = await session_after_turns(store, model_client, 4)
    before = await store.usage(ANA)
    summarizer = replica(store, model_client)
    assert await summarizer.summarize(Fold(session_id, ANA, 4))
    after = await store.usage(ANA)
    reported = fake_openrouter.reported_usages[-1]
    assert after.today.prompt_tokens - before.today.prompt_tokens == reported["prompt_tokens"]
    assert (
        after.today.completion_tokens - before.today.completion_tokens
        == reported["completion_tokens"]
    )
    assert before.budget_left is not None
    assert after.budget_left is not None
    assert before.budget_left - after.budget_left == reported["total_tokens"]


async def test_a_failed_summary_is_tried_again_after_a_later_turn(
    store: SessionStore, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    session_id = await session_after_turns(store, model_client, 6)
    summarizer = replica(store, model_client)
    fake_openrouter.server_error(500)  # not retried: the request reached the model
    assert await summarizer.summarize(Fold(session_id, ANA, 6)) is False
    assert (await store.summaries.claim(session_id, "probe", 6)) is not None  # let go
    await store.summaries.release(session_id, "probe")
    assert await summarizer.summarize(Fold(session_id, ANA, 6)) is True
    assert len(summary_requests(fake_openrouter)) == 2


async def test_messages_about_to_be_trimmed_are_summarised_before_they_go(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    store = make_store(redis_client, max_messages_per_session=10)
    chat = chat_on(store, model_client, context_tokens=100_000)
    await ask(chat, "Remember: the code word is PELICAN.")
    for number in range(8):
        await ask(chat, f"q{number}")
        await settled(chat)
    assert any("PELICAN" in contents(body) for body in summary_requests(fake_openrouter))
    await ask(chat, "What was the code word?")
    assert "PELICAN" in contents(turn_requests(fake_openrouter)[-1])


async def test_without_summaries_what_falls_out_is_told_lost(
    store: SessionStore, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    chat = chat_on(store, model_client, summaries=False)
    told = [await ask(chat, f"q{number} {FILLER}") for number in range(6)]
    assert told.count((Notice.CONTEXT_LOST,)) == 1
    assert summary_requests(fake_openrouter) == []


@pytest.mark.parametrize("context_length", [1500, 3000])
async def test_a_model_with_a_small_context_gets_a_request_that_fits_it(
    store: SessionStore,
    model_client: OpenRouterClient,
    fake_openrouter: FakeOpenRouter,
    redis_client: aioredis.Redis,
    context_length: int,
):
    """The fake refuses (400) a request past the model's context_length, as OpenRouter does."""
    fake_openrouter.list_model("tiny/model", context_length=context_length)
    catalog = ModelCatalog(redis_client, model_client)
    chat = chat_on(store, model_client, context_tokens=None, catalog=catalog,
                   default_model="tiny/model")  # fmt: skip
    try:
        for number in range(15):
            await ask(chat, f"q{number} {FILLER} {FILLER}")
            await settled(chat)
    finally:
        await catalog.aclose()
    bodies = turn_requests(fake_openrouter)
    assert len(bodies) == 15
    for body in bodies:
        used = sum(
            count_tokens(str(m["content"])) + MESSAGE_OVERHEAD_TOKENS for m in body["messages"]
        )
        assert used + body["max_tokens"] <= context_length
