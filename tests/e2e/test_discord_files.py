"""Pictures, documents and voice messages on Discord, end to end: `python -m bots` on the fake
Discord, whose CDN serves the files at the attachments' signed URLs, answering with the fake
OpenRouter (chat and transcription), sessions in a real Redis.

Files are real (tests/attachment_files.py). What reaches the model is read from the fake
OpenRouter's requests; what was fetched, from the fake CDN's `downloads`. "Nothing was fetched"
is proved with a barrier, as in test_discord_chat.py: a later message of the same person in the
same channel has been answered (the bot takes one person's messages in a channel in order).
"""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
import redis.asyncio as aioredis
from PIL import Image

from core.errors import FileTooLarge, ModelCannotReadImages, TooManyAttachments
from core.messages import ENGLISH, describe, text
from core.sessions.limits import SessionLimits
from core.sessions.store import SessionStore
from tests.attachment_files import image_file, ogg_opus, pdf_file, wav_file
from tests.e2e import test_discord_chat
from tests.e2e.conftest import Service
from tests.e2e.discord_support import CHANNEL, FOOTER_MARK, GUILD, Person, StartBot, answer_text
from tests.e2e.test_discord_chat import (
    asks,
    bot_messages,
    finished_answers,
    first_reply,
    reference_id,
    until,
)
from tests.fakes.discord_cdn import CDN, MEDIA
from tests.fakes.discord_payloads import StoredMessage
from tests.fakes.discord_server import DEFAULT_USER_ID, FakeDiscord
from tests.fakes.openrouter_server import FakeOpenRouter, RecordedRequest

PNG = image_file("PNG", size=(40, 30))
TEXT_ONLY_MODEL = "meta-llama/llama-3.1-8b-instruct"  # listed by the fake without image input
# What the core suggests instead: the cheapest model the fake lists with image input.
CHEAPEST_VISION_MODEL = "google/gemini-2.0-flash-001"
CHAT_ROUTE = "/api/v1/chat/completions"
SIZE_LIMIT = 2000  # MAX_ATTACHMENT_BYTES where a test says so


def picture(name: str = "tide.png", data: bytes = PNG) -> tuple[str, bytes, str]:
    return (name, data, "image/png")


