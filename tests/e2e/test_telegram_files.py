"""Photos, documents and voice on Telegram, end to end: `python -m bots` long polling the fake
Bot API, which hands out the test's real files (tests/attachment_files.py) through getFile and
its file URL; the fake OpenRouter answers and transcribes; sessions in a real Redis.

What the model is asked is read from the fake OpenRouter's requests; what the user sees from
the fake Bot API; what a session keeps through the service's HTTP API. "Nothing happened" is
proved with a barrier, as in test_telegram.py: a later /help in the same chat was answered.
Private chats stream as paced edits here (drafts refused), as in test_telegram.py.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import pytest
from PIL import Image

from bots.telegram.render import plain_text
from core.errors import FileTooLarge, ModelCannotReadImages, TooManyAttachments
from core.messages import ENGLISH, describe, text
from tests.attachment_files import image_file, ogg_opus, pdf_file
from tests.e2e import test_telegram
from tests.e2e.conftest import Service
from tests.e2e.test_telegram import BOT_USERNAME, Person, StartBot
from tests.fakes.openrouter_server import FakeOpenRouter, RecordedRequest
from tests.fakes.telegram_files import MAX_DOWNLOAD_BYTES
from tests.fakes.telegram_server import DEFAULT_USER_ID, FakeTelegram

CHAT_ROUTE = "/api/v1/chat/completions"
TEXT_ONLY_MODEL = "meta-llama/llama-3.1-8b-instruct"  # the fake lists it without image input
CHEAPEST_IMAGE_MODEL = "google/gemini-2.0-flash-001"  # the fake's cheapest that reads images
CAPTION = "what is in this picture?"


@pytest.fixture(autouse=True)
def private_chats_stream_as_edits(fake_telegram: FakeTelegram) -> None:
    fake_telegram.refuse_drafts()


@pytest.fixture
def alice(fake_telegram: FakeTelegram) -> Person:
    return Person(fake_telegram)


# The service on the fakes, as test_telegram.py starts it.
start_bot = test_telegram.start_bot


def chat_requests(fake_openrouter: FakeOpenRouter) -> list[RecordedRequest]:
    """The chat completions asked (the transcriptions' requests left out)."""
    return [r for r in fake_openrouter.requests if r.path == CHAT_ROUTE]


def last_question(fake_openrouter: FakeOpenRouter) -> Any:
    """The content of the last user message of the last chat request: a text or parts."""
    sent = chat_requests(fake_openrouter)[-1].body["messages"]
    return next(m for m in reversed(sent) if m["role"] == "user")["content"]


def image_of(part: dict[str, Any]) -> Image.Image:
    """The picture an `image_url` part carries, from its data URL."""
    assert part["type"] == "image_url"
    header, data = part["image_url"]["url"].split(",", 1)
    assert header in ("data:image/jpeg;base64", "data:image/webp;base64")
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image


async def answer_to(person: Person, send: Any, *, what: str) -> Any:
    """`send()` something; the bot's next message in the person's chat."""
    before = len(person.bot_messages())
    send()
    return await person.next_message(before, what=what)


async def session_files(service: Service, user_id: str) -> list[tuple[str, bool]]:
    """(name, kept) of every file of the person's active session, oldest first, as the HTTP
    API lists them."""
    async with httpx.AsyncClient(base_url=service.local_url, timeout=10.0) as http:
        listed = (await http.get(f"/api/users/{user_id}/sessions")).json()["sessions"]
        assert len(listed) == 1
        messages = (await http.get(f"/api/sessions/{listed[0]['id']}/messages")).json()
    return [(f["name"], f["kept"]) for m in messages["messages"] for f in m["attachments"]]


# --- what reaches the model ------------------------------------------------------------------


async def test_a_photo_with_a_caption_reaches_the_model_as_an_image_data_url_and_the_caption(
    start_bot: StartBot, alice: Person, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    update = alice.sends_photo(image_file("JPEG", (1000, 750)), caption=CAPTION)
    answer = await alice.next_message(0, what="the answer to a photo")

    await alice.shows(answer, f"echo: {CAPTION}")
    caption, picture = last_question(fake_openrouter)
    assert caption == {"type": "text", "text": CAPTION}
    assert image_of(picture).size == (1000, 750)
    largest = update["message"]["photo"][-1]["file_id"]
    assert fake_telegram.downloads == [largest]  # the largest size, and only it


async def test_a_photo_without_a_caption_reaches_the_model_alone(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    alice.sends_photo(image_file("JPEG", (64, 48)))
    await alice.next_message(0, what="the answer to a photo")

    [picture] = last_question(fake_openrouter)
    assert image_of(picture).size == (64, 48)


async def test_the_largest_photo_size_within_max_attachment_bytes_is_the_one_downloaded(
    start_bot: StartBot, alice: Person, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    update = alice.sends_photo(image_file("JPEG", (1000, 750)), caption=CAPTION)  # read at start
    sent = update["message"]["photo"]
    limit = sent[-2]["file_size"]  # the 800 px size fits exactly; the one sent does not
    assert sent[-1]["file_size"] > limit
    await start_bot(MAX_ATTACHMENT_BYTES=str(limit))

    await alice.shows(await alice.next_message(0, what="an answer"), f"echo: {CAPTION}")

    assert fake_telegram.downloads == [sent[-2]["file_id"]]
    assert image_of(last_question(fake_openrouter)[1]).size == (800, 600)


async def test_an_image_sent_as_a_document_reaches_the_model_as_an_image(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    alice.sends_document(image_file("PNG", (40, 30)), "chart.png", caption="read the chart")
    await alice.shows(await alice.next_message(0, what="an answer"), "echo: read the chart")

    words, picture = last_question(fake_openrouter)
    assert words == {"type": "text", "text": "read the chart"}
    assert image_of(picture).size == (40, 30)


async def test_a_pdfs_text_reaches_the_model_as_text_under_its_name(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    pdf = pdf_file("High tide at 06:12, low tide at 12:30.")

    alice.sends_document(pdf, "tides.pdf", caption="when is high tide?")
    await alice.next_message(0, what="an answer")

    asked = last_question(fake_openrouter)
    assert isinstance(asked, str)  # no image: plain text
    assert asked.startswith("when is high tide?\n\n")
    assert "tides.pdf" in asked
    assert "High tide at 06:12, low tide at 12:30." in asked


async def test_a_voice_notes_transcript_is_shown_first_quoted_and_reaches_the_model_as_text(
    start_bot: StartBot, alice: Person, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    fake_openrouter.transcriptions.text = "when is high tide?"

    alice.sends_voice(ogg_opus(), duration=2)
    heard, answer = await fake_telegram.wait_for(
        lambda: alice.bot_messages()[:2] if len(alice.bot_messages()) >= 2 else None,
        what="the transcript and the answer",
    )

    assert heard.visible_text == plain_text(text(ENGLISH, "heard", transcript="when is high tide?"))
    await alice.shows(answer, "echo: when is high tide?")
    assert last_question(fake_openrouter) == "when is high tide?"
    [transcribed] = fake_openrouter.transcriptions.requests
    assert transcribed.body["input_audio"]["format"] == "ogg"
    assert base64.b64decode(transcribed.body["input_audio"]["data"]) == ogg_opus()


async def test_an_albums_photos_and_caption_reach_the_model_as_one_message(
    start_bot: StartBot, alice: Person, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    sides = [(40, 30), (50, 40), (60, 50)]

    for number, side in enumerate(sides):
        caption = "compare these" if number == 0 else None
        alice.sends_photo(image_file("JPEG", side), caption=caption, media_group_id="album-1")
    answer = await alice.next_message(0, what="the answer to an album")
    await alice.shows(answer, "echo: compare these")
    shown = await alice.answers_before_help()

    assert shown == [answer]  # one answer for the album
    assert len(chat_requests(fake_openrouter)) == 1
    words, *pictures = last_question(fake_openrouter)
    assert words == {"type": "text", "text": "compare these"}
    assert [image_of(p).size for p in pictures] == sides


async def test_an_album_of_five_files_is_refused_before_any_download(
    start_bot: StartBot, alice: Person, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()

    for number in range(5):
        alice.sends_document(pdf_file(f"page {number}"), f"{number}.pdf", media_group_id="five")
    refused = await alice.next_message(0, what="the refusal")

    assert refused.visible_text == describe(TooManyAttachments(count=5, limit=4), ENGLISH)
    assert await alice.answers_before_help() == [refused]
    assert fake_telegram.calls_to("getFile") == []
    assert chat_requests(fake_openrouter) == []


# --- models that cannot see, and what a session keeps -----------------------------------------


async def test_a_text_only_model_gets_no_image_and_the_user_is_told_which_model_can(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    service = await start_bot(DEFAULT_MODEL=TEXT_ONLY_MODEL)

    alice.sends_photo(image_file("JPEG"), caption=CAPTION)
    told = await alice.next_message(0, what="the refusal")

    refusal = ModelCannotReadImages(model=TEXT_ONLY_MODEL, suggestion=CHEAPEST_IMAGE_MODEL)
    assert told.visible_text == plain_text(describe(refusal, ENGLISH))
    assert chat_requests(fake_openrouter) == []
    async with httpx.AsyncClient(base_url=service.local_url, timeout=10.0) as http:
        listed = (await http.get(f"/api/users/telegram:{DEFAULT_USER_ID}/sessions")).json()
    assert all(session["messageCount"] == 0 for session in listed["sessions"])


async def test_over_its_attachment_budget_a_session_drops_its_oldest_file_and_keeps_the_newest(
    start_bot: StartBot, alice: Person
) -> None:
    service = await start_bot(MAX_ATTACHMENT_BYTES_PER_SESSION="400")

    for name in ("old.txt", "new.txt"):
        before = len(alice.bot_messages())
        alice.sends_document(name.encode() * 50, name)  # 350 bytes: two do not fit in 400
        await alice.next_message(before, what=f"the answer to {name}")

    assert await session_files(service, f"telegram:{DEFAULT_USER_ID}") == [
        ("old.txt", False),
        ("new.txt", True),
    ]


# --- sizes ------------------------------------------------------------------------------------


async def test_a_file_at_max_attachment_bytes_is_read_and_one_byte_over_is_refused_unfetched(
    start_bot: StartBot, alice: Person, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    limit = 1000
    await start_bot(MAX_ATTACHMENT_BYTES=str(limit))

    for size in (limit - 1, limit):
        before = len(alice.bot_messages())
        alice.sends_document(b"t" * size, f"{size}.txt")
        await alice.next_message(before, what=f"the answer to {size} bytes")
    over = alice.sends_document(b"t" * (limit + 1), "over.txt")
    refused = await alice.next_message(2, what="the refusal")

    assert refused.visible_text == describe(FileTooLarge(size=limit + 1, limit=limit), ENGLISH)
    over_id = over["message"]["document"]["file_id"]
    assert over_id not in [c.params.get("file_id") for c in fake_telegram.calls_to("getFile")]
    assert over_id not in fake_telegram.downloads
    assert len(fake_telegram.downloads) == 2
    assert len(chat_requests(fake_openrouter)) == 2


async def test_a_file_whose_size_telegram_does_not_name_is_refused_once_downloaded(
    start_bot: StartBot, alice: Person, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    limit = 1000
    await start_bot(MAX_ATTACHMENT_BYTES=str(limit))

    alice.sends_document(b"t" * (limit + 1), "quiet.txt", is_size_known=False)
    refused = await alice.next_message(0, what="the refusal")

    assert refused.visible_text == describe(FileTooLarge(size=limit + 1, limit=limit), ENGLISH)
    assert len(fake_telegram.downloads) == 1  # it had to be fetched to be measured
    assert chat_requests(fake_openrouter) == []


async def test_a_file_over_telegrams_20_mb_for_bots_is_told_as_such(
    start_bot: StartBot, alice: Person, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot(MAX_ATTACHMENT_BYTES=str(30 * 1024 * 1024))  # ours allows it: Telegram not

    alice.sends_document(b"t" * (MAX_DOWNLOAD_BYTES + 1), "huge.txt")
    told = await alice.next_message(0, what="the refusal")

    assert told.visible_text == text(ENGLISH, "telegram_file_too_big")
    assert [c.status for c in fake_telegram.calls_to("getFile")] == [400]
    assert fake_telegram.downloads == []
    assert chat_requests(fake_openrouter) == []


async def test_a_download_telegram_refuses_is_told_and_the_file_sent_again_is_read(
    start_bot: StartBot, alice: Person, fake_telegram: FakeTelegram
) -> None:
    await start_bot()
    fake_telegram.rate_limit("getFile", retry_after=1)

    alice.sends_document(b"tides", "a.txt", caption="once")
    told = await alice.next_message(0, what="the refusal")
    alice.sends_document(b"tides", "a.txt", caption="twice")
    answer = await alice.next_message(1, what="the answer")

    assert told.visible_text == text(ENGLISH, "file_download_failed")
    await fake_telegram.wait_for(lambda: answer.visible_text.startswith("echo: twice\n\n"))
    assert answer.visible_text.endswith("tides")


# --- groups and forum topics ------------------------------------------------------------------


async def test_a_photo_in_a_group_without_a_mention_is_ignored_like_text(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    in_group = Person(fake_telegram, chat_type="group")

    in_group.sends_photo(image_file("JPEG"), caption="look at this")
    in_group.sends_photo(image_file("JPEG"))

    assert await in_group.answers_before_help() == []
    assert fake_telegram.calls_to("getFile") == []
    assert chat_requests(fake_openrouter) == []
    mentioned = await answer_to(
        in_group,
        lambda: in_group.sends_photo(image_file("JPEG"), caption=f"@{BOT_USERNAME} {CAPTION}"),
        what="the answer to a mention",
    )
    await in_group.shows(mentioned, f"echo: {CAPTION}")


async def test_a_photo_in_a_forum_topic_is_answered_in_that_topic(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    tides = fake_telegram.open_topic("Tides")
    in_topic = Person(fake_telegram, chat_type="supergroup", topic=tides)

    in_topic.sends_photo(image_file("JPEG"), caption=f"@{BOT_USERNAME} {CAPTION}")
    answer = await in_topic.next_message(0, what="the answer in the topic")

    await in_topic.shows(answer, f"echo: {CAPTION}")
    assert answer.thread_id == tides
    caption, picture = last_question(fake_openrouter)
    assert caption == {"type": "text", "text": CAPTION}
    assert image_of(picture).size == (8, 6)
