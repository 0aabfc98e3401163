"""Fenced turns: a turn stores its answer only while it still holds its session.

A lock can lapse (Redis out of reach for longer than its ttl, a failover that lost the key),
and then another turn can take the session. The first turn's answer must then not land after
the second's messages, and the turn ends as soon as its keeper sees it. A lapsed lock that
nobody took is taken back: nothing came between, so the answer the user saw is kept
(lua/lib.lua, holds_turn). On the real store and client, with the fake OpenRouter server.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from core.chat import ChatService, TurnSettings
from core.conversation import Role
from core.errors import ModelRejected, TurnLockLost
from core.llm.openrouter import OpenRouterClient
from core.sessions.keys import session_key
from core.sessions.store import SessionStore
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.waiting import until

MODEL = "test/model"
USER = "telegram:77"
ANOTHER_TURN = "lock-token-of-another-turn"


@pytest.fixture
def quick_chat(store: SessionStore, model_client: OpenRouterClient) -> ChatService[SessionStore]:
    """Its keeper extends the lock every 100 ms."""
    return ChatService(store, model_client, TurnSettings("", MODEL, lock_ttl_ms=300))


async def collect(chat: ChatService[SessionStore], text: str, shown: list[str]) -> str:
    async with chat.turn(text, user_id=USER) as turn:
        async for delta in turn.deltas():
            shown.append(delta)
    return "".join(shown)


async def talk(chat: ChatService[SessionStore], text: str) -> str:
    return await collect(chat, text, [])


async def lock_of(store: SessionStore) -> str:
    session = await store.active_session(USER)
    assert session is not None
    return session_key(session.id, ":lock")


async def conversation(store: SessionStore) -> list[tuple[str, str]]:
    session = await store.active_session(USER)
    assert session is not None
    page = await store.read_messages(session.id)
    return [(m.role.value, m.content) for m in page.messages]


async def started_streaming(
    chat: ChatService[SessionStore], fake: FakeOpenRouter, text: str
) -> tuple[asyncio.Task[str], list[str], asyncio.Event]:
    """A turn whose model sent two of its four deltas and then waits for the returned gate."""
    gate = asyncio.Event()
    fake.pause(gate, after_deltas=2)
    shown: list[str] = []
    task = asyncio.create_task(collect(chat, text, shown))
    await until(lambda: len(shown) == 2, what="two deltas shown")
    return task, shown, gate


async def test_an_answer_whose_session_another_turn_took_is_not_stored_and_turns_never_interleave(
    chat: ChatService[SessionStore],
    store: SessionStore,
    redis_client: aioredis.Redis,
    fake_openrouter: FakeOpenRouter,
):
    first, shown, gate = await started_streaming(chat, fake_openrouter, "Q1")
    await redis_client.delete(await lock_of(store))  # as an expiry would
    assert await talk(chat, "Q2") == "echo: Q2"
    gate.set()

    with pytest.raises(TurnLockLost) as lost:
        await first
    assert lost.value.partial_text == "".join(shown) == "echo: Q1"
    assert await conversation(store) == [("user", "Q1"), ("user", "Q2"), ("assistant", "echo: Q2")]
    second_context = fake_openrouter.requests[-1].body["messages"]
    assert [(m["role"], m["content"]) for m in second_context] == [
        ("system", "Be brief."),
        ("user", "Q1"),
        ("user", "Q2"),
    ]
    assert not await redis_client.exists(await lock_of(store))


async def test_a_turn_whose_lock_another_turn_took_ends_at_once_with_what_was_shown(
    quick_chat: ChatService[SessionStore],
    store: SessionStore,
    redis_client: aioredis.Redis,
    fake_openrouter: FakeOpenRouter,
):
    first, shown, gate = await started_streaming(quick_chat, fake_openrouter, "Q1")
    lock = await lock_of(store)
    await redis_client.set(lock, ANOTHER_TURN, px=30_000)

    with pytest.raises(TurnLockLost) as lost:
        await first  # the model is still paused: the keeper ended the turn
    gate.set()
    assert lost.value.partial_text == "".join(shown)
    assert await conversation(store) == [("user", "Q1")]
    assert await redis_client.get(lock) == ANOTHER_TURN  # not released by the fenced turn


async def test_a_lapsed_lock_nobody_took_is_taken_back_by_the_keeper_and_the_answer_stored(
    quick_chat: ChatService[SessionStore],
    store: SessionStore,
    redis_client: aioredis.Redis,
    fake_openrouter: FakeOpenRouter,
):
    first, _, gate = await started_streaming(quick_chat, fake_openrouter, "Q1")
    lock = await lock_of(store)
    token = await redis_client.get(lock)
    await redis_client.delete(lock)  # as an expiry would
    taken_back = asyncio.create_task(_until_value(redis_client, lock, token))
    await asyncio.wait_for(taken_back, 10)
    gate.set()

    assert await first == "echo: Q1"
    assert await conversation(store) == [("user", "Q1"), ("assistant", "echo: Q1")]
    assert not await redis_client.exists(lock)


# Nothing came between: storing keeps the order, and the user keeps the answer they saw. A turn
# came and failed, leaving its question, or a message was added through the HTTP API (its door
# refuses only while the lock is there): the answer would land after it, so it is fenced out.
STORED_AFTER = {
    "nothing": [("user", "Q1"), ("assistant", "echo: Q1")],
    "a failed turn": [("user", "Q1"), ("user", "Q2")],
    "a message added": [("user", "Q1"), ("system", "a note")],
}


@pytest.mark.parametrize("meanwhile", list(STORED_AFTER))
async def test_an_answer_finished_after_its_lock_lapsed_is_stored_only_if_nobody_wrote_since(
    chat: ChatService[SessionStore],
    store: SessionStore,
    redis_client: aioredis.Redis,
    fake_openrouter: FakeOpenRouter,
    meanwhile: str,
):
    first, _, gate = await started_streaming(chat, fake_openrouter, "Q1")
    await redis_client.delete(await lock_of(store))
    if meanwhile == "a failed turn":
        fake_openrouter.reject(400)
        with pytest.raises(ModelRejected):
            await talk(chat, "Q2")
    if meanwhile == "a message added":
        session = await store.active_session(USER)
        assert session is not None
        await store.add_message(session.id, Role.SYSTEM, "a note", owner=USER)
    gate.set()

    if meanwhile == "nothing":
        assert await first == "echo: Q1"
    else:
        with pytest.raises(TurnLockLost):
            await first
    assert await conversation(store) == STORED_AFTER[meanwhile]
    assert not await redis_client.exists(await lock_of(store))


async def _until_value(redis_client: aioredis.Redis, key: str, value: str | None) -> None:
    while await redis_client.get(key) != value:  # noqa: ASYNC110  (Redis has no event for it)
        await asyncio.sleep(0.01)
