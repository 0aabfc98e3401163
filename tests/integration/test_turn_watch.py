"""The locks of every turn a process runs are kept in one round trip (core/chat.py, _TurnWatch;
SessionStore.extend_locks), on a real redis-server: a lock lost to another writer is told
apart, and a long answer keeps its session through many extensions."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import redis.asyncio as aioredis

from core.chat import ChatService, TurnSettings
from core.llm.openrouter import OpenRouterClient
from core.sessions.keys import session_key
from core.sessions.store import SessionStore, TurnStart
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.integration.round_trips import CountingConnection, counting_client  # noqa: F401
from tests.integration.store_turns import make_store
from tests.waiting import until

MODEL = "test/model"


async def begun(store: SessionStore, user: str) -> TurnStart:
    return await store.begin_turn(
        user, "hello", session_id=None, lock_token=secrets.token_hex(12), lock_ttl_ms=30_000,
        context_tokens=16_000, default_model=MODEL,
    )  # fmt: skip


@pytest.mark.parametrize("turns", [1, 2, 50])
async def test_every_running_turns_lock_is_extended_in_one_round_trip(
    counting_client: aioredis.Redis,  # noqa: F811
    turns: int,
):
    store = make_store(counting_client)
    started = [await begun(store, f"telegram:{n}") for n in range(turns)]
    await store.extend_locks([(started[0].session.id, started[0].lock_token)], 30_000)  # loaded
    CountingConnection.writes = 0
    held = await store.extend_locks([(s.session.id, s.lock_token) for s in started], 60_000)
    assert CountingConnection.writes == 1
    assert held == [True] * turns
    ttl = await counting_client.pttl(session_key(started[-1].session.id, ":lock"))
    assert 30_000 < ttl <= 60_000


async def test_a_lock_another_writer_took_is_told_apart(redis_client: aioredis.Redis):
    store = make_store(redis_client)
    first, second = [await begun(store, f"telegram:{n}") for n in range(2)]
    await redis_client.set(session_key(second.session.id, ":lock"), "another-writer")
    held = await store.extend_locks(
        [(first.session.id, first.lock_token), (second.session.id, second.lock_token)], 30_000
    )
    assert held == [True, False]


async def test_a_long_answer_keeps_its_session_through_many_extensions(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    store = make_store(redis_client)
    # A 300 ms lock: extended every 100 ms, so an answer held for ten times that needs about 30.
    chat = ChatService(store, model_client, TurnSettings("", MODEL, lock_ttl_ms=300))
    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=1, times=3)

    async def answer(user: str) -> str:
        async with chat.turn("take your time", user_id=user) as turn:
            return "".join([delta async for delta in turn.deltas()])

    answers = asyncio.gather(*(answer(f"telegram:{n}") for n in range(3)))
    await until(lambda: len(fake_openrouter.requests) == 3, what="three turns streaming")
    sessions = []
    for n in range(3):
        session = await store.active_session(f"telegram:{n}")
        assert session is not None
        sessions.append(session.id)
    expiries = []
    for _ in range(3):  # three times past a whole ttl: only the watch keeps the locks
        await asyncio.sleep(0.35)
        expiries.append([await redis_client.pttl(session_key(s, ":lock")) for s in sessions])
    gate.set()
    assert await answers == ["echo: take your time"] * 3
    assert all(ttl > 0 for round_ in expiries for ttl in round_)
