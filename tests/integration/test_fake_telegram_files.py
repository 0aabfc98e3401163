"""The fake Bot API's files, driven by the real python-telegram-bot client: what users send is
shaped as Telegram shapes it, and getFile and the downloads answer (and refuse) as the Bot API
server does.

No mocks: a real `telegram.Bot` talks HTTP to `FakeTelegram` on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from telegram import Bot, Update
from telegram.error import BadRequest, InvalidToken

from tests.attachment_files import image_file, ogg_opus, pdf_file
from tests.fakes import telegram_server
from tests.fakes.telegram_files import MAX_DOWNLOAD_BYTES
from tests.fakes.telegram_server import DEFAULT_GROUP_ID, FakeTelegram

fake_telegram = telegram_server.fake_telegram


@pytest.fixture
async def bot(fake_telegram: FakeTelegram) -> AsyncIterator[Bot]:
    """A real PTB Bot on the fake, downloading from its file URL."""
    async with Bot(
        fake_telegram.token,
        base_url=fake_telegram.base_url,
        base_file_url=fake_telegram.base_file_url,
    ) as client:
        yield client


async def test_a_photo_comes_in_every_smaller_size_then_the_sent_one_each_a_jpeg(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    sent = image_file("JPEG", (1000, 750))

    update = Update.de_json(fake_telegram.user_sends_photo(sent, caption="look"), bot)

    assert update.message is not None
    sizes = update.message.photo
    assert [(s.width, s.height) for s in sizes] == [(90, 68), (320, 240), (800, 600), (1000, 750)]
    assert update.message.caption == "look"
    assert update.message.text is None
    for size in sizes:
        data = await (await bot.get_file(size.file_id)).download_as_bytearray()
        assert data.startswith(b"\xff\xd8\xff")
        assert size.file_size == len(data)
    assert bytes(await (await bot.get_file(sizes[-1])).download_as_bytearray()) == sent
    assert len({s.file_id for s in sizes}) == len({s.file_unique_id for s in sizes}) == 4


async def test_a_small_photo_comes_in_its_one_size(bot: Bot, fake_telegram: FakeTelegram) -> None:
    update = Update.de_json(fake_telegram.user_sends_photo(image_file("JPEG", (90, 60))), bot)

    assert update.message is not None
    assert [(s.width, s.height) for s in update.message.photo] == [(90, 60)]


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "GIF"])
def test_a_photo_that_is_not_a_jpeg_cannot_be_sent_as_a_photo(
    fake_telegram: FakeTelegram, fmt: str
) -> None:
    with pytest.raises(ValueError, match="JPEG"):
        fake_telegram.user_sends_photo(image_file(fmt))


def test_a_photo_over_2560_pixels_cannot_be_sent_as_a_photo(fake_telegram: FakeTelegram) -> None:
    fake_telegram.user_sends_photo(image_file("JPEG", (2560, 10)))
    with pytest.raises(ValueError, match="2560"):
        fake_telegram.user_sends_photo(image_file("JPEG", (2561, 10)))


async def test_get_file_gives_the_real_fields_and_the_bytes_download_from_the_file_url(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    pdf = pdf_file("Tides turn twice a day.")
    update = Update.de_json(fake_telegram.user_sends_document(pdf, "tides.pdf"), bot)
    assert update.message is not None
    document = update.message.document
    assert document is not None

    call_before = len(fake_telegram.calls_to("getFile"))
    file = await bot.get_file(document.file_id)

    raw = fake_telegram.calls_to("getFile")[call_before:]
    assert [c.status for c in raw] == [200]
    assert (file.file_id, file.file_unique_id) == (document.file_id, document.file_unique_id)
    assert file.file_size == len(pdf)
    base = fake_telegram.base_file_url
    assert file.file_path == f"{base}{fake_telegram.token}/documents/file_0.pdf"
    assert fake_telegram.downloads == []
    assert bytes(await file.download_as_bytearray()) == pdf
    assert fake_telegram.downloads == [document.file_id]


async def test_a_document_carries_its_name_and_the_type_its_name_suggests(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    pdf = pdf_file("x")
    named = Update.de_json(fake_telegram.user_sends_document(pdf, "Report 2024.pdf"), bot)
    claimed = Update.de_json(
        fake_telegram.user_sends_document(b"hello", "notes", mime_type="text/plain"), bot
    )
    unknown = Update.de_json(fake_telegram.user_sends_document(b"\x00\x01", "blob.zzz"), bot)

    shapes = [
        (u.message.document.file_name, u.message.document.mime_type, u.message.document.file_size)
        for u in (named, claimed, unknown)
        if u.message is not None and u.message.document is not None
    ]
    assert shapes == [
        ("Report 2024.pdf", "application/pdf", len(pdf)),
        ("notes", "text/plain", 5),
        ("blob.zzz", "application/octet-stream", 2),
    ]


async def test_a_voice_note_carries_its_duration_and_ogg_type_and_an_audio_its_tags(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    voice = Update.de_json(fake_telegram.user_sends_voice(ogg_opus(), duration=7), bot)
    audio = Update.de_json(
        fake_telegram.user_sends_audio(ogg_opus(), file_name="tide.mp3", title="Tide"), bot
    )

    assert voice.message is not None
    assert voice.message.voice is not None
    assert (voice.message.voice.duration.total_seconds(), voice.message.voice.mime_type) == (
        7,
        "audio/ogg",
    )
    assert voice.message.voice.file_size == len(ogg_opus())
    assert audio.message is not None
    assert audio.message.audio is not None
    assert (audio.message.audio.file_name, audio.message.audio.title) == ("tide.mp3", "Tide")
    assert audio.message.audio.performer is None
    voice_file = await bot.get_file(voice.message.voice.file_id)
    assert voice_file.file_path is not None
    assert voice_file.file_path.endswith("/voice/file_0.oga")


async def test_a_caption_mentioning_the_bot_carries_caption_entities_in_a_group(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    update = Update.de_json(
        fake_telegram.user_sends_photo(
            image_file("JPEG"), caption="@chatbridge_test_bot what is this?", chat_type="group",
            chat_id=DEFAULT_GROUP_ID, media_group_id="13579",
        ),
        bot,
    )  # fmt: skip

    assert update.message is not None
    assert update.message.chat.type == "group"
    assert update.message.media_group_id == "13579"
    assert [(e.type, e.offset, e.length) for e in update.message.caption_entities] == [
        ("mention", 0, 20)
    ]


async def test_get_file_refuses_a_missing_or_unknown_file_id(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    with pytest.raises(BadRequest, match="Invalid file_id"):
        await bot.get_file("AgACAgIAAxkBAAI-never-issued")
    with pytest.raises(BadRequest, match="File_id not specified"):
        await bot.get_file("")


async def test_a_file_of_20_mib_is_served_and_one_byte_more_is_too_big(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    at_limit = fake_telegram.user_sends_document(b"a" * MAX_DOWNLOAD_BYTES, "big.txt")
    over = fake_telegram.user_sends_document(b"a" * (MAX_DOWNLOAD_BYTES + 1), "bigger.txt")

    served = await bot.get_file(at_limit["message"]["document"]["file_id"])
    assert served.file_size == MAX_DOWNLOAD_BYTES
    assert len(await served.download_as_bytearray()) == MAX_DOWNLOAD_BYTES
    with pytest.raises(BadRequest, match="File is too big"):
        await bot.get_file(over["message"]["document"]["file_id"])
    assert fake_telegram.downloads == [at_limit["message"]["document"]["file_id"]]


async def test_a_file_whose_size_is_unknown_names_none_in_the_update_nor_in_get_file(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    update = fake_telegram.user_sends_document(b"hello", "a.txt", is_size_known=False)
    document = update["message"]["document"]

    file = await bot.get_file(document["file_id"])

    assert "file_size" not in document
    assert file.file_size is None
    assert bytes(await file.download_as_bytearray()) == b"hello"


async def test_a_download_at_an_unknown_path_or_with_another_token_is_404(
    bot: Bot, fake_telegram: FakeTelegram
) -> None:
    update = fake_telegram.user_sends_document(b"hello", "a.txt")
    file = await bot.get_file(update["message"]["document"]["file_id"])
    assert file.file_path is not None
    base = fake_telegram.base_file_url

    async with aiohttp.ClientSession() as http:
        for url in (
            f"{base}{fake_telegram.token}/documents/file_9.txt",
            file.file_path.replace(fake_telegram.token, "123456:another-token"),
        ):
            async with http.get(url) as response:
                assert response.status == 404
                assert await response.json() == {
                    "ok": False, "error_code": 404, "description": "Not Found"
                }  # fmt: skip
    assert fake_telegram.downloads == []
    unknown = type(file)(file.file_id, file.file_unique_id, file_path=f"{base}x/documents/nope")
    unknown.set_bot(bot)
    with pytest.raises(InvalidToken, match="Not Found"):
        await unknown.download_as_bytearray()
