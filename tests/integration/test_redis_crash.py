"""Redis killed with SIGKILL in the middle of many users' turns, then restarted on its own files.

The server persists as the shipped redis.conf says (AOF, `appendfsync everysec`). A turn is
acknowledged once its second round trip (the stored reply) has answered. Every turn
acknowledged more than AOF_WINDOW_SECONDS before the kill must be back after the restart, and
no session may be half-written; turns acknowledged within that window are counted, not
required — that window is what `everysec` does not promise (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import redis.exceptions as redis_errors

from core.chat import ChatService, TurnSettings
from core.commands import CommandHandler, Reply, TurnReply
from core.errors import ChatbridgeError, StoreUnavailable
from core.llm.openrouter import OpenRouterClient
from core.messages import describe
from core.sessions.limits import SessionLimits
from core.sessions.scripts import script_source
from core.sessions.store import SessionStore
from core.settings import Settings
from core.storage.connection import redis_from_settings
from tests.redis_process import RedisProcess
from tests.shipped_redis_conf import durable_redis
from tests.stored_sessions import Census, census

USERS = 40
TRAFFIC_SECONDS = 2.0
AOF_WINDOW_SECONDS = 1.0
GIVE_UP_SECONDS = 30.0  # every user's loop must have ended by then: nothing hangs
LIMITS = SessionLimits(max_messages_per_session=10_000, rate_limit_messages=1000)


@dataclass(frozen=True)
class Acknowledged:
    user_id: str
    text: str
    at: float  # time.monotonic() once the stored reply was answered


@pytest.fixture
async def durable(tmp_path: Path) -> AsyncIterator[RedisProcess]:
    server = durable_redis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def production_client(durable: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    """The service's own client (pool, retries, timeouts), on the durable server."""
    client: aioredis.Redis = redis_from_settings(Settings(redis_url=durable.url))  # type: ignore[arg-type]
    yield client
    await client.aclose()


@pytest.fixture
def crash_chat(
    production_client: aioredis.Redis, model_client: OpenRouterClient, turn_settings: TurnSettings
) -> ChatService:
    return ChatService(SessionStore(production_client, LIMITS), model_client, turn_settings)


async def run_turn(chat: ChatService, user_id: str, text: str) -> None:
    async with chat.turn(text, user_id=user_id) as turn:
        async for _ in turn.deltas():
            pass


async def talk_until_redis_fails(
    chat: ChatService, user_id: str, acknowledged: list[Acknowledged]
) -> ChatbridgeError:
    """One user's turns back to back; returns the error that ended them."""
    for number in itertools.count(1):
        text = f"{user_id} says {number}"
        try:
            await run_turn(chat, user_id, text)
        except ChatbridgeError as error:
            return error
        acknowledged.append(Acknowledged(user_id, text, time.monotonic()))
    raise AssertionError("unreachable")


async def restarted(server: RedisProcess) -> aioredis.Redis:
    """Start the server again on its directory and port; a client once it has loaded its data."""
    await asyncio.to_thread(server.start)
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    for _ in range(500):
        try:
            await client.ping()
        except redis_errors.BusyLoadingError:
            await asyncio.sleep(0.02)
        else:
            return client
    raise AssertionError("redis-server still loading its files after 10 s")


def missing_turns(found: Census, turns: list[Acknowledged]) -> list[Acknowledged]:
    """The acknowledged turns whose message and reply are not both stored, one after the other."""
    pairs = {
        (session.user_id, question)
        for session in found.sessions.values()
        for (role, question), (next_role, answer) in itertools.pairwise(session.conversation)
        if (role, next_role) == ("user", "assistant") and answer == f"echo: {question}"
    }
    return [turn for turn in turns if (turn.user_id, turn.text) not in pairs]