def text_file(name: str, size: int) -> tuple[str, bytes, str]:
    """A UTF-8 text file of exactly `size` bytes."""
    line = b"high tide at 06:12\n"
    return (name, (line * (size // len(line) + 1))[:size], "text/plain; charset=utf-8")


def chat_requests(fake_openrouter: FakeOpenRouter) -> list[RecordedRequest]:
    """The model requests (`requests` holds the transcription requests too)."""
    return [r for r in fake_openrouter.requests if r.path == CHAT_ROUTE]


def question_of(fake_openrouter: FakeOpenRouter, request: int = -1) -> Any:
    """The content of the last user message of a model request: text, or a list of parts."""
    return chat_requests(fake_openrouter)[request].body["messages"][-1]["content"]


def said_to_model(fake_openrouter: FakeOpenRouter) -> list[str]:
    """The words of the last user message of every model request, in order."""
    return [_words(r.body["messages"][-1]["content"]) for r in chat_requests(fake_openrouter)]


def _words(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part["type"] == "text")


def fetched(fake: FakeDiscord) -> list[tuple[str, int, int]]:
    return [(d.host, d.attachment_id, d.status) for d in fake.cdn.downloads]


def attachment_ids(posted: dict[str, Any]) -> list[int]:
    return [int(a["id"]) for a in posted["attachments"]]


async def shown_once_answered(
    person: Person, count: int, service: Service | None = None
) -> list[StoredMessage]:
    """The bot's `count` messages where `person` talks, once the last is a finished answer."""

    def done() -> list[StoredMessage]:
        shown = bot_messages(person)
        return shown if len(shown) == count and FOOTER_MARK in shown[-1].content else []

    return await until(person, done, what=f"{count} messages, an answer last", service=service)


# The service on the fakes, as test_discord_chat.py starts it.
start_bot = test_discord_chat.start_bot


@pytest.fixture
def alice(fake_discord: FakeDiscord) -> Person:
    """Alice in her DMs with the bot."""
    return Person(fake_discord)


@pytest.fixture
def alice_in_guild(fake_discord: FakeDiscord) -> Person:
    fake_discord.add_guild(GUILD, channels=[CHANNEL], members=[DEFAULT_USER_ID])
    return Person(fake_discord, guild_id=GUILD, channel_id=CHANNEL)


# --- what reaches the model -------------------------------------------------------------------


async def test_a_picture_reaches_the_model_as_a_data_url_of_the_picture_beside_the_text(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    """(A picture alone: test_discord_chat.py.)"""
    service = await start_bot()

    answer = await asks(alice, "what is this?", attachments=[picture()], service=service)

    words, image = question_of(fake_openrouter)
    assert words == {"type": "text", "text": "what is this?"}
    assert image["type"] == "image_url"
    header, _, data = image["image_url"]["url"].partition(",")
    assert header in {"data:image/jpeg;base64", "data:image/webp;base64"}
    with Image.open(io.BytesIO(base64.b64decode(data))) as sent:
        assert sent.size == (40, 30)
    assert answer_text(answer) == "echo: what is this?"
    assert [(host, status) for host, _, status in fetched(alice.fake)] == [(CDN, 200)]


async def test_a_pdfs_text_reaches_the_model_as_a_block_named_for_the_file_after_the_words(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    service = await start_bot()
    pdf = ("tides.pdf", pdf_file("High tide at 06:12, low tide at 12:30."), "application/pdf")

    answer = await asks(alice, "sum it up", attachments=[pdf], service=service)

    question = question_of(fake_openrouter)
    assert isinstance(question, str)
    assert question.startswith("sum it up\n\n")
    assert "tides.pdf" in question
    assert "High tide at 06:12, low tide at 12:30." in question
    assert answer_text(answer).startswith("echo: sum it up")


async def test_a_voice_message_is_heard_said_first_and_its_transcript_is_the_question(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    service = await start_bot()
    fake_openrouter.transcriptions.text = "when is high tide?"
    audio = ogg_opus()

    posted = alice.sends_voice_message(audio)
    heard, answer = await shown_once_answered(alice, 2, service)

    assert heard.content == text(ENGLISH, "heard", transcript="when is high tide?")
    assert reference_id(heard) == int(posted["id"])
    assert answer_text([answer]) == "echo: when is high tide?"
    assert said_to_model(fake_openrouter) == ["when is high tide?"]
    [transcription] = fake_openrouter.transcriptions.requests
    assert transcription.body["input_audio"]["format"] == "ogg"
    assert base64.b64decode(transcription.body["input_audio"]["data"]) == audio


async def test_other_audio_beside_text_is_transcribed_and_the_transcript_goes_before_the_text(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    service = await start_bot()
    fake_openrouter.transcriptions.text = "the boat leaves at noon"

    alice.posts("and is that early?", attachments=[("memo.wav", wav_file(), "audio/wav")])
    heard, _ = await shown_once_answered(alice, 2, service)

    assert heard.content == text(ENGLISH, "heard", transcript="the boat leaves at noon")
    assert said_to_model(fake_openrouter) == ["the boat leaves at noon\n\nand is that early?"]


async def test_a_text_only_model_gets_no_image_and_the_person_is_told_which_model_reads_one(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    service = await start_bot(DEFAULT_MODEL=TEXT_ONLY_MODEL)

    posted = alice.posts("what is this?", attachments=[picture()])
    told = await first_reply(alice, bool)
    barrier = await asks(alice, "and now?", service=service)

    refused = ModelCannotReadImages(model=TEXT_ONLY_MODEL, suggestion=CHEAPEST_VISION_MODEL)
    assert told.content == describe(refused, ENGLISH)
    assert reference_id(told) == int(posted["id"])
    assert answer_text(barrier) == "echo: and now?"
    [request] = chat_requests(fake_openrouter)  # the picture's message was neither sent nor kept
    asked = [m["content"] for m in request.body["messages"] if m["role"] == "user"]
    assert asked == ["and now?"]


# --- limits, refused before a byte is fetched -------------------------------------------------


async def test_a_file_over_the_size_limit_is_refused_before_download_and_one_at_it_is_read(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    service = await start_bot(MAX_ATTACHMENT_BYTES=str(SIZE_LIMIT))
    fake_openrouter.reply_text = "Noted."  # not the files again, over several messages
    over = text_file("over.txt", SIZE_LIMIT + 1)

    posted = alice.posts("read these", attachments=[text_file("ok.txt", SIZE_LIMIT), over])
    told = await first_reply(alice, bool)
    within = [text_file("at.txt", SIZE_LIMIT), text_file("below.txt", SIZE_LIMIT - 1)]
    read = alice.posts("", attachments=within)
    await shown_once_answered(alice, 2, service)

    assert told.content == describe(FileTooLarge(size=SIZE_LIMIT + 1, limit=SIZE_LIMIT), ENGLISH)
    assert reference_id(told) == int(posted["id"])
    assert [id_ for _, id_, _ in fetched(alice.fake)] == attachment_ids(read)
    question = question_of(fake_openrouter)
    assert "at.txt" in question
    assert "below.txt" in question
    assert len(chat_requests(fake_openrouter)) == 1


async def test_a_file_whose_bytes_are_over_the_limit_is_refused_though_announced_within_it(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot(MAX_ATTACHMENT_BYTES=str(SIZE_LIMIT))
    alice.fake.cdn.hold(host=CDN)

    posted = alice.posts("read it", attachments=[text_file("grown.txt", SIZE_LIMIT)])
    [(_, attachment_id, _)] = await alice.fake.wait_for(
        lambda: fetched(alice.fake), 10, what="the download"
    )
    alice.fake.cdn.replace(attachment_id, text_file("grown.txt", SIZE_LIMIT + 1)[1])
    alice.fake.cdn.release()
    told = await first_reply(alice, bool)

    assert told.content == describe(FileTooLarge(size=SIZE_LIMIT + 1, limit=SIZE_LIMIT), ENGLISH)
    assert reference_id(told) == int(posted["id"])
    assert chat_requests(fake_openrouter) == []


async def test_four_files_are_read_and_five_are_refused_before_any_download(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    service = await start_bot()
    five = [text_file(f"{n}.txt", 40) for n in range(4)] + [picture()]

    posted = alice.posts("all of them", attachments=five)
    told = await first_reply(alice, bool)
    four = await asks(alice, "these four", attachments=five[1:], service=service)

    assert told.content == describe(TooManyAttachments(count=5, limit=4), ENGLISH)
    assert reference_id(told) == int(posted["id"])
    assert len(alice.fake.cdn.downloads) == 4
    question = question_of(fake_openrouter)
    assert [part["type"] for part in question] == ["text", "image_url"]
    assert all(f"{n}.txt" in question[0]["text"] for n in (1, 2, 3))
    assert answer_text(four).startswith("echo: these four")


# --- who is read, and in which order ----------------------------------------------------------


async def test_in_a_guild_only_files_addressed_to_the_bot_are_fetched_and_read(
    start_bot: StartBot, alice_in_guild: Person, fake_openrouter: FakeOpenRouter
) -> None:
    service = await start_bot()
    fake_openrouter.transcriptions.text = "and tomorrow?"

    alice_in_guild.posts("look at this, everyone", attachments=[picture("ours.png")])
    mentioned = alice_in_guild.posts("what is this?", mentions_bot=True, attachments=[picture()])
    [answer] = await shown_once_answered(alice_in_guild, 1, service)
    voice = alice_in_guild.sends_voice_message(ogg_opus(), reply_to=answer.id)
    await shown_once_answered(alice_in_guild, 3, service)  # what was heard, then the answer

    assert [id_ for _, id_, _ in fetched(alice_in_guild.fake)] == [
        *attachment_ids(mentioned),
        *attachment_ids(voice),
    ]
    assert [part["type"] for part in question_of(fake_openrouter, 0)] == ["text", "image_url"]
    assert said_to_model(fake_openrouter)[1] == "and tomorrow?"


async def test_a_message_with_files_is_answered_in_its_turn_among_the_persons_messages(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    service = await start_bot()
    alice.fake.cdn.hold(host=CDN)

    alice.posts("look", attachments=[picture()])
    await alice.fake.wait_for(lambda: alice.fake.cdn.downloads, 10, what="the download")
    alice.posts("and then?")
    alice.fake.cdn.release()
    answers = await finished_answers(alice, 2, service)

    assert [answer_text([m]) for m in answers] == ["echo: look", "echo: and then?"]
    assert said_to_model(fake_openrouter) == ["look", "and then?"]


async def test_a_person_not_allowed_is_refused_and_their_files_are_not_fetched(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot(DISCORD_ALLOWED_USERS="Carol")

    posted = alice.posts("look", attachments=[picture()])
    told = await first_reply(alice, bool)

    assert told.content == text(ENGLISH, "not_allowed")
    assert reference_id(told) == int(posted["id"])
    assert alice.fake.cdn.downloads == []
    assert chat_requests(fake_openrouter) == []


# --- downloads that fail ----------------------------------------------------------------------


async def test_a_file_the_cdn_fails_is_read_from_the_media_proxy_and_one_neither_gives_is_said(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    service = await start_bot()
    cdn = alice.fake.cdn
    cdn.fail(503, host=CDN)

    proxied = alice.posts("look", attachments=[picture()])
    await shown_once_answered(alice, 1, service)
    cdn.fail(503, host=CDN)
    cdn.fail(404, host=MEDIA)
    lost = alice.posts("and this?", attachments=[picture("lost.png")])
    told = await until(alice, lambda: bot_messages(alice)[1:], what="the failure", service=service)

    [(picture_id,), (lost_id,)] = [attachment_ids(proxied), attachment_ids(lost)]
    assert fetched(alice.fake) == [
        (CDN, picture_id, 503), (MEDIA, picture_id, 200),
        (CDN, lost_id, 503), (MEDIA, lost_id, 404),
    ]  # fmt: skip
    assert told[0].content == text(ENGLISH, "attachment_download_failed")
    assert said_to_model(fake_openrouter) == ["look"]
    failures = service.events("discord.attachment_download_failed")
    assert [(f["source"], f["status"]) for f in failures] == [
        ("url", 503), ("url", 503), ("proxy_url", 404),
    ]  # fmt: skip
    assert all("hm=" not in line for line in service.stderr_lines)  # signed links stay unlogged


async def test_a_session_over_its_attachment_budget_drops_its_oldest_file_and_keeps_the_newest(
    start_bot: StartBot, alice: Person, redis_client: aioredis.Redis
) -> None:
    service = await start_bot(MAX_ATTACHMENT_BYTES_PER_SESSION="3000")
    await asks(alice, "first", attachments=[text_file("1.txt", 2200)], service=service)
    await asks(alice, "second", attachments=[text_file("2.txt", 2200)], service=service)

    store = SessionStore(redis_client, SessionLimits())
    session = await store.active_session(f"discord:{DEFAULT_USER_ID}")
    assert session is not None
    page = await store.read_messages(session.id)
    files = [(a.name, a.kept) for m in page.messages for a in m.attachments]
    assert files == [("1.txt", False), ("2.txt", True)]
