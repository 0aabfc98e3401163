"""Sessions whose entries are in the first layout, as a Redis upgraded from an earlier release
holds them (docs/data-model.md, "Messages"): the entries are written straight into Redis, the
hash has no `entryModel`, and everything that reads or continues a session works over them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from core.backup.lines import backup_lines, restore_lines
from core.commands import CommandHandler, FileReply, Reply, TurnReply
from core.conversation import Attachment, AttachmentKind, Message, Role, Usage
from core.sessions.keys import session_key
from core.sessions.store import SessionStore
from core.storage.connection import RedisClient
from core.tokens import count_tokens
from tests.fakes.openrouter_server import FakeOpenRouter

pytestmark = pytest.mark.all_redis_topologies

ANA = "telegram:1"
OLD_MODEL = "m/old"  # the model the first-layout answers name; the session's is test/model
PICTURE = b"\x89PNG\r\n"
T0 = 1_700_000_000_000


def first_layout(session_id: str) -> list[list[Any]]:
    """[seq, role letter, timestamp_ms, content, model?, prompt?, completion?, cost?, stopped?,
    files?]: a question, its answer, a question with a picture and an answer /stop ended."""
    return [
        [1, "u", T0, "How do tides work?"],
        [2, "a", T0 + 1_000, "The Moon.", OLD_MODEL, 3, 4, 0.01],
        [3, "u", T0 + 2_000, "And this?", None, None, None, None, None,
         [[1, "i", "image/png", "moon.png", len(PICTURE)]]],
        [4, "a", T0 + 3_000, "A full", OLD_MODEL, None, None, None, 1],
    ]  # fmt: skip


@pytest.fixture
async def session_id(store: SessionStore, redis_client: RedisClient) -> str:
    """ANA's active session holding first-layout entries and the picture's bytes."""
    session = await store.create_session(ANA, title="Tides", default_model="test/model")
    key, messages, files = (
        session_key(session.id, suffix) for suffix in ("", ":messages", ":files")
    )
    entries = [json.dumps(entry) for entry in first_layout(session.id)]
    await redis_client.rpush(messages, *entries)  # type: ignore[misc]
    await redis_client.hset(files, "3-1", PICTURE)  # type: ignore[misc]
    await redis_client.hset(key, mapping={"seq": 4, "fileBytes": len(PICTURE)})  # type: ignore[misc]
    lifetime = await redis_client.pttl(key)
    for each in (messages, files):
        await redis_client.pexpire(each, lifetime)
    assert not await redis_client.hexists(key, "entryModel")  # type: ignore[misc]
    return session.id


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def expected(session_id: str) -> list[Message]:
    picture = Attachment("3-1", AttachmentKind.IMAGE, "image/png", "moon.png", len(PICTURE))
    return [
        Message(f"{session_id}-1", Role.USER, "How do tides work?", None, at(T0)),
        Message(f"{session_id}-2", Role.ASSISTANT, "The Moon.", OLD_MODEL, at(T0 + 1_000),
                usage=Usage(3, 4, 0.01)),
        Message(f"{session_id}-3", Role.USER, "And this?", None, at(T0 + 2_000),
                attachments=(picture,)),
        Message(f"{session_id}-4", Role.ASSISTANT, "A full", OLD_MODEL, at(T0 + 3_000),
                stopped=True),
    ]  # fmt: skip


async def say(commands: CommandHandler, message: str) -> Reply:
    outcome = await commands.handle(ANA, message)
    assert isinstance(outcome, Reply), outcome
    return outcome


async def chat_turn(commands: CommandHandler, message: str) -> str:
    outcome = await commands.handle(ANA, message)
    assert isinstance(outcome, TurnReply), outcome
    async with outcome.turn as turn:
        return "".join([delta async for delta in turn.deltas()])


async def stored_entries(redis: RedisClient, session_id: str) -> list[list[Any]]:
    raw = await redis.lrange(session_key(session_id, ":messages"), 0, -1)  # type: ignore[misc]
    return [json.loads(entry) for entry in raw]


async def test_they_read_as_they_were_written(store: SessionStore, session_id: str) -> None:
    page = await store.read_messages(session_id, owner=ANA)

    assert list(page.messages) == expected(session_id)


async def test_history_lists_them(commands: CommandHandler, session_id: str) -> None:
    reply = await say(commands, "/history")

    assert "last 4 of 4" in reply.text
    for content in ("How do tides work?", "The Moon.", "And this?", "A full"):
        assert content in reply.text


async def test_a_turn_sends_them_as_context_and_appends_in_todays_layout(
    commands: CommandHandler,
    store: SessionStore,
    redis_client: RedisClient,
    fake_openrouter: FakeOpenRouter,
    session_id: str,
) -> None:
    assert await chat_turn(commands, "Next?") == "echo: Next?"

    sent = fake_openrouter.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert sent[1]["content"] == "How do tides work?"
    assert {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}} in sent[3][
        "content"
    ]
    key = session_key(session_id)
    assert await redis_client.hget(key, "entryModel") == "test/model"  # type: ignore[misc]
    entries = await stored_entries(redis_client, session_id)
    assert [entry[:2] for entry in entries] == [
        [1, "u"],
        [2, "a"],
        [3, "u"],
        [4, "a"],
        [5, 0 + 4 * count_tokens("Next?")],
        [6, 1 + 4 * count_tokens("echo: Next?")],
    ]
    created_ms = int(await redis_client.hget(key, "createdAt"))  # type: ignore[misc]
    page = await store.read_messages(session_id, owner=ANA)
    assert list(page.messages[:4]) == expected(session_id)
    question, answer = page.messages[4:]
    assert (question.role, question.content, question.model) == (Role.USER, "Next?", None)
    assert (answer.role, answer.content, answer.model) == (
        Role.ASSISTANT, "echo: Next?", "test/model",
    )  # fmt: skip
    assert question.timestamp >= at(created_ms)


async def test_retry_replaces_the_stopped_answer_of_the_first_layout(
    commands: CommandHandler,
    store: SessionStore,
    redis_client: RedisClient,
    fake_openrouter: FakeOpenRouter,
    session_id: str,
) -> None:
    assert await chat_turn(commands, "/retry") == "echo: And this?"

    entries = await stored_entries(redis_client, session_id)
    assert [entry[:2] for entry in entries] == [
        [1, "u"], [2, "a"], [3, "u"], [5, 1 + 4 * count_tokens("echo: And this?")]
    ]  # fmt: skip
    page = await store.read_messages(session_id, owner=ANA)
    assert list(page.messages[:3]) == expected(session_id)[:3]
    assert page.messages[3].content == "echo: And this?"
    assert "last 4 of 4" in (await say(commands, "/history")).text


async def test_the_picture_of_a_first_layout_message_is_read(
    store: SessionStore, session_id: str
) -> None:
    file, data = await store.read_attachment(session_id, "3-1", owner=ANA)

    assert (file.name, file.media_type, data) == ("moon.png", "image/png", PICTURE)


async def test_export_shows_every_message_with_its_model_and_tokens(
    commands: CommandHandler, session_id: str
) -> None:
    outcome = await commands.handle(ANA, "/export")

    assert isinstance(outcome, FileReply), outcome
    markdown = outcome.content.decode()
    for content in ("How do tides work?", "The Moon.", "And this?", "A full"):
        assert f"\n\n{content}" in markdown
    assert f"### Assistant · 2023-11-14 22:13:21 UTC · {OLD_MODEL} · 7 tokens\n" in markdown
    assert f"### Assistant · 2023-11-14 22:13:23 UTC · {OLD_MODEL} · ? tokens · ⏹" in markdown
    assert "moon.png" in markdown


async def test_a_backup_restores_them_in_todays_layout_reading_the_same(
    store: SessionStore, redis_client: RedisClient, session_id: str
) -> None:
    lines = [line async for line in backup_lines(redis_client)]
    [record] = [json.loads(line) for line in lines if '"kind":"session"' in line]
    await redis_client.flushall()
    await restore_lines(redis_client, lines, ttl_seconds=3600)

    assert record["messages"][1]["model"] == OLD_MODEL
    assert "entryModel" not in record
    page = await store.read_messages(session_id, owner=ANA)
    assert list(page.messages) == expected(session_id)
    entries = await stored_entries(redis_client, session_id)
    # The roles (user, answer, user, stopped answer), each with its content's tokens counted.
    assert [entry[1] % 4 for entry in entries] == [0, 1, 0, 3]
    assert [entry[1] // 4 for entry in entries] == [count_tokens(entry[3]) for entry in entries]
    assert await redis_client.hget(session_key(session_id), "entryModel") == "test/model"  # type: ignore[misc]
    assert (await store.read_attachment(session_id, "3-1", owner=ANA))[1] == PICTURE