async def test_turns_acknowledged_over_a_second_before_a_sigkill_survive_the_restart_whole(
    durable: RedisProcess, crash_chat: ChatService
):
    acknowledged: list[Acknowledged] = []
    users = [f"cli:crash{number}" for number in range(USERS)]
    loops = [
        asyncio.create_task(talk_until_redis_fails(crash_chat, user, acknowledged))
        for user in users
    ]
    await asyncio.sleep(TRAFFIC_SECONDS)  # traffic, so that some turns are older than the window
    killed_at = time.monotonic()
    durable.kill()
    endings = await asyncio.wait_for(asyncio.gather(*loops), GIVE_UP_SECONDS)
    assert {type(error) for error in endings} == {StoreUnavailable}

    client = await restarted(durable)
    try:
        found = await census(client)
    finally:
        await client.aclose()

    found.assert_whole()
    older = [turn for turn in acknowledged if turn.at < killed_at - AOF_WINDOW_SECONDS]
    recent = [turn for turn in acknowledged if turn.at >= killed_at - AOF_WINDOW_SECONDS]
    assert older, "no turn was acknowledged early enough to test anything"
    assert missing_turns(found, older) == []
    for session in found.sessions.values():  # a last user message alone: the kill cut its turn
        roles = [role for role, _ in session.conversation]
        assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"] * (len(roles) % 2)
    locked = sum(session.has_lock for session in found.sessions.values())
    print(
        f"\n[redis-crash] {len(acknowledged)} turns acknowledged by {USERS} users in "
        f"{TRAFFIC_SECONDS:g} s; {len(recent)} in the last {AOF_WINDOW_SECONDS:g} s, "
        f"{len(missing_turns(found, recent))} of them lost; {locked} sessions locked by a turn "
        "the kill cut"
    )
    # The service's own client reconnects by itself: reads and new turns work again.
    user = users[0]
    (session,) = found.by_user()[user]
    page = await crash_chat.store.read_messages(session.session_id, owner=user, limit=10_000)
    assert [(m.role.value, m.content) for m in page.messages] == session.conversation
    await run_turn(crash_chat, "cli:after-the-restart", "hello again")


async def test_while_redis_is_down_every_command_answers_temporarily_unavailable(
    durable: RedisProcess, crash_chat: ChatService
):
    commands = CommandHandler(crash_chat)
    await run_turn(crash_chat, "telegram:7", "before")
    durable.kill()

    async def answer(command: str, locale: str) -> str:
        outcome = await commands.handle("telegram:7", command, locale=locale)
        if isinstance(outcome, Reply):
            assert outcome.is_error, (command, outcome)
            return outcome.text
        assert isinstance(outcome, TurnReply)  # the error comes when the front starts the turn
        with pytest.raises(StoreUnavailable) as refused:
            async with outcome.turn:
                pass
        return describe(refused.value, locale)

    asked = [
        (command, locale)
        for command in ("/sessions", "/new Later", "/history", "/model x/y", "/delete", "hi")
        for locale in ("en", "pt-BR")
    ]
    # All at once, as many users would: every one answers (asyncio.wait_for: none hangs).
    answers = await asyncio.wait_for(
        asyncio.gather(*(answer(command, locale) for command, locale in asked)), GIVE_UP_SECONDS
    )
    expected = [describe(StoreUnavailable(), locale) for _, locale in asked]
    assert answers == expected


async def test_a_restart_with_an_empty_script_cache_keeps_conversations_going(
    durable: RedisProcess, crash_chat: ChatService
):
    """Redis comes back from its AOF without the scripts (NOSCRIPT); the store loads them again."""
    users = [f"discord:{number}" for number in range(8)]
    await asyncio.gather(*(run_turn(crash_chat, user, "first") for user in users))
    durable.kill()
    client = await restarted(durable)
    try:
        assert await client.script_exists(*turn_script_shas()) == [False] * 3

        await asyncio.gather(*(run_turn(crash_chat, user, "second") for user in users))

        found = await census(client)
    finally:
        await client.aclose()
    found.assert_whole()
    conversations = sorted(session.conversation for session in found.sessions.values())
    expected = [("user", "first"), ("assistant", "echo: first")]
    expected += [("user", "second"), ("assistant", "echo: second")]
    assert conversations == [expected] * len(users)


def turn_script_shas() -> list[str]:
    """The SHA1 names of the scripts a turn runs: begin_turn, append_message, lock."""
    names = ("begin_turn", "append_message", "lock")
    return [hashlib.sha1(script_source(name).encode()).hexdigest() for name in names]  # noqa: S324  (Redis names scripts by SHA1)
