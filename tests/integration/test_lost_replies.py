"""A reply lost after Redis ran a script: redis-py runs the script again, and the second run must
answer what the first did without doing it twice (docs/data-model.md, "Repeated calls").

Each test puts tests/fault_proxy.py between chatbridge's own client (its retries) and a real
redis-server, drops the reply of one script once, and compares the faulted user's data with a
control user who made the same calls without the fault.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from core.chat import ChatService, TurnSettings
from core.conversation import Role
from core.errors import ModelStreamBroken, TurnStopped
from core.events.publisher import EventType
from core.llm.openrouter import OpenRouterClient
from core.sessions.keys import user_tokens_key, user_turns_key
from core.sessions.limits import SessionLimits
from core.sessions.scripts import SCRIPT_NAMES, script_source
from core.sessions.store import SessionStore
from core.settings import SessionLimitPolicy, load_settings
from core.storage.connection import RedisClient, close_redis, redis_from_settings
from tests.fakes.events import RecordedEvents
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.fault_proxy import FaultProxy, Matcher, evalsha_of
from tests.integration.store_turns import today
from tests.redis_process import RedisProcess
from tests.stored_sessions import census
from tests.waiting import until

MODEL = "test/model"
FAULTED, CONTROL = "telegram:1001", "telegram:1002"
# Short, so that a keeper extends it several times while a test holds the model's answer.
QUICK_LOCK_MS = 600


def lock_call(*, is_release: bool) -> Matcher:
    """lock.lua releasing (ttl '0') or extending a turn's lock."""
    return evalsha_of("lock", when=lambda command: (command.arg(5) == "0") == is_release)


SCRIPT_CALLS: dict[str, Matcher] = {
    "begin": evalsha_of("begin_turn"),
    "finish": evalsha_of("append_message"),
    "extend": lock_call(is_release=False),
    "release": lock_call(is_release=True),
}


@pytest.fixture
async def proxy(redis_server: RedisProcess) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(redis_server.address) as proxy:
        yield proxy


@pytest.fixture
async def proxied(proxy: FaultProxy, redis_client: aioredis.Redis) -> AsyncIterator[RedisClient]:
    """chatbridge's client through the proxy, on the empty database of `redis_client`, with
    every script already loaded (so a dropped reply is never a NOSCRIPT one)."""
    for name in SCRIPT_NAMES:
        await redis_client.script_load(script_source(name))
    client = redis_from_settings(load_settings(), url=proxy.url)
    yield client
    await close_redis(client)


@pytest.fixture
def events() -> RecordedEvents:
    return RecordedEvents()


@pytest.fixture
def limits() -> SessionLimits:
    return SessionLimits(rate_limit_messages=20, daily_token_budget=1_000_000)


@pytest.fixture
def store(proxied: RedisClient, limits: SessionLimits, events: RecordedEvents) -> SessionStore:
    return SessionStore(proxied, limits, events=events)


@pytest.fixture
def chat(store: SessionStore, model_client: OpenRouterClient) -> ChatService[SessionStore]:
    settings = TurnSettings("", MODEL, lock_ttl_ms=QUICK_LOCK_MS, lock_wait_seconds=1)
    return ChatService(store, model_client, settings)


async def talk(chat: ChatService[SessionStore], user: str, text: str) -> str:
    async with chat.turn(text, user_id=user) as turn:
        return "".join([delta async for delta in turn.deltas()])


@dataclass
class UserState:
    conversations: list[list[tuple[str, str]]]  # of each session, most recent session first
    titles: list[str]
    tokens_spent: str | None
    turns_counted: int
    locked_sessions: int


async def state_of(redis_client: aioredis.Redis, store: SessionStore, user: str) -> UserState:
    """What a user's calls left in Redis; every session whole."""
    found = await census(redis_client)
    found.assert_whole()
    listing = await store.list_sessions(user)
    sessions = {session.session_id: session for session in found.by_user().get(user, [])}
    return UserState(
        conversations=[sessions[s.id].conversation for s in listing.sessions],
        titles=[s.title for s in listing.sessions],
        tokens_spent=await redis_client.get(user_tokens_key(user, await today(redis_client))),
        turns_counted=await redis_client.zcard(user_turns_key(user)),
        locked_sessions=sum(session.has_lock for session in sessions.values()),
    )


