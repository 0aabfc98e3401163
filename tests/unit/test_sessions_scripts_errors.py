"""The store's one edge with redis-py: what its failures become (core/sessions/scripts.py)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection

from core.errors import StoreUnavailable
from core.observability.activity import SessionActivity
from core.observability.metrics import Metrics
from core.sessions.scripts import LuaScripts


@pytest.fixture
def scripts() -> LuaScripts:
    # Nothing here reaches a server: only the translation of failures is under test.
    return LuaScripts(aioredis.Redis(), SessionActivity(60), Metrics())


async def write_on_a_connection_closed_under_redis_py() -> None:
    """What redis-py 8.1 does when another task disconnected the connection it writes on (a
    Cluster failover, redis/redis-py#4287): AttributeError from its own code."""
    await Connection()._send_packed_command([b"*1\r\n$4\r\nPING\r\n"])


async def a_bug_of_ours() -> None:
    missing: object = None
    missing.attribute  # type: ignore[attr-defined]  # noqa: B018


async def test_a_connection_closed_under_redis_py_is_store_unavailable(scripts: LuaScripts):
    with pytest.raises(StoreUnavailable) as unavailable:
        await scripts.translate(write_on_a_connection_closed_under_redis_py())
    assert isinstance(unavailable.value.__cause__, AttributeError)


async def test_an_attribute_error_of_our_own_is_not_hidden_as_redis_trouble(scripts: LuaScripts):
    with pytest.raises(AttributeError):
        await scripts.translate(a_bug_of_ours())
