"""A message with images for a model that reads none (OpenRouter's models list says which do):
refused before anything is stored, naming a model that can; or, with VISION_MODEL, answered by
that model for this turn while the session keeps its own. Real store, real client, the fake
OpenRouter (which refuses images for a model listed without image input, as OpenRouter does).
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from core.chat import ChatService, TurnSettings
from core.conversation import AttachmentKind, NewAttachment
from core.errors import ModelCannotReadImages
from core.llm.models import ModelCatalog
from core.llm.openrouter import OpenRouterClient
from core.sessions.keys import user_turns_key
from core.sessions.store import SessionStore
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.integration.store_turns import make_store

USER = "telegram:9"
TEXT_ONLY = "meta-llama/llama-3.1-8b-instruct"  # listed by the fake without image input
SEES = "openai/gpt-4o-mini"
PHOTO = NewAttachment(AttachmentKind.IMAGE, "image/jpeg", "cat.jpg", b"\xff\xd8jpeg")


def chat_with(
    store: SessionStore, model: OpenRouterClient, redis: aioredis.Redis, **settings: str
) -> ChatService[SessionStore]:
    turn_settings = TurnSettings("", settings.get("default", TEXT_ONLY), lock_wait_seconds=10,
                                 vision_model=settings.get("vision"))  # fmt: skip
    return ChatService(store, model, turn_settings, catalog=ModelCatalog(redis, model))


async def talk(chat: ChatService[SessionStore], text: str, *files: NewAttachment) -> str:
    async with chat.turn(text, user_id=USER, attachments=files) as turn:
        return "".join([delta async for delta in turn.deltas()])


async def test_an_image_for_a_model_that_reads_none_is_refused_naming_one_that_can(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    store = make_store(redis_client, rate_limit_messages=5)
    chat = chat_with(store, model_client, redis_client)

    with pytest.raises(ModelCannotReadImages) as refused:
        await talk(chat, "what breed?", PHOTO)

    assert refused.value.model == TEXT_ONLY
    assert refused.value.suggestion is not None
    assert refused.value.suggestion != TEXT_ONLY
    assert await store.active_session(USER) is None  # nothing created, nothing stored
    assert await redis_client.zcard(user_turns_key(USER)) == 0  # nor counted
    assert fake_openrouter.requests == []
    # In an existing session too: its messages stay as they were.
    assert await talk(chat, "hello") == "echo: hello"
    with pytest.raises(ModelCannotReadImages):
        await talk(chat, "and this?", PHOTO)
    session = await store.active_session(USER)
    assert session is not None
    assert session.message_count == 2


async def test_with_vision_model_the_image_turn_goes_to_it_and_the_session_keeps_its_model(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    store = make_store(redis_client)
    chat = chat_with(store, model_client, redis_client, vision=SEES)

    assert await talk(chat, "what breed?", PHOTO) == "echo: what breed?"
    assert fake_openrouter.requests[-1].body["model"] == SEES
    session = await store.active_session(USER)
    assert session is not None
    assert session.model == TEXT_ONLY
    page = await store.read_messages(session.id)
    assert page.messages[-1].model == SEES  # the footer names who answered
    # While the image is in the context, a follow-up goes to the model that can see it.
    assert await talk(chat, "and its age?") == "echo: and its age?"
    assert fake_openrouter.requests[-1].body["model"] == SEES


async def test_without_vision_model_earlier_images_reach_a_blind_model_as_text(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    """The session's model changed to one that reads no images after a picture was sent."""
    store = make_store(redis_client)
    chat = chat_with(store, model_client, redis_client, default=SEES)
    assert await talk(chat, "what breed?", PHOTO) == "echo: what breed?"
    await store.set_user_model(USER, TEXT_ONLY)

    assert await talk(chat, "and its age?") == "echo: and its age?"
    request = fake_openrouter.requests[-1].body
    assert request["model"] == TEXT_ONLY
    assert "[1 earlier image(s), no longer shown: cat.jpg]" in str(request["messages"])
    assert "image_url" not in str(request["messages"])


async def test_a_model_that_reads_images_or_one_not_listed_gets_them(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    store = make_store(redis_client)
    for model in (SEES, "someone/unlisted-model"):
        await redis_client.flushdb()
        chat = chat_with(store, model_client, redis_client, default=model)
        assert await talk(chat, "look", PHOTO) == "echo: look"
        assert fake_openrouter.requests[-1].body["model"] == model


async def test_a_vision_model_that_reads_no_images_either_is_not_used(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    fake_openrouter.list_model("some/text-only", inputs=("text",))
    store = make_store(redis_client)
    chat = chat_with(store, model_client, redis_client, vision="some/text-only")
    with pytest.raises(ModelCannotReadImages):
        await talk(chat, "look", PHOTO)
    assert fake_openrouter.requests == []
