"""The store when Redis misbehaves: full memory, a flushed script cache.

The turn-level tests check every session afterwards with tests/stored_sessions.py: no fault
may leave a session half-written.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from core.chat import ChatService, TurnSettings
from core.commands import CONFIRM, CommandHandler, Reply, TurnReply
from core.conversation import Role
from core.errors import ChatbridgeError, StoreFull, StoreUnavailable
from core.llm.openrouter import OpenRouterClient
from core.messages import describe, text
from core.sessions.limits import SessionLimits
from core.sessions.store import SessionStore
from core.settings import load_settings
from core.storage.connection import redis_from_settings
from tests.redis_process import RedisProcess
from tests.shipped_redis_conf import durable_redis
from tests.stored_sessions import census

MODEL = "test/model"
BIG = "x" * 3000
ROUNDS = 4


@pytest.fixture
async def small_redis(tmp_path: Path) -> AsyncIterator[aioredis.Redis]:
    """A redis-server that reaches maxmemory quickly, with the policy redis.conf ships."""
    server = RedisProcess(tmp_path, "--maxmemory", "3mb", "--maxmemory-policy", "noeviction")
    server.start()
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    yield client
    await client.aclose()
    server.stop()


async def fill_until_full(store: SessionStore) -> int:
    """Append large messages over many users until Redis refuses; returns how many users."""
    for number in range(10_000):
        user = f"cli:filler{number}"
        try:
            session = await store.create_session(user, default_model=MODEL)
            for _ in range(20):
                await store.append_message(session.id, Role.USER, BIG)
        except StoreFull:
            return number
    raise AssertionError("Redis never reported full memory")


async def test_at_maxmemory_writes_are_refused_and_no_session_is_left_half_written(
    small_redis: aioredis.Redis,
):
    store = SessionStore(small_redis, SessionLimits(max_messages_per_session=100))
    users = await fill_until_full(store)
    assert users > 0
    for number in range(users + 1):
        for session in (await store.list_sessions(f"cli:filler{number}")).sessions:
            page = await store.read_messages(session.id, limit=100)
            assert page.total == session.message_count
            assert all(message.content == BIG for message in page.messages)


async def test_at_maxmemory_deleting_still_works_and_frees_room(small_redis: aioredis.Redis):
    store = SessionStore(small_redis, SessionLimits(max_messages_per_session=100))
    users = await fill_until_full(store)
    for number in range(users):
        for session in (await store.list_sessions(f"cli:filler{number}")).sessions:
            await store.delete_session(session.id, owner=f"cli:filler{number}")
    session = await store.create_session("cli:after", default_model=MODEL)
    await store.append_message(session.id, Role.USER, "room again")


async def test_a_flushed_script_cache_is_reloaded_transparently(
    store: SessionStore, redis_client: aioredis.Redis
):
    session = await store.create_session("cli:ana", default_model=MODEL)
    await redis_client.script_flush()
    await store.append_message(session.id, Role.USER, "after a restart without scripts")
    assert (await store.read_messages(session.id)).total == 1


async def run_turn(chat: ChatService, user_id: str, message: str) -> None:
    async with chat.turn(message, user_id=user_id) as turn:
        async for _ in turn.deltas():
            pass


async def test_a_script_cache_flushed_between_rounds_of_many_turns_loses_none(
    chat: ChatService, redis_client: aioredis.Redis
):
    """As after a restart or a failover, every round starts on an empty cache, all at once."""
    users = [f"telegram:{number}" for number in range(20)]
    for number in range(ROUNDS):
        await redis_client.script_flush()
        await asyncio.gather(*(run_turn(chat, user, f"{user} turn {number}") for user in users))

    found = await census(redis_client)
    found.assert_whole()
    for user, sessions in found.by_user().items():
        (session,) = sessions
        expected = []
        for number in range(ROUNDS):
            question = f"{user} turn {number}"
            expected += [("user", question), ("assistant", f"echo: {question}")]
        assert session.conversation == expected


@pytest.fixture
async def shipped_redis(tmp_path: Path) -> AsyncIterator[aioredis.Redis]:
    """A redis-server with the shipped maxmemory policy (noeviction), persistence and all."""
    server = durable_redis(tmp_path)
    server.start()
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    yield client
    await client.aclose()
    server.stop()


async def test_maxmemory_reached_mid_stream_refuses_new_turns_as_full_and_keeps_sessions_whole(
    shipped_redis: aioredis.Redis, model_client: OpenRouterClient, turn_settings: TurnSettings
):
    """The default limits (rate limit on): each user talks until their turn is refused."""
    store = SessionStore(shipped_redis, SessionLimits())
    commands = CommandHandler(ChatService(store, model_client, turn_settings))
    completed: list[str] = []
    enough = asyncio.Event()

    async def talk_until_refused(user: str, locale: str) -> str:
        for number in itertools.count(1):
            outcome = await commands.handle(user, f"{user} turn {number}", locale=locale)
            assert isinstance(outcome, TurnReply)
            try:
                async with outcome.turn as turn:
                    async for _ in turn.deltas():
                        pass
            except ChatbridgeError as error:
                return describe(error, locale)
            completed.append(user)
            if len(completed) >= 60:
                enough.set()
        raise AssertionError("unreachable")

    talkers = [(f"discord:{number}", ("en", "pt-BR")[number % 2]) for number in range(30)]
    loops = [asyncio.create_task(talk_until_refused(*talker)) for talker in talkers]
    await enough.wait()
    used = int((await shipped_redis.info("memory"))["used_memory"])
    # Full from here on: below what is used, so that memory freed meanwhile (client buffers)
    # cannot let the talkers on until their rate limit refuses them instead.
    await shipped_redis.config_set("maxmemory", used // 2)

    answers = await asyncio.wait_for(asyncio.gather(*loops), 30)

    assert answers == [describe(StoreFull(), locale) for _, locale in talkers]
    found = await census(shipped_redis)
    found.assert_whole()
    for session in found.sessions.values():  # a turn that started was answered and stored
        roles = [role for role, _ in session.conversation]
        assert roles == ["user", "assistant"] * (len(roles) // 2)
    assert sum(len(s.conversation) for s in found.sessions.values()) == 2 * len(completed)

    # Still at the limit: reading and deleting work, and deleting frees room for a turn.
    user = talkers[0][0]
    listing = await commands.handle(user, "/sessions")
    assert isinstance(listing, Reply)
    assert not listing.is_error
    (session,) = found.by_user()[user]
    deleted = await commands.handle(user, f"/delete {session.session_id} {CONFIRM}")
    assert deleted == Reply(text("en", "deleted", title=session.fields["title"]))
    assert session.session_id not in (await census(shipped_redis)).sessions


async def test_a_hung_redis_answers_unavailable_instead_of_holding_the_user(
    own_redis: RedisProcess,
):
    """SIGSTOP: Redis keeps the connection but never answers. Every call, the first and those
    after it (whose connecting stalls too), ends as StoreUnavailable; after SIGCONT all works."""
    settings = load_settings(redis_url=own_redis.url)
    client = redis_from_settings(settings)
    store = SessionStore(client, SessionLimits())
    try:
        session = await store.create_session("cli:ana", default_model=MODEL)
        own_redis.pause()
        try:
            async with asyncio.timeout(10):  # "no hang": what an HTTP client waits here
                outcomes = await asyncio.gather(
                    *(store.list_sessions(f"cli:user{n}") for n in range(20)),
                    store.get_session(session.id, owner="cli:ana"),
                    return_exceptions=True,
                )
        finally:
            own_redis.resume()
        assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes), outcomes
        assert (await store.get_session(session.id, owner="cli:ana")).id == session.id
    finally:
        await client.aclose()
