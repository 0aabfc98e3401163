"""Files sent with a message, through the command layer every front uses (core/attachments/
intake.py), on the real store and the real OpenRouter client against the fake: a photo reaches
the model re-encoded beside its caption, a PDF's text and a voice note's transcript reach it as
text, and whatever is refused is refused before anything is stored."""

from __future__ import annotations

import base64
import io
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aioredis
from PIL import Image

from core.attachments.intake import AttachmentIntake, IncomingFile, IntakeLimits
from core.chat import ChatService, TurnSettings
from core.commands import CommandHandler, Reply, TurnReply
from core.llm.openrouter import OpenRouterClient
from core.messages import text
from core.sessions.store import SessionStore
from tests.attachment_files import image_file, pdf_file, wav_file
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.integration.store_turns import make_store

USER = "telegram:11"
LIMITS = IntakeLimits(max_file_bytes=200_000, image_max_side=64, max_document_chars=60)


def commands_on(store: SessionStore, model: OpenRouterClient) -> CommandHandler:
    chat = ChatService(store, model, TurnSettings("", "openai/gpt-4o-mini", lock_wait_seconds=10))
    return CommandHandler(chat, intake=AttachmentIntake(LIMITS, model))


async def answered(commands: CommandHandler, said: str, *files: IncomingFile) -> TurnReply:
    outcome = await commands.handle(USER, said, files=files)
    assert isinstance(outcome, TurnReply), outcome
    async with outcome.turn as turn:
        async for _ in turn.deltas():
            pass
    return outcome


def user_content(fake: FakeOpenRouter) -> Any:
    return fake.requests[-1].body["messages"][-1]["content"]


async def stored(store: SessionStore) -> list[tuple[str, list[tuple[str, str, str]]]]:
    session = await store.active_session(USER)
    if session is None:
        return []
    page = await store.read_messages(session.id)
    return [
        (m.content, [(a.kind.value, a.media_type, a.name) for a in m.attachments])
        for m in page.messages
    ]


async def test_a_photo_reaches_the_model_re_encoded_beside_its_caption(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    store = make_store(redis_client)
    photo = image_file("PNG", size=(300, 100))  # wider than IMAGE_MAX_SIDE (64 here)

    await answered(commands_on(store, model_client), "what is it?", IncomingFile(photo, "a.png"))

    text_part, image_part = user_content(fake_openrouter)
    assert text_part == {"type": "text", "text": "what is it?"}
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert (sent.format, sent.size) == ("JPEG", (64, 21))
    assert (await stored(store))[0] == ("what is it?", [("image", "image/jpeg", "a.png")])


async def test_a_pdfs_text_reaches_the_model_as_a_named_block_and_a_cut_is_said(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    store = make_store(redis_client)
    pdf = pdf_file("The tide rises twice a day.", "x" * 100)  # past 60 characters: cut

    reply = await answered(
        commands_on(store, model_client), "sum it up", IncomingFile(pdf, "t.pdf")
    )

    content = user_content(fake_openrouter)
    assert isinstance(content, str)
    assert content.startswith('sum it up\n\nAttached file "t.pdf" (application/pdf, 2 pages')
    assert "The tide rises twice a day." in content
    assert reply.preface == text("en", "document_cut", name="t.pdf", limit="60")
    [(_, files), _] = await stored(store)
    assert files == [("document", "application/pdf", "t.pdf")]


async def test_a_voice_notes_transcript_is_the_message_and_is_shown_first(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    store = make_store(redis_client)
    fake_openrouter.transcriptions.text = "when is high tide"

    reply = await answered(commands_on(store, model_client), "", IncomingFile(wav_file(), "v.wav"))

    assert user_content(fake_openrouter) == "when is high tide"
    assert reply.preface == text("en", "heard", transcript="when is high tide")
    assert (await stored(store))[0] == ("when is high tide", [("audio", "audio/wav", "v.wav")])


@pytest.mark.parametrize(
    ("files", "code"),
    [
        ([IncomingFile(image_file("PNG"), f"{n}.png") for n in range(5)], "too_many_attachments"),
        ([IncomingFile(b"\x00" * 200_001, "big.bin")], "file_too_large"),
        ([IncomingFile(b"\x00\x01garbage", "photo.jpg")], "invalid_attachment"),
        ([IncomingFile(pdf_file(None), "scan.pdf")], "document_has_no_text"),
    ],
    ids=["five-files", "one-byte-over", "not-what-its-name-says", "scan-without-text"],
)
async def test_a_refused_file_is_said_and_nothing_is_stored(
    redis_client: aioredis.Redis,
    model_client: OpenRouterClient,
    fake_openrouter: FakeOpenRouter,
    files: list[IncomingFile],
    code: str,
):
    store = make_store(redis_client)
    outcome = await commands_on(store, model_client).handle(USER, "look", files=files)
    assert isinstance(outcome, Reply)
    assert outcome.is_error, outcome
    assert await stored(store) == []
    assert fake_openrouter.requests == []


async def test_four_files_and_a_file_at_the_size_limit_are_taken(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    store = make_store(redis_client)
    exactly = b"a" * (200_000 - 1) + b"\n"  # UTF-8 text of MAX_ATTACHMENT_BYTES
    files = [IncomingFile(image_file("PNG"), f"{n}.png") for n in range(3)]
    await answered(commands_on(store, model_client), "", *files, IncomingFile(exactly, "a.txt"))
    [(_, kinds), _] = await stored(store)
    assert [kind for kind, _, _ in kinds] == ["image", "image", "image", "document"]


async def test_a_failed_transcription_is_told_and_nothing_is_stored(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    store = make_store(redis_client)
    fake_openrouter.transcriptions.reject(400)
    outcome = await commands_on(store, model_client).handle(
        USER, "", files=[IncomingFile(wav_file(), "v.wav")]
    )
    assert isinstance(outcome, Reply)
    assert outcome.is_error
    assert await stored(store) == []
    assert not [r for r in fake_openrouter.requests if r.path.endswith("/chat/completions")]


async def test_with_pdf_engine_openrouter_a_scan_goes_to_the_model_as_a_file_for_its_ocr(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    store = make_store(redis_client)
    chat = ChatService(store, model_client, TurnSettings("", "openai/gpt-4o-mini"))
    limits = replace(LIMITS, sends_textless_pdfs=True)
    commands = CommandHandler(chat, intake=AttachmentIntake(limits, model_client))
    scan = pdf_file(None, image_pages=(0,))

    outcome = await commands.handle(USER, "read it", files=[IncomingFile(scan, "scan.pdf")])
    assert isinstance(outcome, TurnReply)
    async with outcome.turn as turn:
        async for _ in turn.deltas():
            pass

    body = fake_openrouter.requests[-1].body
    assert body["plugins"] == [{"id": "file-parser", "pdf": {"engine": "mistral-ocr"}}]
    text_part, file_part = body["messages"][-1]["content"]
    assert text_part == {"type": "text", "text": "read it"}
    assert file_part["file"]["filename"] == "scan.pdf"
    data = file_part["file"]["file_data"].removeprefix("data:application/pdf;base64,")
    assert base64.b64decode(data) == scan
    assert (await stored(store))[0] == ("read it", [("document", "application/pdf", "scan.pdf")])
    # The next turn sends it again (it is among the last IMAGE_CONTEXT_TURNS messages).
    await answered(commands, "and the second page?")
    assert "plugins" in fake_openrouter.requests[-1].body
