"""Fixtures shared by every test: one real redis-server per run, an empty database per test."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from core.chat import ChatService, TurnSettings
from core.commands import CommandHandler
from core.llm.openrouter import OpenRouterClient, RetryPolicy
from core.sessions.limits import SessionLimits
from core.sessions.store import SessionStore
from core.storage.connection import RedisClient, close_redis, redis_from_settings
from tests.redis_process import RedisProcess

if TYPE_CHECKING:
    from tests.fakes.openrouter_server import FakeOpenRouter

# python-telegram-bot's future behaviour (durations as timedelta), as `python -m bots` sets it.
os.environ.setdefault("PTB_TIMEDELTA", "true")

# Loaded as a plugin (not imported) so pytest rewrites its asserts and every test sees its fixture.
pytest_plugins = (
    "tests.fakes.openrouter_server",
    "tests.fakes.telegram_server",
    "tests.fakes.discord_server",
    "tests.redis_topologies",
)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One redis-server for the whole run, on a free port, in a temp dir."""
    server = RedisProcess(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test alone, free to be killed and restarted."""
    directory = tmp_path / "own-redis"
    directory.mkdir()
    server = RedisProcess(directory)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis_client(
    redis_topology: str, request: pytest.FixtureRequest
) -> AsyncIterator[RedisClient]:
    """A client on an empty database: the session's redis-server, or (in a module marked
    all_redis_topologies) its Cluster or Sentinel set, through chatbridge's own client."""
    if redis_topology == "single":
        server: RedisProcess = request.getfixturevalue("redis_server")
        client: RedisClient = aioredis.Redis.from_url(
            server.url, decode_responses=True, encoding_errors="surrogateescape"
        )
    else:
        client = redis_from_settings(request.getfixturevalue("redis_topology_settings"))
    await client.flushall()
    ours_before = _our_tasks()
    yield client
    await _end_tasks_left_running(ours_before)
    await close_redis(client)


# Where the code whose tasks must not outlive the test's Redis client lives.
_OUR_CODE = tuple(str(Path(__file__).parent.parent / package) for package in ("core", "bots"))


def _our_tasks() -> set[asyncio.Task[object]]:
    """The running tasks whose coroutine is chatbridge's own code."""
    ours = set()
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and code.co_filename.startswith(_OUR_CODE):
            ours.add(task)
    return ours


async def _end_tasks_left_running(before: set[asyncio.Task[object]]) -> None:
    """Cancel what the test left running in the background (a lock keeper, a summary, a turn
    nobody waited for): on a closed client it would open a connection nobody closes, garbage
    collected (ResourceWarning) during some later test."""
    left = _our_tasks() - before - {asyncio.current_task()}
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)


@pytest.fixture
def limits() -> SessionLimits:
    return SessionLimits()


@pytest.fixture
def store(redis_client: RedisClient, limits: SessionLimits) -> SessionStore:
    return SessionStore(redis_client, limits)


@pytest.fixture
async def model_client(fake_openrouter: FakeOpenRouter) -> AsyncIterator[OpenRouterClient]:
    """The real OpenRouter client pointed at the fake, with retries fast enough for tests."""
    client = OpenRouterClient(
        api_key=SecretStr(fake_openrouter.api_key),
        base_url=fake_openrouter.base_url,
        read_timeout=2.0,
        retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05),
    )
    yield client
    await client.aclose()


@pytest.fixture
def turn_settings() -> TurnSettings:
    return TurnSettings(system_prompt="Be brief.", default_model="test/model", lock_wait_seconds=10)


@pytest.fixture
async def chat(
    store: SessionStore, model_client: OpenRouterClient, turn_settings: TurnSettings
) -> AsyncIterator[ChatService]:
    service: ChatService = ChatService(store, model_client, turn_settings)
    yield service
    await service.aclose()  # before the Redis client closes, as the service's owner does


@pytest.fixture
def commands(chat: ChatService) -> CommandHandler:
    return CommandHandler(chat)
