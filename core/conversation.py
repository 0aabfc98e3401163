"""The core's value types: sessions, messages, token usage, what a reply tells besides."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

# Where the model reports no usage (a cut or interrupted stream, a reservation made before the
# request), tokens are estimated from UTF-8 bytes. Three bytes a token leans high for English
# and Portuguese (about four) and is close for CJK text: the budget errs on the side of holding.
# The same rule is in core/sessions/lua/lib.lua (estimated_tokens).
BYTES_PER_ESTIMATED_TOKEN = 3


def estimated_tokens(text: str) -> int:
    """An estimate of the tokens `text` takes, from its UTF-8 length (rounded up)."""
    return -(-len(text.encode()) // BYTES_PER_ESTIMATED_TOKEN)


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"


class Notice(StrEnum):
    """What a turn's reply tells besides its answer, once (docs/data-model.md, "Notices")."""

    # The turn was sent to the space's active session, which had expired (SESSION_TTL without
    # messages): it started a new one.
    PREVIOUS_SESSION_EXPIRED = "previous_session_expired"
    # Older messages of the session no longer reach the model, and no summary stands in for
    # them (SUMMARIES=off): trimmed by MAX_MESSAGES_PER_SESSION, or past the turn's
    # CONTEXT_TOKENS. Told the first time only.
    CONTEXT_LOST = "context_lost"
    # Older messages reach the model as a summary (core/summaries.py): told by the first
    # answer that relied on one.
    CONTEXT_SUMMARIZED = "context_summarized"


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage and cost as OpenRouter reports them for one completion."""

    prompt_tokens: int
    completion_tokens: int
    cost: float | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class AttachmentKind(StrEnum):
    IMAGE = "image"
    DOCUMENT = "document"
    AUDIO = "audio"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file of a user message, as its message lists it (the bytes are stored apart)."""

    id: str  # "<message seq>-<n>", n from 1: unique within its session
    kind: AttachmentKind
    media_type: str  # sniffed from the bytes, never taken from a name
    name: str
    size: int  # bytes stored
    kept: bool = True  # False once MAX_ATTACHMENT_BYTES_PER_SESSION dropped its bytes
    # Sent to the model as a file for OpenRouter to read (a PDF without text, with
    # PDF_ENGINE=openrouter), as images are; else only its text, in the message, reaches it.
    is_read_by_model: bool = False


@dataclass(frozen=True, slots=True)
class NewAttachment:
    """A file a turn stores with its user message: already checked and converted (an image
    re-encoded, a document's text in the message)."""

    kind: AttachmentKind
    media_type: str
    name: str
    data: bytes
    is_read_by_model: bool = False  # see Attachment


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    role: Role
    content: str
    model: str | None
    timestamp: datetime
    usage: Usage | None = None
    stopped: bool = False  # an answer /stop ended: what was shown of it
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    user_id: str
    title: str
    model: str
    created_at: datetime
    updated_at: datetime
    message_count: int
    # Its own system prompt (/persona, PATCH systemPrompt); None: the global SYSTEM_PROMPT.
    system_prompt: str | None = None


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """What a session's older messages said (core/summaries.py): the model gets it instead of
    the messages up to seq `up_to`, though those still stored are still its history."""

    text: str
    up_to: int  # the seq of the last message it stands in for


@dataclass(frozen=True, slots=True)
class MessagePage:
    """A slice of a session's messages, oldest first, how many the session holds, and its
    summary (None: none yet), which /history and /export place among the messages."""

    messages: tuple[Message, ...]
    total: int
    summary: SessionSummary | None = None


def datetime_from_ms(milliseconds: int) -> datetime:
    return datetime.fromtimestamp(milliseconds / 1000, tz=UTC)


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with millisecond precision and a trailing Z, as the HTTP API shows it."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
