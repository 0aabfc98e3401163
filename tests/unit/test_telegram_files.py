"""Which files of a Telegram message are taken, checked by the sizes Telegram announces, and
where the Bot API server keeps them (its file URL)."""

from __future__ import annotations

import datetime as dt

import pytest
from telegram import Animation, Audio, Chat, Document, Message, PhotoSize, Sticker, Video, Voice

from bots.telegram.files import SentFile, file_base_url, is_file_message, sent_files
from core.attachments.intake import MAX_FILES_PER_MESSAGE
from core.errors import FileTooLarge, TooManyAttachments

CHAT = Chat(1001, "private")
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
LIMIT = 1000


def message(message_id: int = 1, **media: object) -> Message:
    return Message(message_id, NOW, CHAT, **media)  # type: ignore[arg-type]


def photo(*sizes: tuple[int, int | None]) -> list[PhotoSize]:
    """PhotoSizes of these (side, file_size), square, as Telegram orders them."""
    return [PhotoSize(f"p{side}", f"u{side}", side, side, size) for side, size in sizes]


def document(name: str | None = "a.pdf", size: int | None = 10) -> Document:
    return Document(f"d-{name}", "ud", file_name=name, file_size=size)


@pytest.mark.parametrize(
    ("api", "files"),
    [
        ("https://api.telegram.org/bot", "https://api.telegram.org/file/bot"),
        ("http://localhost:8081/bot", "http://localhost:8081/file/bot"),
        ("https://example.com/telegram/bot", "https://example.com/telegram/file/bot"),
        (
            "https://api.telegram.org/bot{token}/test",
            "https://api.telegram.org/file/bot{token}/test",
        ),
        ("https://bot.example.com/bot", "https://bot.example.com/file/bot"),
    ],
)
def test_the_file_url_is_the_bot_api_address_with_file_before_its_bot(api: str, files: str):
    assert file_base_url(api) == files


def test_an_address_without_a_bot_path_has_no_file_url():
    with pytest.raises(ValueError, match="/bot"):
        file_base_url("http://localhost:8081")


@pytest.mark.parametrize(
    "media",
    [
        {"photo": photo((90, 5))},
        {"document": document()},
        {"voice": Voice("v", "uv", 3)},
        {"audio": Audio("a", "ua", 3)},
    ],
)
def test_photos_documents_voice_notes_and_audio_are_taken(media: dict[str, object]):
    assert is_file_message(message(**media))


@pytest.mark.parametrize(
    "media",
    [
        {},
        {"sticker": Sticker("s", "us", 512, 512, False, False, "regular")},
        {"video": Video("v", "uv", 640, 480, 3)},
        # Telegram sends an animation with a `document` too: it is a video all the same.
        {"animation": Animation("a", "ua", 320, 240, 2), "document": document("a.mp4")},
    ],
)
def test_stickers_videos_and_animations_are_not_taken(media: dict[str, object]):
    assert not is_file_message(message(**media))


def test_the_largest_photo_size_within_the_limit_is_taken():
    sizes = photo((90, 100), (320, LIMIT), (800, LIMIT + 1))

    [taken] = sent_files([message(photo=sizes)], max_bytes=LIMIT)

    assert taken == SentFile("p320", LIMIT, "photo.jpg", is_photo=True)


def test_the_largest_photo_size_is_taken_when_it_is_within_the_limit_or_names_no_size():
    within = sent_files([message(photo=photo((90, 100), (800, LIMIT)))], max_bytes=LIMIT)
    unnamed = sent_files([message(photo=photo((90, 100), (800, None)))], max_bytes=LIMIT)

    assert [f.file_id for f in within + unnamed] == ["p800", "p800"]


def test_a_photo_whose_every_size_is_over_the_limit_is_refused_by_its_smallest():
    sizes = photo((90, LIMIT + 1), (320, LIMIT + 50))

    with pytest.raises(FileTooLarge) as refused:
        sent_files([message(photo=sizes)], max_bytes=LIMIT)

    assert (refused.value.size, refused.value.limit) == (LIMIT + 1, LIMIT)


@pytest.mark.parametrize("media", ["document", "voice", "audio"])
def test_a_file_is_taken_at_the_limit_and_refused_one_byte_over(media: str):
    def of_size(size: int) -> Message:
        files = {"document": document(size=size), "voice": Voice("v", "uv", 3, file_size=size),
                 "audio": Audio("a", "ua", 3, file_size=size)}  # fmt: skip
        return message(**{media: files[media]})

    assert [f.size for f in sent_files([of_size(LIMIT)], max_bytes=LIMIT)] == [LIMIT]
    with pytest.raises(FileTooLarge):
        sent_files([of_size(LIMIT + 1)], max_bytes=LIMIT)


def test_a_file_of_unnamed_size_is_taken_to_be_checked_later():
    [taken] = sent_files([message(document=document(size=None))], max_bytes=LIMIT)

    assert taken.size is None


def test_files_are_named_as_sent_or_by_their_kind():
    messages = [
        message(1, document=document("Report.pdf")),
        message(2, document=document(None)),
        message(3, voice=Voice("v", "uv", 3)),
        message(4, audio=Audio("a", "ua", 3, file_name="song.mp3")),
    ]

    names = [f.name for f in sent_files(messages, max_bytes=LIMIT)]

    assert names == ["Report.pdf", "document", "voice-message.ogg", "song.mp3"]


def test_an_albums_photos_are_numbered_and_a_lone_photo_is_not():
    album = [
        message(1, photo=photo((90, 5))),
        message(2, document=document("photo.jpg")),
        message(3, photo=photo((90, 5))),
    ]

    names = [f.name for f in sent_files(album, max_bytes=LIMIT)]
    lone = sent_files([message(photo=photo((90, 5)))], max_bytes=LIMIT)

    assert names == ["photo-1.jpg", "photo.jpg", "photo-2.jpg"]
    assert [f.name for f in lone] == ["photo.jpg"]


def test_an_album_of_four_files_is_taken_and_one_of_five_refused_before_any_size():
    def album(count: int, size: int) -> list[Message]:
        return [message(n, document=document(f"{n}.pdf", size)) for n in range(count)]

    assert len(sent_files(album(MAX_FILES_PER_MESSAGE, LIMIT), max_bytes=LIMIT)) == 4
    with pytest.raises(FileTooLarge):  # four: each is then checked
        sent_files(album(MAX_FILES_PER_MESSAGE, LIMIT * 2), max_bytes=LIMIT)
    with pytest.raises(TooManyAttachments) as refused:
        sent_files(album(MAX_FILES_PER_MESSAGE + 1, LIMIT * 2), max_bytes=LIMIT)
    assert refused.value.params == {"count": 5, "limit": 4}
