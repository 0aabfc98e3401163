"""Files of user messages in Redis (docs/data-model.md, "Attachments"), on each topology: the
bytes stored whole under the session's tag, sent to the model as image parts for the last
IMAGE_CONTEXT_TURNS user messages, kept within MAX_ATTACHMENT_BYTES_PER_SESSION (oldest first
out), gone with their message or session, and expiring with it. A turn with files is still two
round trips."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.chat import ChatService, TurnSettings
from core.conversation import AttachmentKind, NewAttachment
from core.errors import AttachmentsTooLarge
from core.llm.openrouter import OpenRouterClient
from core.sessions.keys import session_key
from core.sessions.store import SessionStore
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.integration.round_trips import CountingConnection, counting_client  # noqa: F401
from tests.integration.store_turns import make_store

USER = "telegram:7"
pytestmark = pytest.mark.all_redis_topologies
# Every byte value, and sequences that are not UTF-8: the bytes must come back exactly.
BINARY = bytes(range(256)) + b"\xff\xfe\x00\xc3\x28\xed\xa0\x80"


def image(data: bytes, name: str = "photo.jpg") -> NewAttachment:
    return NewAttachment(AttachmentKind.IMAGE, "image/jpeg", name, data)


def chat_on(store: SessionStore, model: OpenRouterClient) -> ChatService[SessionStore]:
    return ChatService(store, model, TurnSettings("", "test/model", lock_wait_seconds=10))


async def talk(
    chat: ChatService[SessionStore], text: str, files: Sequence[NewAttachment] = ()
) -> str:
    async with chat.turn(text, user_id=USER, attachments=files) as turn:
        return "".join([delta async for delta in turn.deltas()])


def sent_images(fake: FakeOpenRouter, index: int = -1) -> list[bytes]:
    """The images of the model request `index`, decoded from their data URLs, in order."""
    found = []
    for message in fake.requests[index].body["messages"]:
        if isinstance(message["content"], list):
            for part in message["content"]:
                if part["type"] == "image_url":
                    url = part["image_url"]["url"]
                    assert url.startswith("data:image/jpeg;base64,"), url[:40]
                    found.append(base64.b64decode(url.split(",", 1)[1]))
    return found


def sent_texts(fake: FakeOpenRouter, index: int = -1) -> list[str]:
    texts = []
    for message in fake.requests[index].body["messages"]:
        content: Any = message["content"]
        if isinstance(content, str):
            texts.append(content)
        else:
            texts.append("".join(p["text"] for p in content if p["type"] == "text"))
    return texts


async def test_an_image_reaches_the_model_whole_beside_its_text_and_is_listed_kept(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    store = make_store(redis_client)
    chat = chat_on(store, model_client)

    assert await talk(chat, "what is this?", [image(BINARY)]) == "echo: what is this?"

    assert sent_images(fake_openrouter) == [BINARY]
    assert sent_texts(fake_openrouter) == ["what is this?"]
    session = await store.active_session(USER)
    assert session is not None
    page = await store.read_messages(session.id, owner=USER)
    [question, _] = page.messages
    [attachment] = question.attachments
    assert (attachment.kind, attachment.name, attachment.size, attachment.kept) == (
        AttachmentKind.IMAGE, "photo.jpg", len(BINARY), True,
    )  # fmt: skip
    files = session_key(session.id, ":files")
    assert await redis_client.hget(files, attachment.id) is not None
    # The files expire with their session.
    assert 0 < await redis_client.ttl(files) <= await redis_client.ttl(session_key(session.id))


async def test_the_images_of_the_last_image_context_turns_messages_go_to_the_model(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    store = make_store(redis_client, image_context_turns=2)
    chat = chat_on(store, model_client)
    for n in range(3):
        await talk(chat, f"picture {n}", [image(bytes([n]) * 10, f"p{n}.jpg")])

    # The third turn: pictures 1 and 2 are among its last two user messages, picture 0 not.
    assert sent_images(fake_openrouter) == [bytes([1]) * 10, bytes([2]) * 10]
    assert "[1 earlier image(s), no longer shown: p0.jpg]" in sent_texts(fake_openrouter)[0]
    await talk(chat, "and now, in words?")
    assert sent_images(fake_openrouter) == [bytes([2]) * 10]


async def test_past_the_budget_the_oldest_files_go_and_the_newest_stay(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    store = make_store(redis_client, max_attachment_bytes_per_session=250)
    chat = chat_on(store, model_client)
    await talk(chat, "first", [image(b"a" * 100, "a.jpg")])
    await talk(chat, "second", [image(b"b" * 100, "b.jpg")])
    await talk(chat, "third: exactly at the budget", [image(b"c" * 50, "c.jpg")])  # 250: all kept

    session = await store.active_session(USER)
    assert session is not None
    kept = [a.kept for m in (await store.read_messages(session.id)).messages for a in m.attachments]
    assert kept == [True, True, True]

    await talk(chat, "fourth: one byte over", [image(b"d", "d.jpg")])  # 251: a.jpg goes
    listed = [a for m in (await store.read_messages(session.id)).messages for a in m.attachments]
    assert [(a.name, a.kept) for a in listed] == [
        ("a.jpg", False), ("b.jpg", True), ("c.jpg", True), ("d.jpg", True),
    ]  # fmt: skip
    assert await redis_client.hget(session_key(session.id), "fileBytes") == "151"
    assert sorted(await redis_client.hkeys(session_key(session.id, ":files"))) == sorted(
        a.id for a in listed[1:]
    )


async def test_files_larger_than_the_budget_alone_are_refused_and_nothing_is_stored(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    store = make_store(redis_client, max_attachment_bytes_per_session=100)
    chat = chat_on(store, model_client)
    await talk(chat, "fits", [image(b"x" * 100)])  # at the budget
    with pytest.raises(AttachmentsTooLarge):
        await talk(chat, "too much", [image(b"y" * 60), image(b"z" * 41)])
    session = await store.active_session(USER)
    assert session is not None
    page = await store.read_messages(session.id)
    assert [m.content for m in page.messages] == ["fits", "echo: fits"]
    assert len(fake_openrouter.requests) == 1


async def test_a_trimmed_message_and_a_deleted_session_take_their_files_along(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    store = make_store(redis_client, max_messages_per_session=4)
    chat = chat_on(store, model_client)
    await talk(chat, "one", [image(b"1" * 10)])
    await talk(chat, "two", [image(b"2" * 10)])
    session = await store.active_session(USER)
    assert session is not None
    files = session_key(session.id, ":files")
    assert await redis_client.hlen(files) == 2

    await talk(chat, "three")  # "one" and its answer are trimmed, and "one"'s image with them
    assert await redis_client.hkeys(files) == ["3-1"]
    assert await redis_client.hget(session_key(session.id), "fileBytes") == "10"

    await store.delete_session(session.id, owner=USER)
    assert not await redis_client.exists(files)


async def test_a_turn_with_files_is_still_two_round_trips(
    counting_client: aioredis.Redis,  # noqa: F811
    model_client: OpenRouterClient,
    redis_topology: str,
):
    if redis_topology != "single":
        pytest.skip("counted on the single server's client")
    store = make_store(counting_client)
    chat = chat_on(store, model_client)
    await talk(chat, "warm up")  # loads the scripts
    CountingConnection.writes = 0
    await talk(chat, "two files", [image(BINARY), image(b"second", "b.jpg")])
    assert CountingConnection.writes == 2


async def test_a_picture_without_a_word_is_a_message_named_after_it_and_retry_finds_it(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    store = make_store(redis_client)
    chat = chat_on(store, model_client)

    await talk(chat, "", [image(b"pixels", "sunset.jpg")])

    [message] = fake_openrouter.requests[-1].body["messages"]
    assert message["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,cGl4ZWxz"}}
    ]
    session = await store.active_session(USER)
    assert session is not None
    assert session.title == "sunset.jpg"
    async with chat.retry(user_id=USER) as retried:
        assert [d async for d in retried.deltas()]
    assert sent_images(fake_openrouter) == [b"pixels"]
    page = await store.read_messages(session.id)
    assert page.messages[0].content == ""
    assert len(page.messages) == 2  # the retry replaced the answer
