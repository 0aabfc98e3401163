"""Conversation spaces (core/spaces.py): a person's DM, their sessions in each group chat, and a
chat's shared sessions, through the command layer every front uses, on each Redis topology.

What reaches the model is read from the fake OpenRouter's requests: words said in one space
must never be in another's."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.chat import ChatService, TurnSettings
from core.commands import CommandHandler, Reply, TurnReply
from core.errors import DailyBudgetExhausted, RateLimited, SessionBusy
from core.llm.openrouter import OpenRouterClient
from core.sessions.keys import session_key, user_tag, user_tokens_key, user_turns_key
from core.sessions.store import SessionStore
from core.spaces import GroupSessions, Speaker, chat_of, group_speaker
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.integration.store_turns import make_store, spend, today

ANA = "telegram:1"
BOB = "telegram:2"
GROUP = chat_of("telegram", -1001)
OTHER_GROUP = chat_of("telegram", -1002)
pytestmark = pytest.mark.all_redis_topologies


def in_group(person: str, chat: str = GROUP, *, shared: bool = False, admin: bool = False):
    mode = GroupSessions.SHARED if shared else GroupSessions.PER_USER
    name = {"telegram:1": "Ana", "telegram:2": "Bob"}.get(person, person)
    return group_speaker(person, chat, mode, author=name, is_chat_admin=admin)


def commands_on(store: SessionStore, model: OpenRouterClient, **settings: Any) -> CommandHandler:
    settings = {"lock_wait_seconds": 10.0, **settings}
    turn_settings = TurnSettings(system_prompt="Be brief.", default_model="test/model", **settings)
    return CommandHandler(ChatService(store, model, turn_settings))


async def turn(commands: CommandHandler, speaker: Speaker | str, message: str) -> str:
    outcome = await commands.handle(speaker, message)
    assert isinstance(outcome, TurnReply), outcome
    async with outcome.turn as running:
        return "".join([delta async for delta in running.deltas()])


async def say(commands: CommandHandler, speaker: Speaker | str, message: str) -> Reply:
    outcome = await commands.handle(speaker, message)
    assert isinstance(outcome, Reply), outcome
    return outcome


def last_prompt(fake: FakeOpenRouter) -> str:
    """Everything the model was sent in its last request, as one text."""
    return json.dumps(fake.requests[-1].body["messages"], ensure_ascii=False)


# --- per_user: a person's sessions in each chat are apart ------------------------------------


async def test_words_said_in_a_dm_never_reach_a_group_nor_one_group_another(
    commands: CommandHandler, fake_openrouter: FakeOpenRouter
):
    await turn(commands, ANA, "my secret is pineapple")
    await turn(commands, in_group(ANA), "hello group")
    assert "pineapple" not in last_prompt(fake_openrouter)
    assert "hello group" in last_prompt(fake_openrouter)

    await turn(commands, in_group(ANA, OTHER_GROUP), "hello other group")
    assert "pineapple" not in last_prompt(fake_openrouter)
    assert "hello group" not in last_prompt(fake_openrouter)

    await turn(commands, ANA, "and back home")
    assert "pineapple" in last_prompt(fake_openrouter)
    assert "group" not in last_prompt(fake_openrouter)


async def test_a_forum_topic_is_a_chat_of_its_own(
    commands: CommandHandler, fake_openrouter: FakeOpenRouter
):
    topic = chat_of("telegram", -1001, 7)
    await turn(commands, in_group(ANA), "said in General")
    await turn(commands, in_group(ANA, topic), "said in the topic")
    assert "General" not in last_prompt(fake_openrouter)


async def test_each_space_lists_and_switches_only_its_own_sessions(commands: CommandHandler):
    await say(commands, ANA, "/new At home")
    await say(commands, in_group(ANA), "/new In the group")
    home = await say(commands, ANA, "/sessions")
    group = await say(commands, in_group(ANA), "/sessions")
    assert "At home" in home.text
    assert "In the group" not in home.text
    assert "In the group" in group.text
    assert "At home" not in group.text
    # A session of another space is not found by id either.
    group_choice = group.choices[0].command
    assert group_choice is not None
    switched = await say(commands, ANA, group_choice)
    assert switched.is_error


async def test_a_persons_space_in_a_chat_lives_in_their_slot(store: SessionStore):
    space = in_group(ANA).space
    assert space == f"{ANA}@{GROUP}"
    assert user_tag(space) == user_tag(ANA)
    # An HTTP user id that merely holds an '@' is a person of its own.
    assert user_tag("ana@example.com") != user_tag("ana")


@pytest.mark.parametrize("sessions_at_home", [4, 5])
async def test_max_sessions_per_user_counts_per_space(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, sessions_at_home: int
):
    commands = commands_on(make_store(redis_client, max_sessions_per_user=5), model_client)
    for number in range(sessions_at_home):
        assert not (await say(commands, ANA, f"/new home {number}")).is_error
    assert not (await say(commands, in_group(ANA), "/new in the group")).is_error
    home_again = await say(commands, ANA, "/new one more at home")
    assert home_again.is_error == (sessions_at_home == 5)


# --- shared: one set of sessions per chat ----------------------------------------------------


async def test_a_shared_chat_has_one_conversation_whose_messages_carry_their_authors(
    commands: CommandHandler, fake_openrouter: FakeOpenRouter
):
    await turn(commands, in_group(ANA, shared=True), "I like tea")
    await turn(commands, in_group(BOB, shared=True), "I prefer coffee")
    sent = fake_openrouter.requests[-1].body["messages"]
    users = [message["content"] for message in sent if message["role"] == "user"]
    assert users == ["Ana: I like tea", "Bob: I prefer coffee"]

    listing = await say(commands, in_group(BOB, shared=True), "/sessions")
    assert "I like tea" in listing.text  # the title Ana's first message gave it
    history = await say(commands, in_group(BOB, shared=True), "/history")
    assert "Ana: I like tea" in history.text


async def test_a_shared_chat_keeps_nothing_of_its_members_own_spaces(
    commands: CommandHandler, fake_openrouter: FakeOpenRouter
):
    await turn(commands, ANA, "my secret is pineapple")
    await turn(commands, in_group(ANA), "my group secret is mango")
    await turn(commands, in_group(ANA, shared=True), "hello all")
    assert "pineapple" not in last_prompt(fake_openrouter)
    assert "mango" not in last_prompt(fake_openrouter)


async def test_the_author_prefix_does_not_count_against_the_message_length(
    redis_client: aioredis.Redis, model_client: OpenRouterClient
):
    commands = commands_on(make_store(redis_client, max_message_length=20), model_client)
    assert await turn(commands, in_group(ANA, shared=True), "x" * 20)
    refused = await say(commands, in_group(ANA, shared=True), "x" * 21)
    assert refused.is_error


async def test_only_the_creator_or_a_chat_admin_deletes_a_shared_session(
    commands: CommandHandler,
):
    await say(commands, in_group(ANA, shared=True), "/new Ana's plan")
    confirm = await say(commands, in_group(BOB, shared=True), "/delete")
    assert confirm.is_error
    assert "started this conversation" in confirm.text
    session_id = (await say(commands, in_group(ANA, shared=True), "/delete")).choices[0].command
    assert session_id is not None
    refused = await say(commands, in_group(BOB, shared=True), session_id)
    assert refused.is_error  # the confirmation's own command, replayed by someone else

    by_admin = await say(commands, in_group(BOB, shared=True, admin=True), session_id)
    assert not by_admin.is_error
    assert "Ana's plan" in by_admin.text

    await say(commands, in_group(ANA, shared=True), "/new Ana's second")
    own = (await say(commands, in_group(ANA, shared=True), "/delete")).choices[0].command
    assert own is not None
    assert not (await say(commands, in_group(ANA, shared=True), own)).is_error


async def test_only_the_creator_or_a_chat_admin_renames_a_shared_session(
    commands: CommandHandler,
):
    await say(commands, in_group(ANA, shared=True), "/new Ana's plan")
    refused = await say(commands, in_group(BOB, shared=True), "/rename Bob's plan")
    assert refused.is_error
    assert "started this conversation" in refused.text
    assert (await commands.store.list_sessions(GROUP)).sessions[0].title == "Ana's plan"

    by_admin = await say(commands, in_group(BOB, shared=True, admin=True), "/rename Our plan")
    assert not by_admin.is_error
    by_creator = await say(commands, in_group(ANA, shared=True), "/rename Ana's again")
    assert not by_creator.is_error
    assert (await commands.store.list_sessions(GROUP)).sessions[0].title == "Ana's again"
    # In per-user group spaces each member renames their own, as in their DM.
    await say(commands, in_group(BOB), "/new Bob's own")
    assert not (await say(commands, in_group(BOB), "/rename Mine")).is_error


async def test_a_session_a_turn_creates_in_a_shared_chat_is_its_writers(
    commands: CommandHandler, redis_client: aioredis.Redis
):
    await turn(commands, in_group(BOB, shared=True), "first words")
    listing = await commands.store.list_sessions(GROUP)
    (session,) = listing.sessions
    assert await redis_client.hget(session_key(session.id), "creator") == BOB
    assert (await say(commands, in_group(ANA, shared=True), "/delete")).is_error
    assert (await say(commands, in_group(BOB, shared=True), "/delete")).choices


# --- limits stay per person, across every space ----------------------------------------------


async def test_the_rate_limit_is_the_persons_across_their_dm_their_group_space_and_shared_chats(
    redis_client: aioredis.Redis, model_client: OpenRouterClient
):
    commands = commands_on(make_store(redis_client, rate_limit_messages=3), model_client)
    await turn(commands, ANA, "one")
    await turn(commands, in_group(ANA), "two")
    await turn(commands, in_group(ANA, OTHER_GROUP, shared=True), "three")
    for speaker in (ANA, in_group(ANA), in_group(ANA, OTHER_GROUP, shared=True)):
        with pytest.raises(RateLimited):
            await turn(commands, speaker, "four")
    # Bob's own limit is untouched by Ana's turns in the chat they share.
    assert await turn(commands, in_group(BOB, OTHER_GROUP, shared=True), "bob's first")
    assert len(await redis_client.zrange(user_turns_key(ANA), 0, -1)) == 3
    assert await redis_client.zcard(user_turns_key(OTHER_GROUP)) == 0


async def test_a_shared_chats_turns_spend_their_writers_daily_budget(
    redis_client: aioredis.Redis, model_client: OpenRouterClient
):
    budget = 10_000
    commands = commands_on(make_store(redis_client, daily_token_budget=budget), model_client)
    day = await today(redis_client)
    await turn(commands, in_group(ANA, shared=True), "hello")
    spent_by_ana = await spent_today(redis_client, ANA, day)
    assert 0 < spent_by_ana < 1000  # settled to the turn's usage, its reservation given back
    assert await spent_today(redis_client, GROUP, day) == 0

    await spend(redis_client, ANA, budget, day=day)
    with pytest.raises(DailyBudgetExhausted):
        await turn(commands, in_group(ANA, shared=True), "more")
    with pytest.raises(DailyBudgetExhausted):
        await turn(commands, ANA, "more at home")
    assert await turn(commands, in_group(BOB, shared=True), "bob may")


async def spent_today(redis_client: aioredis.Redis, person: str, day: int) -> int:
    return int(await redis_client.get(user_tokens_key(person, day)) or 0)


async def test_a_shared_chats_turn_that_never_began_costs_its_writer_nothing(
    redis_client: aioredis.Redis, model_client: OpenRouterClient
):
    store = make_store(redis_client, rate_limit_messages=5, daily_token_budget=10_000)
    commands = commands_on(store, model_client, lock_wait_seconds=0.2)
    await turn(commands, in_group(ANA, shared=True), "opens the session")
    day = await today(redis_client)
    before = (
        await spent_today(redis_client, ANA, day),
        await redis_client.zcard(user_turns_key(ANA)),
    )
    (session,) = (await store.list_sessions(GROUP)).sessions
    await redis_client.set(session_key(session.id, ":lock"), "another-turn", px=10_000)

    with pytest.raises(SessionBusy):
        await turn(commands, in_group(ANA, shared=True), "while busy")

    after = (
        await spent_today(redis_client, ANA, day),
        await redis_client.zcard(user_turns_key(ANA)),
    )
    assert after == before


async def test_many_members_of_a_shared_chat_at_once_each_pay_their_own_turns(
    redis_client: aioredis.Redis, model_client: OpenRouterClient
):
    store = make_store(redis_client, rate_limit_messages=2)
    commands = commands_on(store, model_client, lock_wait_seconds=30)
    members = [f"discord:{number}" for number in range(10)]
    chat = chat_of("discord", 555)

    async def member_turn(person: str, number: int) -> str:
        speaker = group_speaker(person, chat, GroupSessions.SHARED, author=person)
        try:
            return await turn(commands, speaker, f"message {number}")
        except RateLimited:
            return "refused"

    results = await asyncio.gather(*(member_turn(p, n) for p in members for n in range(3)))
    assert results.count("refused") == len(members)  # each member's third, exactly
    for person in members:
        assert await redis_client.zcard(user_turns_key(person)) == 2
    (session,) = (await store.list_sessions(chat)).sessions
    assert session.message_count == 2 * 2 * len(members)
