"""A burst of concurrent turns on the service's own Redis client (core/storage/connection.py),
on each topology: more commands in flight than the client keeps connections wait for one,
they never fail (redis-py's pools refuse the 101st connection by default)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from core.sessions.limits import SessionLimits
from core.sessions.store import SessionStore
from core.storage.connection import MAX_CONNECTIONS, RedisClient, close_redis, redis_from_settings

pytestmark = pytest.mark.all_redis_topologies

MODEL = "test/model"


@pytest.fixture
async def service_client(
    redis_topology: str, request: pytest.FixtureRequest
) -> AsyncIterator[RedisClient]:
    del redis_topology  # parametrizes the test: each topology
    client = redis_from_settings(request.getfixturevalue("redis_topology_settings"))
    await client.flushall()
    yield client
    await close_redis(client)


async def one_turn(store: SessionStore, user: str) -> None:
    start = await store.begin_turn(
        user, "hello", session_id=None, lock_token=secrets.token_hex(12), lock_ttl_ms=30_000,
        context_tokens=16_000, default_model=MODEL,
    )  # fmt: skip
    await store.finish_turn(start, "hi", model=MODEL, usage=None, is_retry=False, spent_tokens=0)


@pytest.mark.parametrize("turns", [MAX_CONNECTIONS - 1, MAX_CONNECTIONS, 3 * MAX_CONNECTIONS])
async def test_more_turns_at_once_than_connections_all_complete(
    service_client: RedisClient, turns: int
):
    store = SessionStore(service_client, SessionLimits(rate_limit_messages=0))
    await asyncio.gather(*(one_turn(store, f"telegram:{n}") for n in range(turns)))
    sessions = await asyncio.gather(*(store.active_session(f"telegram:{n}") for n in range(turns)))
    assert all(session is not None for session in sessions)
