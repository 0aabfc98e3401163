"""A session's own system prompt (/persona) through the real store on a real Redis: what the
model is sent, its length limit, reset, /retry, and the backup line that carries it."""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aioredis

from core.backup.lines import backup_lines, restore_lines
from core.chat import ChatService
from core.errors import EmptyMessage, SystemPromptTooLong
from core.sessions.limits import MAX_SYSTEM_PROMPT_LENGTH
from core.sessions.store import SessionStore
from tests.fakes.openrouter_server import FakeOpenRouter

USER = "telegram:42"
GLOBAL_PROMPT = "Be brief."  # the test settings' SYSTEM_PROMPT
PIRATE = "You are a pirate. Answer in pirate speak."


async def run_turn(chat: ChatService, text: str) -> str:
    async with chat.turn(text, user_id=USER) as turn:
        return "".join([delta async for delta in turn.deltas()])


def system_message_sent(fake_openrouter: FakeOpenRouter) -> object:
    first = fake_openrouter.requests[-1].body["messages"][0]
    assert first["role"] == "system"
    return first["content"]


async def persona_session(store: SessionStore, prompt: str | None) -> str:
    session = await store.create_session(USER, default_model="test/model", system_prompt=prompt)
    return session.id


async def test_a_session_without_a_persona_sends_the_global_system_prompt(
    chat: ChatService, fake_openrouter: FakeOpenRouter
) -> None:
    await run_turn(chat, "hello")
    assert system_message_sent(fake_openrouter) == GLOBAL_PROMPT
    session = await chat.store.active_session(USER)
    assert session is not None
    assert session.system_prompt is None


async def test_the_sessions_persona_is_the_system_message_of_its_next_turn(
    chat: ChatService, fake_openrouter: FakeOpenRouter
) -> None:
    await run_turn(chat, "hello")
    session = await chat.store.active_session(USER)
    assert session is not None
    updated = await chat.store.update_session(session.id, owner=USER, system_prompt=PIRATE)
    assert updated.system_prompt == PIRATE
    await run_turn(chat, "and now?")
    sent = fake_openrouter.requests[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": PIRATE}
    assert [m["content"] for m in sent[1:]] == ["hello", "echo: hello", "and now?"]


async def test_a_persona_given_at_creation_is_sent_and_listed(
    chat: ChatService, fake_openrouter: FakeOpenRouter
) -> None:
    session_id = await persona_session(chat.store, PIRATE)
    await run_turn(chat, "ahoy")
    assert system_message_sent(fake_openrouter) == PIRATE
    listed = await chat.store.list_sessions(USER)
    assert [(s.id, s.system_prompt) for s in listed.sessions] == [(session_id, PIRATE)]


async def test_reset_returns_the_session_to_the_global_system_prompt(
    chat: ChatService, fake_openrouter: FakeOpenRouter
) -> None:
    session_id = await persona_session(chat.store, PIRATE)
    reset = await chat.store.update_session(session_id, owner=USER, is_system_prompt_reset=True)
    assert reset.system_prompt is None
    await run_turn(chat, "hello")
    assert system_message_sent(fake_openrouter) == GLOBAL_PROMPT


async def test_retry_answers_again_with_the_sessions_persona(
    chat: ChatService, fake_openrouter: FakeOpenRouter
) -> None:
    await persona_session(chat.store, PIRATE)
    await run_turn(chat, "pick a number")
    async with chat.retry(user_id=USER) as retry:
        _ = [d async for d in retry.deltas()]
    assert len(fake_openrouter.requests) == 2
    assert system_message_sent(fake_openrouter) == PIRATE


@pytest.mark.parametrize("length", [MAX_SYSTEM_PROMPT_LENGTH - 1, MAX_SYSTEM_PROMPT_LENGTH])
async def test_a_persona_up_to_the_limit_is_kept_whole(
    chat: ChatService, fake_openrouter: FakeOpenRouter, length: int
) -> None:
    prompt = "é" * length  # characters, not bytes
    session_id = await persona_session(chat.store, None)
    updated = await chat.store.update_session(session_id, owner=USER, system_prompt=prompt)
    assert updated.system_prompt == prompt
    await run_turn(chat, "hello")
    assert system_message_sent(fake_openrouter) == prompt


async def test_a_persona_over_the_limit_is_refused_and_nothing_changes(
    store: SessionStore,
) -> None:
    session_id = await persona_session(store, PIRATE)
    too_long = "x" * (MAX_SYSTEM_PROMPT_LENGTH + 1)
    with pytest.raises(SystemPromptTooLong) as refused:
        await store.update_session(session_id, owner=USER, system_prompt=too_long)
    assert refused.value.params == {"length": MAX_SYSTEM_PROMPT_LENGTH + 1, "limit": 4000}
    with pytest.raises(SystemPromptTooLong):
        await store.create_session(USER, default_model="test/model", system_prompt=too_long)
    assert (await store.get_session(session_id)).system_prompt == PIRATE
    assert len((await store.list_sessions(USER)).sessions) == 1


async def test_an_empty_persona_is_refused(store: SessionStore) -> None:
    session_id = await persona_session(store, None)
    with pytest.raises(EmptyMessage):
        await store.update_session(session_id, owner=USER, system_prompt="  \n")


async def test_one_update_changes_title_model_and_persona_together(store: SessionStore) -> None:
    session_id = await persona_session(store, None)
    updated = await store.update_session(
        session_id, owner=USER, title="Sea", model="x/y", system_prompt=PIRATE
    )
    assert (updated.title, updated.model, updated.system_prompt) == ("Sea", "x/y", PIRATE)
    assert await store.get_session(session_id) == updated


async def test_the_backup_line_carries_a_persona_only_when_the_session_has_one(
    store: SessionStore, redis_client: aioredis.Redis
) -> None:
    with_persona = await persona_session(store, PIRATE)
    without = await persona_session(store, None)
    lines = [line async for line in backup_lines(redis_client)]
    records = {r["id"]: r for r in map(json.loads, lines) if r.get("kind") == "session"}
    assert records[with_persona]["systemPrompt"] == PIRATE
    assert "systemPrompt" not in records[without]
    await redis_client.flushall()
    await restore_lines(redis_client, lines, ttl_seconds=store.limits.ttl_seconds)
    assert (await store.get_session(with_persona)).system_prompt == PIRATE
    assert (await store.get_session(without)).system_prompt is None
