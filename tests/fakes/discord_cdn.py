"""The fake Discord's CDN: the bytes of every attachment, at the URLs its attachment objects carry.

Discord serves a message's files at `https://cdn.discordapp.com/attachments/<channel id>/
<attachment id>/<filename>` (the attachment's `url`) and the same path at
`https://media.discordapp.net` (its `proxy_url`, the media proxy). Since December 2023 each link
is signed: `?ex=<expiry>&is=<issue>&hm=<signature>`, times in hexadecimal Unix seconds. A link
without them, with a signature that does not match, past its expiry, or to a file Discord does
not have, gets `404 This content is no longer available.`. No token is needed: discord.py's
`Attachment.read()` fetches `url` (`read(use_cached=True)`: `proxy_url`) with its HTTP session
and no Authorization header (`HTTPClient.get_from_cdn`: 200 the bytes, 404 `NotFound`, 403
`Forbidden`, any other status `HTTPException`).

Here the two hosts are 127.0.0.1 on ports of their own (`cdn_base_url`, `media_base_url`).
Links live `link_lifetime` seconds (Discord: 24 hours). Every request is recorded in
`downloads`; faults are queued per host:

    fake_discord.cdn.fail(503, host=CDN)   # the next CDN download answers 503
    fake_discord.cdn.hold(host=CDN)        # CDN downloads wait until `release()`
    fake_discord.cdn.replace(id, b"...")   # other bytes than the attachment's `size` said
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

CDN = "cdn"  # cdn.discordapp.com: an attachment's `url`
MEDIA = "media"  # media.discordapp.net: its `proxy_url`
LINK_LIFETIME = 24 * 3600.0
GONE = "This content is no longer available."


@dataclass(frozen=True)
class CdnFile:
    content: bytes
    content_type: str


@dataclass
class Download:
    """One request to the CDN or the media proxy, as it arrived; `status` once answered."""

    host: str  # CDN or MEDIA
    path: str
    query: dict[str, str]
    at: float  # time.monotonic()
    status: int = 0

    @property
    def attachment_id(self) -> int:
        return int(self.path.split("/")[3])


@dataclass
class _Fault:
    host: str
    status: int
    times: int


class FakeCdn:
    """Both hosts of Discord's file delivery; `start()` it, `close()` it (FakeDiscord does)."""

    def __init__(self) -> None:
        self.downloads: list[Download] = []
        self.link_lifetime = LINK_LIFETIME
        self._secret = secrets.token_bytes(32)
        self._files: dict[str, CdnFile] = {}  # path (decoded) -> file
        self._faults: list[_Fault] = []
        self._gates: dict[str, asyncio.Event] = {}
        self._runner: web.AppRunner | None = None
        self._ports: dict[str, int] = {}

    @property
    def cdn_base_url(self) -> str:
        return f"http://127.0.0.1:{self._ports[CDN]}"

    @property
    def media_base_url(self) -> str:
        return f"http://127.0.0.1:{self._ports[MEDIA]}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/attachments/{channel}/{attachment}/{filename}", self._serve)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        for host in (CDN, MEDIA):
            await web.TCPSite(self._runner, "127.0.0.1", 0).start()
            self._ports[host] = self._runner.addresses[-1][1]

    async def close(self) -> None:
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # What the fake Discord does.

    def store(
        self, channel_id: int, attachment_id: int, filename: str, file: CdnFile
    ) -> tuple[str, str]:
        """Keep `file` for its attachment; its `url` and `proxy_url`, signed from now."""
        path = f"/attachments/{channel_id}/{attachment_id}/{filename}"
        self._files[path] = file
        issued = int(time.time())
        expires = issued + int(self.link_lifetime)
        signed = {"ex": f"{expires:x}", "is": f"{issued:x}"}
        signed["hm"] = self._signature(path, signed["ex"], signed["is"])
        query = "&".join(f"{key}={value}" for key, value in signed.items())
        link = f"{quote(path)}?{query}"
        return f"{self.cdn_base_url}{link}", f"{self.media_base_url}{link}"

    # What tests do.

    def downloads_of(self, attachment_id: int) -> list[Download]:
        return [d for d in self.downloads if d.attachment_id == attachment_id]

    def replace(self, attachment_id: int, content: bytes) -> None:
        """Serve `content` for that attachment from now on: bytes that are not what its
        `size` announced."""
        for path, file in self._files.items():
            if path.split("/")[3] == str(attachment_id):
                self._files[path] = CdnFile(content, file.content_type)
                return
        raise ValueError(f"no attachment {attachment_id}")

    def fail(self, status: int = 503, *, times: int = 1, host: str = CDN) -> None:
        """The next `times` requests to `host` answer `status`, with nothing."""
        self._faults.append(_Fault(host, status, times))

    def hold(self, *, host: str = CDN) -> None:
        """Requests to `host` wait, unanswered, until `release()`."""
        self._gates.setdefault(host, asyncio.Event())

    def release(self) -> None:
        for gate in self._gates.values():
            gate.set()
        self._gates.clear()

    # HTTP.

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        port = request.transport.get_extra_info("sockname")[1] if request.transport else 0
        host = CDN if port == self._ports[CDN] else MEDIA
        download = Download(host, request.path, dict(request.query), time.monotonic())
        self.downloads.append(download)
        gate = self._gates.get(host)
        if gate is not None:
            await gate.wait()
        response = self._answer(host, request)
        download.status = response.status
        return response

    def _answer(self, host: str, request: web.Request) -> web.Response:
        fault = next((f for f in self._faults if f.host == host and f.times > 0), None)
        if fault is not None:
            fault.times -= 1
            return web.Response(status=fault.status)
        found = self._files.get(request.path)
        if found is None or not self._is_signed(request.path, request.query):
            return web.Response(status=404, text=GONE)
        media_type, _, charset = found.content_type.partition("; charset=")
        return web.Response(body=found.content, content_type=media_type, charset=charset or None)

    def _is_signed(self, path: str, query: Mapping[str, str]) -> bool:
        """A signature of this path and these times, not yet expired."""
        expires, issued, signature = (query.get(k) for k in ("ex", "is", "hm"))
        if not (expires and issued and signature):
            return False
        if not hmac.compare_digest(signature, self._signature(path, expires, issued)):
            return False
        try:
            return time.time() < int(expires, 16)
        except ValueError:
            return False

    def _signature(self, path: str, expires: str, issued: str) -> str:
        message = f"{path}?ex={expires}&is={issued}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()
