"""OpenRouter's speech-to-text wire format: what `POST /audio/transcriptions` takes and gives.

The request is JSON, the audio in it base64 (the raw bytes' base64, not a data URL):

    {"model": "openai/whisper-1", "input_audio": {"data": "<base64>", "format": "ogg"}}

and a 200 answers `{"text": "...", "usage": {...}}`, every usage field optional (`seconds` of
audio billed, or `input_tokens`/`output_tokens`/`total_tokens`, and `cost` in USD), with the
generation's id in the `X-Generation-Id` header. Errors come as the chat endpoint's do:
an HTTP status and `{"error": {"code", "message"}}` (read by wire.py).

What we rely on, from OpenRouter's documentation (its speech-to-text guide and API reference,
and the openai/whisper-1 model page): the formats are wav, mp3, flac, m4a, ogg, webm and aac
("supported formats vary by provider"); inline audio is accepted up to 25 MB (whisper-1:
"audio files up to 25 MB"), which MAX_AUDIO_BYTES holds to as 25,000,000 bytes, the smaller
reading of "MB"; no cap on duration is documented (upstream providers give up after about
60 s of processing, so the client's read timeout for a transcription is longer than that).

Every failure leaves the client as `core.errors.TranscriptionFailed` (`transcription_failure`
turns the model error behind it into one), so a front tells that the audio was not
transcribed; the audio is refused before any request when it is empty, too large, or of a
media type none of the formats matches.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Final

import httpx

from core.errors import (
    ModelCircuitOpen,
    ModelError,
    ModelNotConfigured,
    ModelRateLimited,
    ModelRejected,
    ModelTimeout,
    ModelUnavailable,
    TranscriptionEmpty,
    TranscriptionFailed,
    TranscriptionReason,
)
from core.llm.wire import error_for_code, json_object

TRANSCRIPTIONS_PATH: Final = "/audio/transcriptions"
DEFAULT_TRANSCRIPTION_MODEL: Final = "openai/whisper-1"
MAX_AUDIO_BYTES: Final = 25_000_000
# Longer than the ~60 s after which OpenRouter's upstream providers give up, so their answer
# (a transcript or an error) reaches us before we stop waiting.
TRANSCRIPTION_READ_TIMEOUT: Final = 90.0
# A media type named back to the user is cut to this many characters (it may come from a
# client of the HTTP API, unchecked).
MEDIA_TYPE_SHOWN_CHARS: Final = 60

# Media types (as platforms and browsers name audio) to OpenRouter's format names.
AUDIO_FORMATS: Final[dict[str, str]] = {
    "audio/ogg": "ogg",  # Telegram voice notes and Discord voice messages (Opus in Ogg)
    "audio/opus": "ogg",
    "application/ogg": "ogg",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/wav": "wav",
    "audio/wave": "wav",
    "audio/x-wav": "wav",
    "audio/vnd.wave": "wav",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
    "audio/mp4": "m4a",
    "audio/m4a": "m4a",
    "audio/x-m4a": "m4a",
    "audio/webm": "webm",
    "audio/aac": "aac",
    "audio/x-aac": "aac",
}
JSON_HEADERS: Final = {"Content-Type": "application/json"}


@dataclass(frozen=True, slots=True)
class TranscriptUsage:
    """What OpenRouter reports a transcription cost; providers price by duration or by token,
    so any field may be missing."""

    seconds: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cost: float | None = None  # USD


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str  # never blank: a transcript without words is TranscriptionEmpty
    model: str
    usage: TranscriptUsage | None
    generation_id: str | None  # OpenRouter's X-Generation-Id, to find the request later


def audio_format(media_type: str) -> str:
    """OpenRouter's format name for `media_type` (parameters ignored, any case)."""
    essence = media_type.split(";", 1)[0].strip().lower()
    found = AUDIO_FORMATS.get(essence)
    if found is None:
        shown = essence[:MEDIA_TYPE_SHOWN_CHARS] or "?"
        raise TranscriptionFailed(reason="unsupported_format", media_type=shown)
    return found


def transcription_body(audio: bytes, media_type: str, model: str, *, max_bytes: int) -> bytes:
    """The request body, encoded once (retries send the same bytes); refuses what must not go.

    Zero bytes hold no words (TranscriptionEmpty); past `max_bytes`, OpenRouter would refuse
    the audio after we paid for the upload (TranscriptionFailed, too_large).
    """
    if not audio:
        raise TranscriptionEmpty
    if len(audio) > max_bytes:
        raise TranscriptionFailed(reason="too_large", size=len(audio), limit=max_bytes)
    data = base64.b64encode(audio).decode("ascii")
    input_audio = {"data": data, "format": audio_format(media_type)}
    return json.dumps({"model": model, "input_audio": input_audio}).encode()


def transcript_from(response: httpx.Response, model: str) -> Transcript:
    """A 200's transcript; blank text is returned as is (the caller settles the breaker first).

    An unreadable 200 is ModelUnavailable and an in-body error fails as its code says, neither
    retried: the model had the audio, and may have billed it.
    """
    payload = json_object(response.text)
    if payload is None:
        raise ModelUnavailable
    if "error" in payload:
        raise error_for_code(payload["error"])
    text = payload.get("text")
    if not isinstance(text, str):
        raise ModelUnavailable
    generation_id = response.headers.get("X-Generation-Id")
    return Transcript(text.strip(), model, _usage_from(payload.get("usage")), generation_id)


def transcription_failure(error: ModelError) -> TranscriptionFailed:
    """The TranscriptionFailed a model error amounts to; raise it `from` that error."""
    if isinstance(error, TranscriptionFailed):
        return error
    if isinstance(error, ModelRejected):
        status = error.params.get("status")
        if status == 413:  # OpenRouter's own cap, should it be below ours: sizes unknown
            return TranscriptionFailed(reason="too_large")
        return TranscriptionFailed(reason="rejected", status=status)
    if isinstance(error, ModelRateLimited):
        return TranscriptionFailed(reason="rate_limited", retry_after=error.retry_after)
    if isinstance(error, ModelCircuitOpen):
        return TranscriptionFailed(reason="unavailable", retry_after=error.retry_after)
    reasons = (reason for kind, reason in _REASON_BY_ERROR if isinstance(error, kind))
    return TranscriptionFailed(reason=next(reasons, "unavailable"))


_REASON_BY_ERROR: Final[tuple[tuple[type[ModelError], TranscriptionReason], ...]] = (
    (ModelNotConfigured, "not_configured"),
    (ModelTimeout, "timeout"),
)


def _usage_from(value: object) -> TranscriptUsage | None:
    if not isinstance(value, dict):
        return None
    return TranscriptUsage(
        seconds=_number(value.get("seconds")),
        input_tokens=_count(value.get("input_tokens")),
        output_tokens=_count(value.get("output_tokens")),
        total_tokens=_count(value.get("total_tokens")),
        cost=_number(value.get("cost")),
    )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
