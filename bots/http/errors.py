"""Every error of the HTTP API, as one JSON shape: {"error": {"code", "message"}}.

Core errors map to statuses here, at the edge, with the error's own safe sentence (chat replies
use core.messages, which speak of chat commands). Nothing else — no traceback, no upstream
body — is sent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from aiohttp import web

from core import errors

STATUS_BY_ERROR: tuple[tuple[type[errors.ChatbridgeError], int], ...] = (
    (errors.MessageTooLong, 422),
    (errors.SystemPromptTooLong, 422),
    (errors.ModelCannotReadImages, 422),
    # An attachment's decoded bytes are wrong (damaged, encrypted, not what its `type` says):
    # 422 like any other bad field. Bytes of no type read at all are 415 (status_of).
    (errors.InvalidAttachment, 422),
    (errors.DocumentHasNoText, 422),
    # One attachment over MAX_ATTACHMENT_BYTES: too large content, whatever the body's size.
    (errors.FileTooLarge, 413),
    (errors.InputError, 422),
    (errors.SessionNotFound, 404),
    (errors.AttachmentGone, 410),
    (errors.NotSessionCreator, 403),
    (errors.SessionLimitReached, 409),
    (errors.NothingToRetry, 409),
    (errors.SessionBusy, 409),
    (errors.TurnLockLost, 409),
    (errors.TurnStopped, 409),
    (errors.QuotaExceeded, 429),
    (errors.ServiceStopping, 503),
    (errors.StoreError, 503),
    (errors.ModelNotConfigured, 503),
    (errors.ModelRateLimited, 429),
    (errors.ModelUnavailable, 503),
    (errors.ModelTimeout, 504),
    (errors.ModelError, 502),
)
# A failed transcription's status says whose the fault is, as the model errors' statuses do
# (empty: the audio held no words, the client's to fix).
STATUS_BY_TRANSCRIPTION_REASON: dict[errors.TranscriptionReason, int] = {
    "not_configured": 503,
    "too_large": 413,
    "unsupported_format": 415,
    "rejected": 502,
    "rate_limited": 429,
    "unavailable": 503,
    "timeout": 504,
    "empty": 422,
}
CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
}


API_HINTS = {
    "session_limit_reached": "Delete one (DELETE /api/sessions/{sessionId}) to create another.",
    "model_cannot_read_images": "Send the message without images, or with a modelId that "
    "reads them.",
    "model_rate_limited": "Retry after the number of seconds in Retry-After.",
    "model_circuit_open": "Retry after the number of seconds in Retry-After.",
    "transcription_empty": "Send audio with speech in it, or the message as text.",
}


class ApiError(Exception):
    """An HTTP-level refusal (bad JSON, auth, ...) that core errors do not cover."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


def status_of(error: errors.ChatbridgeError) -> int:
    if isinstance(error, errors.TranscriptionFailed):
        return STATUS_BY_TRANSCRIPTION_REASON[error.reason]
    if (
        isinstance(error, errors.InvalidAttachment)
        and error.reason is errors.AttachmentProblem.UNKNOWN_TYPE
    ):
        # RFC 9110's 415 covers a type found by inspecting the data, as here (the JSON body
        # itself is fine); an audio format transcription refuses is a 415 as well.
        return 415
    return next((status for kind, status in STATUS_BY_ERROR if isinstance(error, kind)), 500)


def core_error_response(error: errors.ChatbridgeError) -> web.Response:
    headers = {}
    if isinstance(error, errors.ModelRateLimited):
        headers["Retry-After"] = str(max(1, round(error.retry_after or 60)))
    if isinstance(error, errors.TranscriptionFailed) and (
        error.retry_after is not None or error.reason == "rate_limited"
    ):
        # As model_rate_limited, a 429 always says when (a minute when OpenRouter did not).
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after or 60)))
    if isinstance(error, errors.QuotaExceeded | errors.ModelCircuitOpen):
        headers["Retry-After"] = str(error.retry_after)  # whole seconds, already rounded up
    return error_response(status_of(error), error.code, api_message(error), headers)


def api_message(error: errors.ChatbridgeError) -> str:
    """The error's own sentence (chat replies, by contrast, name chat commands)."""
    hint = API_HINTS.get(error.code)
    return f"{error} {hint}" if hint else str(error)


def sse_error_event(error: errors.ChatbridgeError) -> bytes:
    body = {"error": {"code": error.code, "message": api_message(error)}}
    return f"event: error\ndata: {json.dumps(body)}\n\n".encode()
