"""The fault proxy of tests/fault_proxy.py on its own: it forwards, drops a reply after Redis
ran the command, resets connections and delays replies, as the turn tests rely on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from core.sessions.scripts import script_source
from core.settings import load_settings
from core.storage.connection import redis_from_settings
from tests.fault_proxy import Command, FaultProxy, evalsha_of
from tests.redis_process import RedisProcess
from tests.waiting import until

INCRBY = "INCRBY"  # what redis-py 8 sends for .incr()


@pytest.fixture
async def proxy(redis_server: RedisProcess) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(redis_server.address) as proxy:
        yield proxy


@pytest.fixture
async def direct(redis_client: aioredis.Redis) -> aioredis.Redis:
    """A client straight to the same redis-server, on an empty database."""
    return redis_client


@pytest.fixture
async def retrying(proxy: FaultProxy) -> AsyncIterator[aioredis.Redis]:
    """chatbridge's own client (its retries on a lost connection) through the proxy."""
    client = redis_from_settings(load_settings(), url=proxy.url)
    yield client
    await client.aclose()


@pytest.fixture
async def once(proxy: FaultProxy) -> AsyncIterator[aioredis.Redis]:
    """A client that never retries, through the proxy."""
    client = aioredis.Redis.from_url(
        proxy.url, decode_responses=True, retry=Retry(NoBackoff(), 0), retry_on_error=[]
    )
    yield client
    await client.aclose()


async def test_commands_and_replies_go_through_and_are_recorded(
    proxy: FaultProxy, once: aioredis.Redis, direct: aioredis.Redis
):
    await once.set("greeting", "hello")
    assert await once.get("greeting") == "hello"
    assert await direct.get("greeting") == "hello"
    assert Command("SET", (b"greeting", b"hello")) in proxy.commands
    async with once.pipeline(transaction=False) as pipe:
        pipe.incr("n").incr("n").lrange("missing", 0, -1)
        assert await pipe.execute() == [1, 2, []]


async def test_a_dropped_reply_comes_after_redis_ran_the_command_and_resets_the_connection(
    proxy: FaultProxy, once: aioredis.Redis, direct: aioredis.Redis
):
    lost = proxy.drop_reply(lambda command: command.name == INCRBY)
    with pytest.raises(redis_errors.ConnectionError):
        await once.incr("counter")
    assert (await lost.fired()).args == (b"counter", b"1")
    assert await direct.get("counter") == "1"
    assert proxy.resets == 1
    assert await once.incr("counter") == 2  # only the next command's reply was dropped


async def test_a_retrying_client_runs_a_command_whose_reply_was_dropped_twice(
    proxy: FaultProxy, retrying: aioredis.Redis, direct: aioredis.Redis
):
    proxy.drop_reply(lambda command: command.name == INCRBY)
    assert await retrying.incr("counter") == 2
    assert await direct.get("counter") == "2"
    assert proxy.count(lambda command: command.name == INCRBY) == 2


async def test_a_dropped_reply_in_a_pipeline_resets_the_whole_pipeline(
    proxy: FaultProxy, once: aioredis.Redis, direct: aioredis.Redis
):
    proxy.drop_reply(lambda command: command.name == INCRBY and command.arg(0) == "second")
    async with once.pipeline(transaction=False) as pipe:
        pipe.incr("first").incr("second")
        with pytest.raises(redis_errors.ConnectionError):
            await pipe.execute()
    assert [await direct.get("first"), await direct.get("second")] == ["1", "1"]


async def test_an_evalsha_is_matched_by_the_name_of_the_script_it_runs(
    proxy: FaultProxy, once: aioredis.Redis
):
    sha = await once.script_load(script_source("lock"))
    await once.evalsha(sha, 1, "session:{abcd}:x:lock", "abcd", "token", "0", "x")
    assert proxy.count(evalsha_of("lock")) == 1
    assert proxy.count(evalsha_of("begin_turn")) == 0


async def test_reset_connections_drops_idle_connections_and_the_client_reconnects(
    proxy: FaultProxy, retrying: aioredis.Redis
):
    await retrying.set("key", "value")
    assert proxy.reset_connections() == 1
    assert await retrying.get("key") == "value"
    assert proxy.resets == 1


async def test_delayed_replies_arrive_after_the_command_took_effect(
    proxy: FaultProxy, once: aioredis.Redis, direct: aioredis.Redis
):
    await once.ping()  # connected before the delay
    proxy.delay_replies(1.0)
    incremented = asyncio.create_task(once.incr("counter"))
    await until(lambda: proxy.replies_delayed == 1, what="the INCR's reply held back")
    assert await direct.get("counter") == "1"
    assert not incremented.done()
    proxy.delay_replies(0)
    assert await incremented == 1