async def same_for_both(redis_client: aioredis.Redis, store: SessionStore) -> UserState:
    faulted, control = [await state_of(redis_client, store, u) for u in (FAULTED, CONTROL)]
    assert faulted == control
    return faulted


# --- the scripts of a turn --------------------------------------------------------------------


@pytest.mark.parametrize("script", ["begin", "finish"])
async def test_a_turn_whose_script_reply_is_lost_ends_as_one_without_the_fault(
    chat: ChatService[SessionStore],
    proxy: FaultProxy,
    redis_client: aioredis.Redis,
    store: SessionStore,
    script: str,
):
    for user in (FAULTED, CONTROL):
        assert await talk(chat, user, "first") == "echo: first"
    runs_before = proxy.count(SCRIPT_CALLS[script])
    lost = proxy.drop_reply(SCRIPT_CALLS[script])

    assert await talk(chat, FAULTED, "second") == "echo: second"
    assert await talk(chat, CONTROL, "second") == "echo: second"

    assert lost.has_fired
    assert proxy.count(SCRIPT_CALLS[script]) - runs_before == 3  # twice for FAULTED
    state = await same_for_both(redis_client, store)
    assert state.conversations == [
        [("user", "first"), ("assistant", "echo: first"), ("user", "second"),
         ("assistant", "echo: second")]
    ]  # fmt: skip
    assert (state.turns_counted, state.locked_sessions) == (2, 0)


async def test_a_lost_reply_of_the_keepers_extension_changes_nothing(
    chat: ChatService[SessionStore],
    proxy: FaultProxy,
    redis_client: aioredis.Redis,
    store: SessionStore,
    fake_openrouter: FakeOpenRouter,
):
    gate = asyncio.Event()
    fake_openrouter.hold(gate)
    lost = proxy.drop_reply(SCRIPT_CALLS["extend"])
    slow = asyncio.create_task(talk(chat, FAULTED, "slow"))
    await lost.fired()
    runs = proxy.count(SCRIPT_CALLS["extend"])
    await asyncio.wait_for(_until_more(proxy, SCRIPT_CALLS["extend"], runs), 10)
    gate.set()
    assert await slow == "echo: slow"
    assert await talk(chat, CONTROL, "slow") == "echo: slow"

    state = await same_for_both(redis_client, store)
    assert state.conversations == [[("user", "slow"), ("assistant", "echo: slow")]]


async def test_a_stop_whose_reply_is_lost_stops_the_answer_and_says_so(
    chat: ChatService[SessionStore],
    proxy: FaultProxy,
    redis_client: aioredis.Redis,
    store: SessionStore,
    fake_openrouter: FakeOpenRouter,
):
    """The repeat of request_stop.lua answers True (the turn was asked), not False (the lock
    it released meanwhile), and the answer is stopped once, for both users alike."""
    for user in (FAULTED, CONTROL):
        gate = asyncio.Event()
        fake_openrouter.pause(gate, after_deltas=1)
        seen: list[str] = []

        async def stopped_answer(user: str = user, seen: list[str] = seen) -> None:
            async with chat.turn("long one", user_id=user) as turn:
                async for delta in turn.deltas():
                    seen.append(delta)

        answer = asyncio.create_task(stopped_answer())
        await until(lambda seen=seen: seen, what="a delta")
        session = await store.active_session(user)
        assert session is not None
        if user == FAULTED:
            lost = proxy.drop_reply(evalsha_of("request_stop"))
        assert await chat.stop_answer(session.id, owner=user) is True
        with pytest.raises(TurnStopped):
            await answer
        gate.set()
    assert lost.has_fired

    state = await same_for_both(redis_client, store)
    assert state.conversations == [[("user", "long one"), ("assistant", "".join(seen))]]
    assert state.locked_sessions == 0


