"""Every error the core raises, in one tree.

Adapters catch these at the edge and turn them into user text with `core.messages.describe`;
nothing below the edge formats user-facing text. Each error has a stable ``code`` (used by the
HTTP API's error JSON and by the message catalogue) and ``params`` for the text. ``str(error)``
is a short English sentence that is always safe to log or show: it never contains a key, a
password or a raw upstream body.

    ChatbridgeError
    ├── ConfigError                  bad environment or .env value (the service exits with 2)
    ├── InputError                   the user's request is not acceptable as given
    │   ├── EmptyMessage
    │   ├── MessageTooLong           longer than MAX_MESSAGE_LENGTH
    │   ├── SystemPromptTooLong      a session's system prompt (/persona) over its limit
    │   ├── AttachmentsTooLarge      a message's files over MAX_ATTACHMENT_BYTES_PER_SESSION
    │   ├── TooManyAttachments       more files in one message than MAX_FILES_PER_MESSAGE
    │   ├── UnknownCommand
    │   ├── InvalidArgument          a command argument or API field is malformed
    │   ├── ModelCannotReadImages    images for a model that takes none, and no VISION_MODEL
    │   ├── InvalidBackup            a line of a backup file (chatbridge restore) is wrong
    │   ├── InvalidAttachment        an attachment's bytes cannot be used (`reason` says why)
    │   ├── FileTooLarge             one attachment has more bytes than MAX_ATTACHMENT_BYTES
    │   └── DocumentHasNoText        a PDF whose pages hold no text to extract (scans, images)
    ├── SessionNotFound              missing, expired, or someone else's (we never say which)
    ├── AttachmentGone               a file whose bytes the session's budget dropped
    ├── SessionLimitReached          MAX_SESSIONS_PER_USER with SESSION_LIMIT_POLICY=reject
    ├── NothingToRetry               /retry with no user message in the session
    ├── SessionBusy                  another turn held the session's lock for too long
    ├── TurnLockLost                 the turn lost its session to another writer: answer not stored
    ├── TurnStopped                  /stop ended the answer: what it showed is stored, marked
    ├── QuotaExceeded                a per-user allowance is used up (retry_after whole seconds)
    │   ├── RateLimited              RATE_LIMIT_MESSAGES turns in the last RATE_LIMIT_WINDOW seconds
    │   └── DailyBudgetExhausted     DAILY_TOKEN_BUDGET tokens spent today (UTC)
    ├── ServiceStopping              this process is shutting down: the turn was not started
    │   └── TurnInterrupted          SHUTDOWN_GRACE_SECONDS ran out before the answer was complete
    ├── StoreError                   Redis
    │   ├── StoreUnavailable         cannot reach Redis (down, timeout, auth)
    │   └── StoreFull                Redis refused a write at maxmemory
    └── ModelError                   OpenRouter
        ├── ModelNotConfigured       no OPENROUTER_API_KEY
        ├── ModelRejected            400/401/402/403/404: retrying will not help
        ├── ModelRateLimited         429 after our retries (retry_after seconds, if known)
        ├── ModelUnavailable         5xx or connection failures after our retries
        │   └── ModelCircuitOpen     the model failed repeatedly: not asked for retry_after seconds
        ├── ModelTimeout             no answer in time
        │   └── TurnTimeout          the answer went on past TURN_TIMEOUT (keep-alives included)
        ├── ModelStreamBroken        the stream ended early or carried an error chunk
        ├── ModelEmptyAnswer         the answer ended with no text (whitespace only counts as none)
        └── TranscriptionFailed      audio was not transcribed; `reason` says why (nothing stored)
            └── TranscriptionEmpty   the transcript has no words (silence, or noise only)
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal


class ChatbridgeError(Exception):
    """Base of every error the core raises on purpose."""

    code: ClassVar[str] = "internal_error"
    default_text: ClassVar[str] = "Something went wrong."

    def __init__(self, text: str | None = None, **params: object) -> None:
        self.params: dict[str, object] = params
        super().__init__(text or self.default_text.format(**params))


class ConfigError(ChatbridgeError):
    code = "config_error"
    default_text = "Invalid configuration."


class InputError(ChatbridgeError):
    code = "invalid_input"
    default_text = "The request is not valid."


class EmptyMessage(InputError):
    code = "empty_message"
    default_text = "The message is empty."


class MessageTooLong(InputError):
    code = "message_too_long"
    default_text = "The message has {length} characters; the limit is {limit}."

    def __init__(self, *, length: int, limit: int) -> None:
        super().__init__(length=length, limit=limit)


class SystemPromptTooLong(InputError):
    code = "system_prompt_too_long"
    default_text = "The system prompt has {length} characters; the limit is {limit}."

    def __init__(self, *, length: int, limit: int) -> None:
        super().__init__(length=length, limit=limit)


class AttachmentsTooLarge(InputError):
    """A message's files exceed what a session keeps (MAX_ATTACHMENT_BYTES_PER_SESSION) on
    their own: nothing older could make room for them."""

    code = "attachments_too_large"
    default_text = "The files of this message take {size} bytes; a conversation keeps {limit}."

    def __init__(self, *, size: int, limit: int) -> None:
        super().__init__(size=size, limit=limit)
        self.size, self.limit = size, limit


class UnknownCommand(InputError):
    code = "unknown_command"
    default_text = "Unknown command {command}."

    def __init__(self, *, command: str) -> None:
        super().__init__(command=command)


class InvalidArgument(InputError):
    code = "invalid_argument"
    default_text = "Invalid value for {name}: {reason}."

    def __init__(self, *, name: str, reason: str) -> None:
        super().__init__(name=name, reason=reason)


class ModelCannotReadImages(InputError):
    """A message with images for a model that OpenRouter's models list says takes none, with
    no VISION_MODEL that could take them instead: nothing is stored. `suggestion`: a model the
    list says reads images, or None when it names none."""

    code = "model_cannot_read_images"
    default_text = "The model {model} cannot read images."

    def __init__(self, *, model: str, suggestion: str | None = None) -> None:
        text = None
        if suggestion is not None:
            text = f"The model {model} cannot read images; {suggestion} can."
        super().__init__(text, model=model, suggestion=suggestion)
        self.model = model
        self.suggestion = suggestion


class InvalidBackup(InputError):
    """A backup file chatbridge restore cannot read; `line` is 1-based (0: the whole file)."""

    code = "invalid_backup"
    default_text = "{where}: {reason}"

    def __init__(self, *, where: str, reason: str, line: int = 0) -> None:
        super().__init__(where=where, reason=reason)
        self.line = line


class AttachmentProblem(StrEnum):
    """Why an attachment's bytes cannot be used (core/attachments/); each has a sentence."""

    EMPTY = "empty"
    UNKNOWN_TYPE = "unknown_type"  # none of the kinds we read, whatever its name or claimed type
    NOT_AN_IMAGE = "not_an_image"
    NOT_A_DOCUMENT = "not_a_document"
    DAMAGED = "damaged"  # a truncated or corrupt image or PDF
    TOO_MANY_PIXELS = "too_many_pixels"  # a decompression bomb, or just too big to decode
    ENCRYPTED = "encrypted"  # a PDF that needs a password
    UNSUPPORTED = "unsupported"  # a PDF encrypted or compressed in a way pypdf does not read
    NOT_TEXT = "not_text"  # text-like at first, but not UTF-8 further on, or NUL bytes


