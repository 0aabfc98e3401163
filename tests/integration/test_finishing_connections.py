"""Under a burst of new turns, an answer already streamed is still stored: new turns' first
round trips take at most all but one in FINISHING_SHARE of the pool's connections, so the
write that finishes a turn never waits behind them (core/sessions/store.py). Without that, an
overloaded process streamed answers and then lost them as store_unavailable (docs/benchmarks.md,
1,000 concurrent streams).

A real redis-server behind the fault proxy, which holds back the replies to begin_turn: the
burst keeps its connections for as long as the test wants, as turns queued on a busy Redis do.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from core.sessions.limits import SessionLimits
from core.sessions.store import FINISHING_SHARE, SessionStore, TurnStart
from tests.fault_proxy import FaultProxy, evalsha_of
from tests.redis_process import RedisProcess
from tests.waiting import until

MODEL = "test/model"
POOL = 5  # connections: new turns may take 4 of them at once
BURST = 10  # new turns at once, more than the pool holds
POOL_WAIT = 0.3  # seconds a command waits for a connection


@pytest.fixture
async def proxy(redis_server: RedisProcess) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(redis_server.address) as proxy:
        yield proxy


@pytest.fixture
async def store(proxy: FaultProxy) -> AsyncIterator[SessionStore]:
    pool = aioredis.BlockingConnectionPool.from_url(
        proxy.url, decode_responses=True, max_connections=POOL, timeout=POOL_WAIT
    )
    client = aioredis.Redis(connection_pool=pool)
    await client.flushall()
    yield SessionStore(client, SessionLimits(rate_limit_messages=0))
    await client.aclose()
    await pool.aclose()  # a pool given to a client is not the client's to close


async def begin(store: SessionStore, user: str) -> TurnStart:
    return await store.begin_turn(
        user, "hello", session_id=None, lock_token=secrets.token_hex(12), lock_ttl_ms=30_000,
        context_tokens=16_000, default_model=MODEL,
    )  # fmt: skip


async def test_an_answer_is_stored_while_a_burst_of_new_turns_holds_the_pool(
    store: SessionStore, proxy: FaultProxy
):
    answering = await begin(store, "telegram:1")
    held = proxy.hold_replies(evalsha_of("begin_turn"))
    burst = [asyncio.create_task(begin(store, f"telegram:{n}")) for n in range(2, 2 + BURST)]
    beginning = POOL - POOL // FINISHING_SHARE
    await until(lambda: held.held >= beginning, what="new turns in their first round trip")

    message, _ = await store.finish_turn(
        answering, "hi", model=MODEL, usage=None, is_retry=False, spent_tokens=0
    )

    assert message.content == "hi"
    assert held.held == beginning  # the burst took no more connections meanwhile
    held.release()
    started = await asyncio.gather(*burst)
    assert len({start.session.id for start in started}) == BURST
