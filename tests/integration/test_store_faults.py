"""The store when Redis misbehaves: full memory, a flushed script cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from core.errors import StoreFull
from core.models import Role
from core.session_limits import SessionLimits
from core.session_store import SessionStore
from tests.redis_process import RedisProcess

MODEL = "test/model"
BIG = "x" * 3000


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