async def test_a_lost_reply_of_a_failed_turns_release_changes_nothing(
    chat: ChatService[SessionStore],
    proxy: FaultProxy,
    redis_client: aioredis.Redis,
    store: SessionStore,
    fake_openrouter: FakeOpenRouter,
):
    # Cut after text: the release settles the turn's tokens (docs/data-model.md, "Turn limits").
    fake_openrouter.cut_stream(after_deltas=2, times=2)
    lost = proxy.drop_reply(SCRIPT_CALLS["release"])
    for user in (FAULTED, CONTROL):
        with pytest.raises(ModelStreamBroken):
            await talk(chat, user, "refused")
    assert (await lost.fired()).arg(4) != ""

    state = await same_for_both(redis_client, store)
    assert state.conversations == [[("user", "refused")]]
    assert state.locked_sessions == 0
    assert int(state.tokens_spent or 0) > 0  # charged once, as without the fault
    for user in (FAULTED, CONTROL):  # and the next turn needs no wait for a lock
        assert await talk(chat, user, "again") == "echo: again"


async def _until_more(proxy: FaultProxy, matches: Matcher, runs: int) -> None:
    """Until the keeper extended the lock again after the lost reply."""
    while proxy.count(matches) <= runs:  # noqa: ASYNC110  (the proxy has no event for it)
        await asyncio.sleep(0.01)


# --- the other scripts that change something --------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [(SessionLimitPolicy.REJECT, 1), (SessionLimitPolicy.EVICT_OLDEST, 2)],
    ids=["last-free-slot", "evicting-the-oldest"],
)
async def test_a_session_created_whose_reply_is_lost_is_created_once(
    proxied: RedisClient,
    proxy: FaultProxy,
    redis_client: aioredis.Redis,
    events: RecordedEvents,
    case: tuple[SessionLimitPolicy, int],
):
    policy, existing = case
    limits = SessionLimits(max_sessions_per_user=2, policy=policy)
    store = SessionStore(proxied, limits, events=events)
    for user in (FAULTED, CONTROL):
        for number in range(existing):
            await store.create_session(user, title=f"old {number}", default_model=MODEL)
    proxy.drop_reply(evalsha_of("create_session"))
    created = {}
    for user in (FAULTED, CONTROL):
        created[user] = await store.create_session(user, title="new", default_model=MODEL)

    state = await same_for_both(redis_client, store)
    assert state.titles == ["new", "old 1"] if existing == 2 else ["new", "old 0"]
    deleted = events.of_type(EventType.SESSION_DELETED)
    assert sorted(event["userId"] for event in deleted) == (
        [FAULTED, CONTROL] if existing == 2 else []
    )
    made = [event["sessionId"] for event in events.of_type(EventType.SESSION_CREATED)]
    assert made.count(created[FAULTED].id) == 1


async def test_a_session_deleted_whose_reply_is_lost_is_deleted_and_said_so_once(
    store: SessionStore, proxy: FaultProxy, redis_client: aioredis.Redis, events: RecordedEvents
):
    now_active = {}
    for user in (FAULTED, CONTROL):
        kept = await store.create_session(user, title="kept", default_model=MODEL)
        doomed = await store.create_session(user, title="doomed", default_model=MODEL)
        if user == FAULTED:
            proxy.drop_reply(evalsha_of("delete_session"))
        now_active[user] = await store.delete_session(doomed.id, owner=user)
        assert now_active[user] == kept.id

    state = await same_for_both(redis_client, store)
    assert state.titles == ["kept"]
    deleted = events.of_type(EventType.SESSION_DELETED)
    assert sorted(event["userId"] for event in deleted) == [FAULTED, CONTROL]


async def test_a_message_added_whose_reply_is_lost_is_stored_once(
    proxied: RedisClient, proxy: FaultProxy, redis_client: aioredis.Redis
):
    """Through the HTTP API's door (add_message.lua), taking the last turn of the rate window:
    the repeat answers the stored message instead of refusing it as one past the limit."""
    store = SessionStore(proxied, SessionLimits(rate_limit_messages=2))
    runs_before = proxy.count(evalsha_of("add_message"))
    for user in (FAULTED, CONTROL):
        session = await store.create_session(user, default_model=MODEL)
        await store.add_message(session.id, Role.USER, "a question", owner=user)
        if user == FAULTED:
            lost = proxy.drop_reply(evalsha_of("add_message"))
        message = await store.add_message(session.id, Role.SYSTEM, "a note", owner=user)
        assert message.id == f"{session.id}-2"

    assert lost.has_fired
    assert proxy.count(evalsha_of("add_message")) - runs_before == 5  # twice for FAULTED
    state = await same_for_both(redis_client, store)
    assert state.conversations == [[("user", "a question"), ("system", "a note")]]
    assert state.turns_counted == 2
