"""Storing an answer the model was paid for (`SessionStore.finish_turn`) is tried again when
Redis did not answer in time — under load, when no connection of the pool came free within its
wait: the answer is stored once, and a store that never succeeds still ends as
StoreUnavailable. A real redis-server, a pool of one connection that the test holds."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable

import pytest
import redis.asyncio as aioredis

from core.conversation import Message, Session
from core.errors import StoreUnavailable
from core.observability.metrics import Metrics
from core.sessions.keys import session_key
from core.sessions.limits import SessionLimits
from core.sessions.store import FINISH_RETRY_DELAYS, SessionStore, TurnStart
from tests.redis_process import RedisProcess
from tests.waiting import until

USER = "telegram:42"
MODEL = "test/model"
POOL_WAIT = 0.2  # seconds a command waits for the pool's one connection


@pytest.fixture
async def one_connection(redis_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    pool = aioredis.BlockingConnectionPool.from_url(
        redis_server.url, decode_responses=True, max_connections=1, timeout=POOL_WAIT
    )
    client = aioredis.Redis(connection_pool=pool)
    await client.flushall()
    yield client
    await client.aclose()
    await pool.aclose()  # a pool given to a client is not the client's to close


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(models=[MODEL])


@pytest.fixture
async def begun(one_connection: aioredis.Redis, metrics: Metrics) -> tuple[SessionStore, TurnStart]:
    """A store on the one connection, and a turn begun on it."""
    store = SessionStore(one_connection, SessionLimits(rate_limit_messages=0), metrics)
    start = await store.begin_turn(
        USER, "hello", session_id=None, lock_token=secrets.token_hex(12), lock_ttl_ms=30_000,
        context_tokens=16_000, default_model=MODEL,
    )  # fmt: skip
    return store, start


def answer(store: SessionStore, start: TurnStart) -> Awaitable[tuple[Message, Session]]:
    return store.finish_turn(start, "hi", model=MODEL, usage=None, is_retry=False, spent_tokens=0)


def unavailable_errors(metrics: Metrics) -> float:
    sample = "chatbridge_redis_errors_total"
    return metrics.registry.get_sample_value(sample, {"kind": "unavailable"}) or 0.0


async def test_an_answer_that_found_no_free_connection_is_stored_once_one_frees_up(
    one_connection: aioredis.Redis, metrics: Metrics, begun: tuple[SessionStore, TurnStart]
):
    store, start = begun
    pool = one_connection.connection_pool
    held = await pool.get_connection()  # another command's, for longer than the pool's wait

    task = asyncio.ensure_future(answer(store, start))
    await until(lambda: unavailable_errors(metrics) >= 1, what="the first try's failure")
    assert not task.done()  # waiting to try again, not failed
    await pool.release(held)
    message, session = await task

    assert message.content == "hi"
    page = await store.read_messages(session.id, limit=10)
    assert [(m.role.value, m.content) for m in page.messages] == [
        ("user", "hello"),
        ("assistant", "hi"),
    ]
    assert not await one_connection.exists(session_key(session.id, ":lock"))


async def test_an_answer_that_never_finds_a_connection_ends_as_store_unavailable(
    one_connection: aioredis.Redis, metrics: Metrics, begun: tuple[SessionStore, TurnStart]
):
    store, start = begun
    pool = one_connection.connection_pool
    held = await pool.get_connection()
    try:
        with pytest.raises(StoreUnavailable):
            await answer(store, start)
    finally:
        await pool.release(held)
    assert unavailable_errors(metrics) == len(FINISH_RETRY_DELAYS) + 1  # every try, no more
    page = await store.read_messages(start.session.id, limit=10)
    assert [(m.role.value, m.content) for m in page.messages] == [("user", "hello")]
