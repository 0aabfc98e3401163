"""Fixtures shared by every test: one real redis-server per run, an empty database per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from core.session_store import SessionLimits, SessionStore
from tests.redis_process import RedisProcess


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One redis-server for the whole run, on a free port, in a temp dir."""
    server = RedisProcess(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis_client(redis_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    """A client on an empty database."""
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def limits() -> SessionLimits:
    return SessionLimits()


@pytest.fixture
def store(redis_client: aioredis.Redis, limits: SessionLimits) -> SessionStore:
    return SessionStore(redis_client, limits)
