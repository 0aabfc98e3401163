"""Fixtures of the fast tier (`make test-fast`): no server of any kind.

`store`, `model`, `chat` and `commands` are the in-memory doubles of tests/fakes here, under the
names tests/integration gives the real ones. A test here that asks for a server fails at once
instead of starting one.
"""

from __future__ import annotations

from typing import NoReturn

import pytest

from core.chat import ChatService, TurnSettings
from core.commands import CommandHandler
from core.observability.metrics import Metrics
from core.sessions.limits import SessionLimits
from tests.fakes.chat_model import ScriptedModel
from tests.fakes.events import RecordedEvents
from tests.fakes.turn_store import InMemoryTurnStore

MODEL = "test/model"
SYSTEM_PROMPT = "Be brief."


def _no_server(request: pytest.FixtureRequest) -> NoReturn:
    pytest.fail(f"{request.fixturename}: tests/unit start no server; tests/integration do")


redis_server = pytest.fixture(_no_server, name="redis_server")
own_redis = pytest.fixture(_no_server, name="own_redis")
redis_cluster = pytest.fixture(_no_server, name="redis_cluster")
redis_sentinel_set = pytest.fixture(_no_server, name="redis_sentinel_set")
fake_openrouter = pytest.fixture(_no_server, name="fake_openrouter")
fake_telegram = pytest.fixture(_no_server, name="fake_telegram")
fake_discord = pytest.fixture(_no_server, name="fake_discord")


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def events() -> RecordedEvents:
    return RecordedEvents()


@pytest.fixture
def limits() -> SessionLimits:
    return SessionLimits()


@pytest.fixture
def store(limits: SessionLimits, metrics: Metrics, events: RecordedEvents) -> InMemoryTurnStore:
    return InMemoryTurnStore(limits, metrics, events=events)


@pytest.fixture
def model() -> ScriptedModel:
    """Echoes the last user message until a test scripts its answers (`model.then(...)`)."""
    return ScriptedModel()


@pytest.fixture
def turn_settings() -> TurnSettings:
    return TurnSettings(system_prompt=SYSTEM_PROMPT, default_model=MODEL, lock_wait_seconds=10)


@pytest.fixture
def chat(
    store: InMemoryTurnStore, model: ScriptedModel, turn_settings: TurnSettings
) -> ChatService[InMemoryTurnStore]:
    return ChatService(store, model, turn_settings)


@pytest.fixture
def commands(chat: ChatService[InMemoryTurnStore]) -> CommandHandler:
    # The commands need more of a store than a turn does; the double has what they read.
    return CommandHandler(chat)  # type: ignore[arg-type]
