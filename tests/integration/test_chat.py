"""Chat turns through the real store, the real OpenRouter client and the fake OpenRouter."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from core.chat import ChatService, TurnSettings
from core.conversation import Role
from core.errors import (
    ModelNotConfigured,
    ModelRateLimited,
    ModelStreamBroken,
    ModelUnavailable,
    NothingToRetry,
    SessionBusy,
    StoreUnavailable,
)
from core.llm.openrouter import OpenRouterClient
from core.sessions.limits import SessionLimits
from core.sessions.store import SessionStore
from core.settings import Settings
from core.storage.connection import redis_from_settings
from tests.fakes.openrouter_server import FAKE_API_KEY, FakeOpenRouter
from tests.redis_process import RedisProcess

USER = "telegram:42"
pytestmark = pytest.mark.all_redis_topologies


async def run_turn(chat: ChatService, text: str, user: str = USER, **options: object) -> str:
    async with chat.turn(text, user_id=user, **options) as turn:  # type: ignore[arg-type]
        return "".join([delta async for delta in turn.deltas()])


async def collect(chat: ChatService, text: str, seen: list[str]) -> None:
    """Stream a turn into `seen`, so a test can look at what arrived before an error."""
    async with chat.turn(text, user_id=USER) as turn:
        async for delta in turn.deltas():
            seen.append(delta)


async def history(chat: ChatService, user: str = USER) -> list[tuple[str, str]]:
    session = await chat.store.active_session(user)
    assert session is not None
    page = await chat.store.read_messages(session.id, limit=100)
    return [(m.role.value, m.content) for m in page.messages]


async def test_a_turn_streams_and_stores_both_messages(chat: ChatService):
    streamed = await run_turn(chat, "hello there")
    assert streamed == "echo: hello there"
    assert await history(chat) == [("user", "hello there"), ("assistant", "echo: hello there")]


async def test_the_stored_reply_records_the_model_and_usage(chat: ChatService):
    async with chat.turn("count my tokens", user_id=USER) as turn:
        _ = [d async for d in turn.deltas()]
    assert turn.reply is not None
    assert turn.reply.model == "test/model"
    assert turn.reply.usage is not None
    assert turn.reply.usage.completion_tokens > 0
    stored = (await chat.store.read_messages(turn.session.id)).messages[-1]
    assert stored.usage == turn.reply.usage


async def test_the_model_sees_the_system_prompt_and_the_conversation(
    chat: ChatService, fake_openrouter: FakeOpenRouter
):
    await run_turn(chat, "first")
    await run_turn(chat, "second")
    sent = fake_openrouter.requests[-1].body["messages"]
    assert sent == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "echo: first"},
        {"role": "user", "content": "second"},
    ]


async def test_old_messages_beyond_the_context_budget_are_not_sent(
    store: SessionStore, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    chat = ChatService(
        store,
        model_client,
        TurnSettings(system_prompt="", default_model="m/x", context_tokens=30),
    )
    await run_turn(chat, "a a " * 20)
    await run_turn(chat, "newest question")
    sent = fake_openrouter.requests[-1].body["messages"]
    assert sent[-1] == {"role": "user", "content": "newest question"}
    assert all(m["content"] != "a a " * 20 for m in sent)


async def test_turns_in_one_session_never_interleave(
    chat: ChatService, fake_openrouter: FakeOpenRouter
):
    fake_openrouter.slow_first_token(0.2)
    await asyncio.gather(run_turn(chat, "one"), run_turn(chat, "two"), run_turn(chat, "three"))
    turns = await history(chat)
    assert len(turns) == 6
    for user_message, answer in zip(turns[::2], turns[1::2], strict=True):
        assert user_message[0] == "user"
        assert answer == ("assistant", f"echo: {user_message[1]}")


async def test_many_users_at_once_each_get_their_own_answer(chat: ChatService):
    users = [f"discord:{n}" for n in range(30)]
    replies = await asyncio.gather(*(run_turn(chat, f"I am {u}", user=u) for u in users))
    assert replies == [f"echo: I am {u}" for u in users]
    for user in users:
        assert await history(chat, user) == [
            ("user", f"I am {user}"),
            ("assistant", f"echo: I am {user}"),
        ]


async def test_a_model_failure_keeps_the_user_message_and_frees_the_session(
    chat: ChatService, fake_openrouter: FakeOpenRouter
):
    fake_openrouter.server_error(502, times=3)
    with pytest.raises(ModelUnavailable):
        await run_turn(chat, "are you there?")
    assert await history(chat) == [("user", "are you there?")]
    assert await run_turn(chat, "now?") == "echo: now?"


async def test_a_cut_stream_is_not_stored_as_an_answer_and_retry_completes_it(
    chat: ChatService, fake_openrouter: FakeOpenRouter
):
    fake_openrouter.reply_text = "one two three four five six"
    fake_openrouter.cut_stream(after_deltas=2)
    seen: list[str] = []
    with pytest.raises(ModelStreamBroken) as broken:
        await collect(chat, "tell me", seen)
    assert broken.value.partial_text == "".join(seen) != ""
    assert await history(chat) == [("user", "tell me")]

    async with chat.retry(user_id=USER) as retry:
        answer = "".join([d async for d in retry.deltas()])
    assert answer == "one two three four five six"
    assert await history(chat) == [("user", "tell me"), ("assistant", answer)]


async def test_a_mid_stream_error_chunk_is_an_error_not_text(
    chat: ChatService, fake_openrouter: FakeOpenRouter
):
    fake_openrouter.error_chunk(after_deltas=1, message="Provider exploded")
    seen: list[str] = []
    with pytest.raises(ModelStreamBroken):
        await collect(chat, "hi", seen)
    assert "Provider exploded" not in "".join(seen)
    assert await history(chat) == [("user", "hi")]


async def test_retry_replaces_the_previous_answer(
    chat: ChatService, fake_openrouter: FakeOpenRouter
):
    await run_turn(chat, "pick a number")
    fake_openrouter.reply_text = "seven"
    async with chat.retry(user_id=USER) as retry:
        _ = [d async for d in retry.deltas()]
    assert await history(chat) == [("user", "pick a number"), ("assistant", "seven")]
    assert fake_openrouter.requests[-1].body["messages"][-1] == {
        "role": "user",
        "content": "pick a number",
    }


async def test_retry_without_any_message_is_refused(chat: ChatService):
    await chat.store.create_session(USER, default_model="test/model")
    with pytest.raises(NothingToRetry):
        async with chat.retry(user_id=USER):
            pass


async def test_a_rate_limit_beyond_the_cap_reaches_the_caller_with_the_wait(
    chat: ChatService, fake_openrouter: FakeOpenRouter
):
    fake_openrouter.rate_limit(retry_after=120)
    with pytest.raises(ModelRateLimited) as limited:
        await run_turn(chat, "hello")
    assert limited.value.retry_after == 120
    assert await history(chat) == [("user", "hello")]


async def test_without_an_api_key_nothing_is_stored(
    store: SessionStore, turn_settings: TurnSettings
):
    keyless = OpenRouterClient(api_key=None, base_url="http://127.0.0.1:9/api/v1")
    chat = ChatService(store, keyless, turn_settings)
    with pytest.raises(ModelNotConfigured):
        await run_turn(chat, "hello")
    assert (await store.list_sessions(USER)).sessions == ()
    await keyless.aclose()


async def test_an_abandoned_stream_releases_the_session(
    chat: ChatService, fake_openrouter: FakeOpenRouter
):
    fake_openrouter.reply_text = "a long answer in several parts"
    async with chat.turn("start", user_id=USER) as turn:
        async for _ in turn.deltas():
            break
    fake_openrouter.reply_text = None
    assert await run_turn(chat, "again") == "echo: again"


async def test_a_lock_left_by_a_crashed_turn_expires_and_the_next_turn_proceeds(
    chat: ChatService, store: SessionStore
):
    crashed = await store.begin_turn(
        USER, "lost in a crash", session_id=None, lock_token="dead", lock_ttl_ms=300,
        context_tokens=16_000, default_model="test/model",
    )  # fmt: skip
    assert await run_turn(chat, "still there?") == "echo: still there?"
    assert (await history(chat))[0] == ("user", "lost in a crash")
    assert crashed.session.id == (await store.active_session(USER)).id  # type: ignore[union-attr]


async def test_a_session_held_too_long_answers_busy(
    store: SessionStore, model_client: OpenRouterClient
):
    chat = ChatService(store, model_client, TurnSettings("", "test/model", lock_wait_seconds=0.2))
    await store.begin_turn(
        USER, "holding", session_id=None, lock_token="holder", lock_ttl_ms=30_000,
        context_tokens=16_000, default_model="test/model",
    )  # fmt: skip
    with pytest.raises(SessionBusy):
        await run_turn(chat, "me too")
    assert await history(chat) == [("user", "holding")]


async def test_redis_down_is_store_unavailable_and_recovers_when_it_returns(
    tmp_path: Path, model_client: OpenRouterClient, turn_settings: TurnSettings
):
    server = RedisProcess(tmp_path)
    server.start()
    client: aioredis.Redis = redis_from_settings(Settings(redis_url=server.url))  # type: ignore[arg-type]
    chat = ChatService(SessionStore(client, SessionLimits()), model_client, turn_settings)
    try:
        assert await run_turn(chat, "before") == "echo: before"
        server.kill()
        with pytest.raises(StoreUnavailable):
            await run_turn(chat, "during")
        server.start()
        assert await run_turn(chat, "after") == "echo: after"
    finally:
        await client.aclose()
        server.stop()


async def test_a_fallback_model_that_answers_is_recorded(
    store: SessionStore, fake_openrouter: FakeOpenRouter, turn_settings: TurnSettings
):
    client = OpenRouterClient(
        api_key=SecretStr(FAKE_API_KEY), base_url=fake_openrouter.base_url,
        fallback_models=["backup/model"],
    )  # fmt: skip
    chat = ChatService(store, client, turn_settings)
    fake_openrouter.primary_fails()
    async with chat.turn("hi", user_id=USER) as turn:
        _ = [d async for d in turn.deltas()]
    await client.aclose()
    assert turn.reply is not None
    assert turn.reply.model == "backup/model"
    assert (await store.read_messages(turn.session.id)).messages[-1].role is Role.ASSISTANT
