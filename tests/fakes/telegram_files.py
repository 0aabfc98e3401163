"""Files on the fake Bot API: what users send (photos, documents, voice notes, audio) and how a
bot gets their bytes, as Telegram serves them. Part of FakeTelegram (`fake.hosted`).

A file a user sends is kept with the ids Telegram issues (`file_id`, and `file_unique_id`),
its size and no path yet. `getFile` gives it a `file_path` (`photos/file_0.jpg`,
`documents/file_1.pdf`, `voice/file_2.oga`, `music/file_3.mp3`); the bytes are then served at
`/file/bot<token>/<file_path>`, as api.telegram.org serves them. It refuses as the Bot API
server does (tdlib/telegram-bot-api, `Client::process_get_file_query` and `do_get_file`):

- getFile without a file_id: 400 "Bad Request: file_id not specified";
- a file_id it never issued: 400 "Bad Request: invalid file_id";
- a file over 20 MiB (MAX_DOWNLOAD_BYTES, `MAX_DOWNLOAD_FILE_SIZE = 20 << 20`): 400
  "Bad Request: file is too big", and the file never gets a path;
- a download at a path it never gave, or under another token: 404.

A photo arrives as Telegram shapes one: an array of PhotoSize, smallest first, each a JPEG of
its own (Telegram's thumbnails, made here with Pillow, long side 90, 320, 800 and 1280 px when
the photo is larger), the last the test's own bytes. Telegram sends photos as JPEG only: the
builder refuses anything else (send a PNG as a document, as a Telegram user would).

`fake.downloads` lists the file_ids whose bytes a bot downloaded, in order.
"""

from __future__ import annotations

import io
import mimetypes
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # what a bot may download through getFile
THUMBNAIL_SIDES = (90, 320, 800, 1280)  # Telegram's photo sizes below the original
MAX_PHOTO_SIDE = 2560  # Telegram scales a larger photo down to this
JPEG_MAGIC = b"\xff\xd8\xff"
# Telegram's file_id prefixes by kind (the first bytes of its base64url-encoded ids).
ID_PREFIXES = {"photos": "AgACAgIAAxkBAAI", "documents": "BQACAgIAAxkBAAI",
               "voice": "AwACAgIAAxkBAAI", "music": "CQACAgIAAxkBAAI"}  # fmt: skip
UNIQUE_PREFIXES = {"photos": "AQAD", "documents": "AgAD", "voice": "AgAD", "music": "AgAD"}