# What str(InvalidAttachment) says (logs, the HTTP API); chat users read core.messages.
_ATTACHMENT_PROBLEM_TEXT = {
    AttachmentProblem.EMPTY: "the file is empty",
    AttachmentProblem.UNKNOWN_TYPE: "its bytes are none of the images, documents or audio "
    "formats that are read",
    AttachmentProblem.NOT_AN_IMAGE: "it is not an image",
    AttachmentProblem.NOT_A_DOCUMENT: "it is not a PDF or a text file",
    AttachmentProblem.DAMAGED: "the file is damaged or incomplete",
    AttachmentProblem.TOO_MANY_PIXELS: "the image has too many pixels to decode",
    AttachmentProblem.ENCRYPTED: "the PDF is protected by a password",
    AttachmentProblem.UNSUPPORTED: "the PDF is encrypted or compressed in a way that cannot be "
    "read",
    AttachmentProblem.NOT_TEXT: "the text is not UTF-8, or holds NUL bytes",
}


class InvalidAttachment(InputError):
    """An attachment whose bytes cannot be used; `reason` says why (core.messages has a
    sentence for each reason)."""

    code = "invalid_attachment"
    default_text = "The attachment cannot be used: {detail}."

    def __init__(self, *, reason: AttachmentProblem) -> None:
        super().__init__(reason=reason, detail=_ATTACHMENT_PROBLEM_TEXT[reason])
        self.reason = reason


class TooManyAttachments(InputError):
    """More files in one message than a message may bring (`limit`)."""

    code = "too_many_attachments"
    default_text = "A message may bring at most {limit} files; this one has {count}."

    def __init__(self, *, count: int, limit: int) -> None:
        super().__init__(count=count, limit=limit)


