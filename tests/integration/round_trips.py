"""Counting a store call's Redis round trips: a client whose socket writes are counted.

A test module takes the fixture by importing it (`from tests.integration.round_trips import
counting_client`), and reads `CountingConnection.writes` after zeroing it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection

from tests.redis_process import RedisProcess


class CountingConnection(Connection):
    """One socket write is one round trip (a pipeline is one write)."""

    writes = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.writes += 1
        await super().send_packed_command(command, check_health)


@pytest.fixture
async def counting_client(
    redis_server: RedisProcess, redis_client: aioredis.Redis
) -> AsyncIterator[aioredis.Redis]:
    """A client on the test Redis (emptied by `redis_client`) that counts its round trips."""
    client = aioredis.Redis.from_url(
        redis_server.url,
        decode_responses=True,
        encoding_errors="surrogateescape",
        connection_class=CountingConnection,
    )
    yield client
    await client.aclose()