class FileRefused(Exception):
    """One refusal of the Bot API server: its HTTP status and Telegram's description."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


@dataclass
class HostedFile:
    """A file a user sent, as the Bot API server keeps it."""

    file_id: str
    file_unique_id: str
    data: bytes = field(repr=False)
    folder: str  # photos, documents, voice, music: the first part of its path
    extension: str  # with its dot, or empty
    is_size_known: bool = True  # the server may not know a size: it then names none
    file_path: str | None = None  # given by the first getFile

    def identity(self) -> dict[str, Any]:
        """The fields every file object starts with: ids, then the size when known."""
        fields: dict[str, Any] = {"file_id": self.file_id, "file_unique_id": self.file_unique_id}
        if self.is_size_known:
            fields["file_size"] = len(self.data)
        return fields


class FileHost:
    """The files users sent, getFile, and the download route."""

    def __init__(self, token: str) -> None:
        self._token = token
        self._files: dict[str, HostedFile] = {}
        self._by_path: dict[str, HostedFile] = {}
        self.downloads: list[str] = []  # file_ids downloaded, in order

    def add(
        self, data: bytes, folder: str, extension: str, *, is_size_known: bool = True
    ) -> HostedFile:
        number = len(self._files)
        file_id = f"{ID_PREFIXES[folder]}{number:06d}Zm9vYmFyYmF6cXV4AAE{folder[0]}"
        unique_id = f"{UNIQUE_PREFIXES[folder]}{number:08d}"
        hosted = HostedFile(file_id, unique_id, data, folder, extension, is_size_known)
        self._files[file_id] = hosted
        return hosted

    def get(self, file_id: str) -> HostedFile:
        return self._files[file_id]

    # Telegram's objects for what a user sends.

    def photo(self, data: bytes, *, is_size_known: bool = True) -> list[dict[str, Any]]:
        """A photo as an array of PhotoSize, smallest first; the last is `data` itself."""
        if not data.startswith(JPEG_MAGIC):
            raise ValueError("Telegram sends photos as JPEG: send other images as a document")
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            width, height = image.size
            if max(width, height) > MAX_PHOTO_SIDE:
                raise ValueError(f"Telegram keeps photos at most {MAX_PHOTO_SIDE} px on a side")
            sizes = [
                self._photo_size(_thumbnail(image, side), is_size_known=is_size_known)
                for side in THUMBNAIL_SIDES
                if side < max(width, height)
            ]
        sizes.append(self._photo_size(data, is_size_known=is_size_known))
        return sizes

    def _photo_size(self, data: bytes, *, is_size_known: bool) -> dict[str, Any]:
        hosted = self.add(data, "photos", ".jpg", is_size_known=is_size_known)
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
        return {**hosted.identity(), "width": width, "height": height}

    def document(
        self, data: bytes, file_name: str, mime_type: str | None, *, is_size_known: bool = True
    ) -> dict[str, Any]:
        """A Document: the name and type the sender's app gave (guessed from the name)."""
        guessed = mimetypes.guess_type(file_name)[0] or "application/octet-stream"
        hosted = self.add(data, "documents", _extension(file_name), is_size_known=is_size_known)
        return {**hosted.identity(), "file_name": file_name, "mime_type": mime_type or guessed}

    def voice(
        self, data: bytes, duration: int, mime_type: str, *, is_size_known: bool = True
    ) -> dict[str, Any]:
        """A Voice note: recorded in the app, Ogg Opus (`audio/ogg`), kept as `.oga`."""
        hosted = self.add(data, "voice", ".oga", is_size_known=is_size_known)
        return {**hosted.identity(), "duration": duration, "mime_type": mime_type}

    def audio(
        self,
        data: bytes,
        duration: int,
        *,
        file_name: str | None,
        mime_type: str | None,
        performer: str | None,
        title: str | None,
        is_size_known: bool = True,
    ) -> dict[str, Any]:
        """An Audio (a music file); the optional fields only when the sender's app gave them."""
        extension = _extension(file_name) or ".mp3"
        hosted = self.add(data, "music", extension, is_size_known=is_size_known)
        optional = {"performer": performer, "title": title, "file_name": file_name,
                    "mime_type": mime_type}  # fmt: skip
        present = {key: value for key, value in optional.items() if value is not None}
        return {**hosted.identity(), "duration": duration, **present}

    # The Bot API.

    def get_file(self, params: dict[str, Any]) -> dict[str, Any]:
        """getFile: the file, with a path to download it from (issued once, then kept)."""
        file_id = str(params.get("file_id") or "")
        if not file_id:
            raise FileRefused(400, "Bad Request: file_id not specified")
        hosted = self._files.get(file_id)
        if hosted is None:
            raise FileRefused(400, "Bad Request: invalid file_id")
        if len(hosted.data) > MAX_DOWNLOAD_BYTES:
            raise FileRefused(400, "Bad Request: file is too big")
        if hosted.file_path is None:
            hosted.file_path = f"{hosted.folder}/file_{len(self._by_path)}{hosted.extension}"
            self._by_path[hosted.file_path] = hosted
        return {**hosted.identity(), "file_path": hosted.file_path}

    async def serve(self, request: web.Request) -> web.Response:
        """GET /file/bot<token>/<file_path>: the bytes of a file getFile gave that path."""
        hosted = self._by_path.get(request.match_info["path"])
        if request.match_info["token"] != self._token or hosted is None:
            return web.json_response(
                {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
            )
        self.downloads.append(hosted.file_id)
        return web.Response(body=hosted.data, content_type="application/octet-stream")


def _extension(file_name: str | None) -> str:
    """`.pdf` of `Report.PDF`: the path Telegram gives keeps the name's extension."""
    if not file_name or "." not in file_name:
        return ""
    return "." + file_name.rsplit(".", 1)[1].lower()


def _thumbnail(image: Image.Image, side: int) -> bytes:
    """`image` scaled down to `side` px on its long side, as a JPEG of its own."""
    small = image.convert("RGB")
    small.thumbnail((side, side))
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=80)
    return out.getvalue()
