"""A strict stand-in for OpenRouter's `POST /api/v1/audio/transcriptions` (speech to text).

Part of FakeOpenRouter (`fake_openrouter.transcriptions`), on the same port and key. It takes
what the real endpoint takes, a JSON body

    {"model": "openai/whisper-1", "input_audio": {"data": "<base64>", "format": "ogg"}}

(optional `language`, `temperature`, `provider`), and answers `{"text", "usage"}` with an
`X-Generation-Id` header. It refuses as the real one does: 401 without the key; 400 for a body
that is not JSON, a missing or empty model, a missing `input_audio`, data that is not plain
base64 (a data URL included) or is empty, a format outside wav, mp3, flac, m4a, ogg, webm and
aac, a model that is not a speech-to-text one (`models`); 413 for audio over 25 MB. Errors use
OpenRouter's body, `{"error": {"code", "message"}}`.

The transcript is `text`, or by default the audio's bytes read as UTF-8 (a test "says" what it
sends). Faults are queued and consumed one per request, like the chat endpoint's, but in a
queue of their own, so a turn's chat request never takes a transcription's fault:

    fake_openrouter.transcriptions.rate_limit(retry_after=0, times=2)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections import deque
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import CIMultiDict

from tests.fakes.openrouter_server import (
    RecordedRequest,
    _drop_connection,
    _error_response,
    _Fault,
    _rate_limited,
)

if TYPE_CHECKING:
    from tests.fakes.openrouter_server import FakeOpenRouter

TRANSCRIPTIONS_ROUTE = "/api/v1/audio/transcriptions"
FORMATS = frozenset({"wav", "mp3", "flac", "m4a", "ogg", "webm", "aac"})
MAX_AUDIO_BYTES = 25_000_000  # "audio files up to 25 MB" (OpenRouter, openai/whisper-1)
# The body a 25 MB audio makes, in base64 and JSON (aiohttp's own cap, 1 MiB, is not used).
MAX_BODY_BYTES = 40 * 1024 * 1024
SPEECH_TO_TEXT_MODELS = frozenset(
    {
        "openai/whisper-1",
        "openai/whisper-large-v3",
        "openai/whisper-large-v3-turbo",
        "openai/gpt-4o-transcribe",
        "openai/gpt-4o-mini-transcribe",
        "deepgram/nova-3",
        "google/chirp-3",
    }
)
AUDIO_BYTES_PER_SECOND = 16_000  # what the fake bills a byte of audio as (128 kbit/s)
COST_PER_SECOND = 0.0001  # openai/whisper-1's price: $0.006 a minute


class FakeTranscriptions:
    """The transcription endpoint of one FakeOpenRouter: its text, faults and requests."""

    def __init__(self, owner: FakeOpenRouter) -> None:
        self._owner = owner
        self.text: str | None = None  # None: the audio's bytes read as UTF-8
        self.models = set(SPEECH_TO_TEXT_MODELS)
        self.reports_usage = True
        self.received = asyncio.Event()  # set once a first request has been recorded
        self._faults: deque[_Fault] = deque()
        self._next_id = 0

    @property
    def requests(self) -> list[RecordedRequest]:
        """The transcription requests received (all of them, refused ones included)."""
        return [r for r in self._owner.requests if r.path == TRANSCRIPTIONS_ROUTE]

    # Faults: each is queued `times` times and consumed by the next requests, in order.

    def rate_limit(
        self, retry_after: float | None = 1, *, as_http_date: bool = False, times: int = 1
    ) -> FakeTranscriptions:
        """429 with OpenRouter's error body and a Retry-After in seconds (or as an HTTP date)."""
        fault = _Fault("rate_limit", 429, retry_after=retry_after, is_http_date=as_http_date)
        return self._queue(fault, times)

    def server_error(self, status: int = 500, *, times: int = 1) -> FakeTranscriptions:
        return self._queue(_Fault("error", status), times)

    def reject(self, status: int = 400, *, times: int = 1) -> FakeTranscriptions:
        return self._queue(_Fault("error", status), times)

    def slow(self, seconds: float, *, times: int = 1) -> FakeTranscriptions:
        """Wait before sending the response headers."""
        return self._queue(_Fault("slow", seconds=seconds), times)

    def hold(self, gate: asyncio.Event, *, times: int = 1) -> FakeTranscriptions:
        """Wait until `gate` is set before answering."""
        return self._queue(_Fault("hold", gate=gate), times)

    def drop_after_request(self, *, is_reset: bool = False, times: int = 1) -> FakeTranscriptions:
        """Read the whole request, then close the connection without a byte of answer."""
        return self._queue(_Fault("drop", is_reset=is_reset), times)

    def garbled_answer(self, *, times: int = 1) -> FakeTranscriptions:
        """A 200 whose JSON has no `text`: an answer no client can read."""
        return self._queue(_Fault("garbled"), times)

    def clear_faults(self) -> FakeTranscriptions:
        self._faults.clear()
        return self

    def _queue(self, fault: _Fault, times: int) -> FakeTranscriptions:
        self._faults.extend([fault] * times)
        return self

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.content.read()  # past aiohttp's client_max_size, checked below
        body = _json_or_none(raw)
        self._owner.requests.append(
            RecordedRequest(request.path, CIMultiDict(request.headers), body)
        )
        self.received.set()
        if request.headers.get("Authorization") != f"Bearer {self._owner.api_key}":
            return _error_response(401, "No cookie auth credentials found")
        if len(raw) > MAX_BODY_BYTES:
            return _error_response(413, "Request body too large")
        problem = _problem_with(request, body, self.models)
        if problem is not None:
            return _error_response(*problem)
        audio = _audio_in(body)
        assert audio is not None  # checked by _problem_with
        fault = self._faults.popleft() if self._faults else _Fault("none")
        return await self._respond(request, audio, fault)

    async def _respond(
        self, request: web.Request, audio: bytes, fault: _Fault
    ) -> web.StreamResponse:
        if fault.kind == "drop":
            _drop_connection(request, is_reset=fault.is_reset)
            return web.Response()
        if fault.kind == "rate_limit":
            return _rate_limited(fault)
        if fault.kind == "error":
            return _error_response(fault.status, f"Fake failure {fault.status}")
        if fault.kind == "slow":
            await asyncio.sleep(fault.seconds)
        if fault.kind == "hold" and fault.gate is not None:
            await fault.gate.wait()
        self._next_id += 1
        headers = {"X-Generation-Id": f"gen-stt-fake-{self._next_id}"}
        if fault.kind == "garbled":
            return web.json_response({"transcript": "?"}, headers=headers)
        payload: dict[str, Any] = {"text": self._transcript_of(audio)}
        if self.reports_usage:
            seconds = round(len(audio) / AUDIO_BYTES_PER_SECOND, 3)
            payload["usage"] = {"seconds": seconds, "cost": round(seconds * COST_PER_SECOND, 9)}
        return web.json_response(payload, headers=headers)

    def _transcript_of(self, audio: bytes) -> str:
        return self.text if self.text is not None else audio.decode("utf-8", errors="replace")


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _problem_with(request: web.Request, body: Any, models: set[str]) -> tuple[int, str] | None:
    """The status and message the real endpoint would refuse this request with, or None."""
    if request.content_type != "application/json" or not isinstance(body, dict):
        return 400, "Invalid JSON body"
    model, input_audio = body.get("model"), body.get("input_audio")
    has_input_audio = isinstance(input_audio, dict)
    audio = _audio_in(body)
    checks = (
        (isinstance(model, str) and bool(model.strip()), 400, "model is required"),
        (has_input_audio, 400, "input_audio is required"),
        (
            isinstance(input_audio, dict) and input_audio.get("format") in FORMATS,
            400,
            f"input_audio.format must be one of {', '.join(sorted(FORMATS))}",
        ),
        (bool(audio), 400, "input_audio.data must be non-empty base64 (not a data URL)"),
        (len(audio or b"") <= MAX_AUDIO_BYTES, 413, "Audio exceeds the 25 MB limit"),
        (model in models, 400, f"Model {model} does not support transcription"),
    )
    return next(((status, message) for is_fine, status, message in checks if not is_fine), None)


def _audio_in(body: dict[str, Any]) -> bytes | None:
    input_audio = body.get("input_audio")
    return _base64_or_none(input_audio.get("data")) if isinstance(input_audio, dict) else None


def _base64_or_none(data: object) -> bytes | None:
    if not isinstance(data, str):
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