class FileTooLarge(InputError):
    """One attachment of `size` bytes, more than MAX_ATTACHMENT_BYTES (`limit`). Not
    AttachmentsTooLarge: that is a message's files together, against a session's budget."""

    code = "file_too_large"
    default_text = "The file has {size} bytes; one file may have {limit}."

    def __init__(self, *, size: int, limit: int) -> None:
        super().__init__(size=size, limit=limit)
        self.size, self.limit = size, limit


class DocumentHasNoText(InputError):
    """A PDF whose pages (those read) hold no text to extract: a scan, or images only.

    `name` is the file's name, for the user's sentence; str() leaves it out of the logs."""

    code = "document_has_no_text"
    default_text = "The PDF has no text that can be extracted (it may hold only images)."

    def __init__(self, *, name: str) -> None:
        super().__init__(name=name)


class SessionNotFound(ChatbridgeError):
    code = "session_not_found"
    default_text = "Session not found."


class NotSessionCreator(ChatbridgeError):
    """In a chat's shared sessions, only the session's creator or a chat admin may rename it,
    delete it or change its persona."""

    code = "not_session_creator"
    default_text = (
        "Only who started this session, or an admin of the chat, may rename it, delete it or "
        "change its persona."
    )


class AttachmentGone(ChatbridgeError):
    """A file its session still lists, whose bytes MAX_ATTACHMENT_BYTES_PER_SESSION dropped to
    make room for newer ones."""

    code = "attachment_gone"
    default_text = (
        "The file {name} is no longer kept: newer files of its conversation took its room."
    )


class SessionLimitReached(ChatbridgeError):
    code = "session_limit_reached"
    default_text = "You already have {limit} sessions, the most allowed."

    def __init__(self, *, limit: int) -> None:
        super().__init__(limit=limit)


class NothingToRetry(ChatbridgeError):
    code = "nothing_to_retry"
    default_text = "There is no message to answer again in this session."


class SessionBusy(ChatbridgeError):
    code = "session_busy"
    default_text = "This session is still answering a previous message."


class TurnLockLost(ChatbridgeError):
    """The turn no longer holds its session (its lock lapsed and another turn took the session,
    or wrote to it): its answer is not stored, so turns never interleave; /retry answers again.

    `partial_text` is what the user was shown of the answer that was not stored."""

    code = "turn_lock_lost"
    default_text = (
        "The session was taken over before the answer was stored; the answer was not saved."
    )

    def __init__(self, *, partial_text: str = "") -> None:
        super().__init__()
        self.partial_text = partial_text


class TurnStopped(ChatbridgeError):
    """The person stopped the answer (/stop, the ⏹ button, the HTTP API): what was streamed of
    it (`partial_text`) is stored marked stopped, unless nothing was; /retry answers again."""

    code = "turn_stopped"
    default_text = "Stopped."

    def __init__(self, *, partial_text: str = "") -> None:
        super().__init__()
        self.partial_text = partial_text


class QuotaExceeded(ChatbridgeError):
    """The user may not start another turn for `retry_after` seconds (at least 1, rounded up)."""

    code = "quota_exceeded"
    default_text = "A usage limit is reached; try again in {retry_after} s."

    def __init__(self, *, retry_after: int, **params: object) -> None:
        super().__init__(None, retry_after=retry_after, **params)
        self.retry_after = retry_after


class RateLimited(QuotaExceeded):
    code = "rate_limited"
    default_text = (
        "Too many messages: at most {limit} every {window_seconds} s; try again in {retry_after} s."
    )

    def __init__(self, *, retry_after: int, limit: int, window_seconds: int) -> None:
        super().__init__(retry_after=retry_after, limit=limit, window_seconds=window_seconds)
        self.limit = limit
        self.window_seconds = window_seconds


class DailyBudgetExhausted(QuotaExceeded):
    code = "daily_budget_exhausted"
    default_text = (
        "Today's budget of {budget} tokens is spent; it renews at 00:00 UTC, in {retry_after} s."
    )

    def __init__(self, *, retry_after: int, budget: int) -> None:
        super().__init__(retry_after=retry_after, budget=budget)


class ServiceStopping(ChatbridgeError):
    code = "service_stopping"
    default_text = "The service is restarting; the message was not taken. Send it again shortly."


class TurnInterrupted(ServiceStopping):
    """The service stopped mid-answer: the user's message is kept, the partial answer is not."""

    code = "turn_interrupted"
    default_text = "The service stopped before the answer was complete; the question is kept."

    def __init__(self, *, partial_text: str = "") -> None:
        super().__init__()
        self.partial_text = partial_text


class StoreError(ChatbridgeError):
    code = "store_error"
    default_text = "Session storage failed."


