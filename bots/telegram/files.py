"""Files people send the bot on Telegram: which of a message's files are taken, and their bytes.

Taken: a photo, a document (any: the core tells a picture, a PDF, a text file or audio from the
bytes, and refuses the rest), a voice note, an audio file. Not taken: stickers, videos, video
notes, and animations (GIFs Telegram turned into MP4), which also carry a `document`.

A photo comes in several sizes (PhotoSize, smallest first); the largest within
MAX_ATTACHMENT_BYTES is taken: a model sees at most IMAGE_MAX_SIDE pixels of it anyway.

Bytes come from the Bot API server: getFile gives a path, the file is then at
`<server>/file/bot<token>/<path>` (`file_base_url`). A size is checked before each step that
costs more: the size the update announces (before getFile), the one getFile gives (before the
download), the bytes downloaded (the core's intake). Telegram lets a bot download files of up
to 20 MB: past that getFile refuses ("file is too big"), which the user is told as such; a
self-hosted Bot API server in `--local` mode has no such limit.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit, urlunsplit

import structlog
from telegram import Bot, Message, PhotoSize
from telegram.error import BadRequest, TelegramError

from core.attachments.intake import MAX_FILES_PER_MESSAGE, IncomingFile
from core.attachments.media import check_size
from core.errors import TooManyAttachments

log = structlog.get_logger(__name__)

BOT_PATH = "/bot"  # where the Bot API's methods are: <server>/bot<token>/<method>
FILE_PATH = "/file/bot"  # and its files: <server>/file/bot<token>/<file_path>
TOO_BIG_FOR_TELEGRAM = "file is too big"  # getFile's refusal past 20 MB
PHOTO_NAME = "photo.jpg"  # Telegram sends photos as JPEG, and names them not


class DownloadFailed(Exception):
    """A file could not be fetched from Telegram; `key` is the sentence that says why."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(frozen=True, slots=True)
class SentFile:
    """One file of a message, as Telegram announced it: not downloaded yet."""

    file_id: str
    size: int | None  # as announced; None when Telegram named none
    name: str
    is_photo: bool = False


def file_base_url(api_base_url: str) -> str:
    """The file URL of the Bot API server at TELEGRAM_API_BASE_URL, as the Bot API lays it out:
    `https://api.telegram.org/bot` → `https://api.telegram.org/file/bot` (a test environment's
    `…/bot{token}/test` → `…/file/bot{token}/test`). Settings hold the URL to that layout."""
    parts = urlsplit(api_base_url)
    before, found, after = parts.path.rpartition(BOT_PATH)
    if not found:
        raise ValueError(f"{api_base_url!r} has no {BOT_PATH} path: not a Bot API address")
    return urlunsplit(parts._replace(path=f"{before}{FILE_PATH}{after}"))


def is_file_message(message: Message) -> bool:
    """Whether `message` carries a file we take (an animation's `document` is a video)."""
    if message.animation is not None:
        return False
    return bool(message.photo) or any(
        file is not None for file in (message.document, message.voice, message.audio)
    )


def sent_files(messages: Sequence[Message], *, max_bytes: int) -> list[SentFile]:
    """The files of `messages` (one, or an album's items), checked by their announced sizes:
    TooManyAttachments, FileTooLarge (raised before anything is downloaded)."""
    files = [file for message in messages for file in _files_of(message, max_bytes)]
    if len(files) > MAX_FILES_PER_MESSAGE:
        raise TooManyAttachments(count=len(files), limit=MAX_FILES_PER_MESSAGE)
    for file in files:
        if file.size is not None:
            check_size(file.size, limit=max_bytes)
    return _numbered(files)


async def download(bot: Bot, files: Sequence[SentFile], *, max_bytes: int) -> list[IncomingFile]:
    """The bytes of `files`, one after the other; DownloadFailed, or FileTooLarge by the size
    getFile gives (before downloading)."""
    return [IncomingFile(await _bytes_of(bot, file, max_bytes), file.name) for file in files]


async def _bytes_of(bot: Bot, sent: SentFile, max_bytes: int) -> bytes:
    try:
        file = await bot.get_file(sent.file_id)
    except BadRequest as error:
        if TOO_BIG_FOR_TELEGRAM in error.message.lower():
            raise DownloadFailed("telegram_file_too_big") from error
        raise _failed(error) from error
    except TelegramError as error:
        raise _failed(error) from error
    if file.file_size is not None:
        check_size(file.file_size, limit=max_bytes)
    try:
        return bytes(await file.download_as_bytearray())
    except (TelegramError, RuntimeError) as error:  # RuntimeError: getFile gave no path
        raise _failed(error) from error


def _failed(error: Exception) -> DownloadFailed:
    log.warning("telegram.download_failed", error=str(error), kind=type(error).__name__)
    return DownloadFailed("file_download_failed")


def _files_of(message: Message, max_bytes: int) -> list[SentFile]:
    if not is_file_message(message):
        return []
    if message.photo:
        return [_photo(message.photo, max_bytes)]
    if message.document is not None:
        document = message.document
        return [SentFile(document.file_id, document.file_size, document.file_name or "document")]
    if message.voice is not None:
        return [SentFile(message.voice.file_id, message.voice.file_size, "voice-message.ogg")]
    if message.audio is not None:
        audio = message.audio
        return [SentFile(audio.file_id, audio.file_size, audio.file_name or "audio")]
    return []


def _photo(sizes: Sequence[PhotoSize], max_bytes: int) -> SentFile:
    """The largest size within `max_bytes` (one whose size is not named counts as within);
    when none is, the smallest, which is then refused by its size."""
    by_pixels = sorted(sizes, key=lambda size: size.width * size.height)
    within = [size for size in by_pixels if size.file_size is None or size.file_size <= max_bytes]
    chosen = within[-1] if within else by_pixels[0]
    return SentFile(chosen.file_id, chosen.file_size, PHOTO_NAME, is_photo=True)


def _numbered(files: list[SentFile]) -> list[SentFile]:
    """An album's photos named apart (`photo-1.jpg`, `photo-2.jpg`): a name is how a person
    and /export tell one file from another (Telegram gives photos none)."""
    if sum(file.is_photo for file in files) < 2:
        return files
    number = itertools.count(1)
    return [
        replace(file, name=f"photo-{next(number)}.jpg") if file.is_photo else file for file in files
    ]