class StoreUnavailable(StoreError):
    code = "store_unavailable"
    default_text = "Session storage is temporarily unavailable."


class StoreFull(StoreError):
    code = "store_full"
    default_text = "Session storage is full; delete a session or try again later."


class ModelError(ChatbridgeError):
    code = "model_error"
    default_text = "The model could not answer."

    # Set when the error came once OpenRouter had taken the request (it answered 200): the
    # model may have generated, and OpenRouter bills what it generates (DAILY_TOKEN_BUDGET
    # charges it). `reported_tokens`: the usage its stream reported before failing, if any.
    reached_model: bool = False
    reported_tokens: int | None = None


class ModelNotConfigured(ModelError):
    code = "model_not_configured"
    default_text = "OPENROUTER_API_KEY is not set, so there is no model to answer."


class ModelRejected(ModelError):
    code = "model_rejected"
    default_text = "The model provider refused the request ({status})."

    def __init__(self, *, status: int) -> None:
        super().__init__(status=status)


class ModelRateLimited(ModelError):
    code = "model_rate_limited"
    default_text = "The model provider is rate limiting us; try again later."

    def __init__(self, *, retry_after: float | None = None) -> None:
        super().__init__(retry_after=retry_after)
        self.retry_after = retry_after


class ModelUnavailable(ModelError):
    code = "model_unavailable"
    default_text = "The model is unavailable right now."


class ModelCircuitOpen(ModelUnavailable):
    """The model's circuit breaker is open: no request was made (retry_after whole seconds)."""

    code = "model_circuit_open"
    default_text = "The model failed repeatedly; it is not asked again for {retry_after} s."

    def __init__(self, *, retry_after: int) -> None:
        super().__init__(None, retry_after=retry_after)
        self.retry_after = retry_after


class ModelTimeout(ModelError):
    code = "model_timeout"
    default_text = "The model took too long to answer."


class TurnTimeout(ModelTimeout):
    """The whole answer took longer than TURN_TIMEOUT (`seconds`), however busy the stream
    looked: ended like a cut stream, its question kept, `partial_text` not stored."""

    code = "turn_timeout"
    default_text = (
        "The answer took longer than {seconds:g} s and was stopped; the question is kept."
    )

    def __init__(self, *, seconds: float, partial_text: str = "") -> None:
        super().__init__(None, seconds=seconds)
        self.seconds = seconds
        self.partial_text = partial_text


class ModelStreamBroken(ModelError):
    code = "model_stream_broken"
    default_text = "The model's answer was cut off."

    def __init__(self, *, partial_text: str = "") -> None:
        super().__init__()
        self.partial_text = partial_text


class ModelEmptyAnswer(ModelError):
    """The model's answer ended properly ([DONE] or a finish reason) without any text.

    Whitespace alone counts as no text: stored, it would be as useless in every later context.
    """

    code = "model_empty_answer"
    default_text = "The model sent an empty answer."


# Why audio was not transcribed: refused before sending (not_configured, too_large,
# unsupported_format), how OpenRouter's answer failed (rejected, rate_limited, unavailable,
# timeout), or a transcript without words (empty: TranscriptionEmpty).
TranscriptionReason = Literal[
    "not_configured",
    "too_large",
    "unsupported_format",
    "rejected",
    "rate_limited",
    "unavailable",
    "timeout",
    "empty",
]


class TranscriptionFailed(ModelError):
    """Audio was not transcribed, so there is no message to store; `reason` says why.

    Every failure of a transcription leaves the client as this error (the model error behind
    it is its `__cause__`), so a front tells "your audio was not transcribed" rather than a
    chat model's failure. Params by reason: `status` (rejected: OpenRouter's HTTP status),
    `size` and `limit` in bytes (too_large, when we refused it; not when OpenRouter did),
    `media_type` (unsupported_format).
    `retry_after`: seconds to wait, when known (rate_limited; unavailable while the
    transcription model's circuit breaker is open).
    """

    code = "transcription_failed"
    default_text = "The audio could not be transcribed ({reason})."

    def __init__(
        self,
        *,
        reason: TranscriptionReason,
        retry_after: float | None = None,
        **params: object,
    ) -> None:
        super().__init__(None, reason=reason, **params)
        self.reason: TranscriptionReason = reason
        self.retry_after = retry_after


class TranscriptionEmpty(TranscriptionFailed):
    """The transcription came back without words (whitespace only counts as none): there is
    nothing to answer, and nothing is stored."""

    code = "transcription_empty"
    default_text = "The audio was transcribed, but no words were heard in it."

    def __init__(self) -> None:
        super().__init__(reason="empty")
