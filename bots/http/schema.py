"""The HTTP API's JSON shapes: pydantic models that validate requests and describe responses.

Field names are snake_case here and camelCase on the wire (the original design's API). The
OpenAPI document (bots/http/openapi.py) is generated from these same models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator
from pydantic.alias_generators import to_camel

from core.commands import MODEL_ID_MAX_CHARS, MODEL_ID_PATTERN, TITLE_MAX_CHARS
from core.conversation import (
    Attachment,
    Message,
    MessagePage,
    Notice,
    Session,
    SessionSummary,
    Usage,
    iso_utc,
)
from core.sessions.codec import message_id
from core.sessions.limits import MAX_SYSTEM_PROMPT_LENGTH
from core.sessions.usage import UsageReport, UsageTotals

USER_ID_MAX_CHARS = 128
PAGE_LIMIT_MAX = 100

# Printable (user ids end up in logs and keys), and usable in /api/users/{userId}/sessions.
USER_ID_PATTERN = r"^(?!\.\.?$)[^\x00-\x1f\x7f/]+$"
OFFSET_MAX = 1_000_000_000
# Standard base64 with its padding, as RFC 4648 section 4 writes it.
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"

UserId = Annotated[str, Field(min_length=1, max_length=USER_ID_MAX_CHARS, pattern=USER_ID_PATTERN)]
ModelId = Annotated[str, Field(max_length=MODEL_ID_MAX_CHARS, pattern=MODEL_ID_PATTERN.pattern)]
Title = Annotated[str, Field(max_length=TITLE_MAX_CHARS)]
# Not blank: at least one character that Python's str.strip() would keep.
NOT_BLANK = r"[^\s\x1c-\x1f\x85]"
Text = Annotated[str, Field(min_length=1, pattern=NOT_BLANK)]


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        regex_engine="python-re",  # USER_ID_PATTERN needs a look-ahead
    )


# --- requests --------------------------------------------------------------------------------


SystemPrompt = Annotated[
    str,
    Field(
        min_length=1, max_length=MAX_SYSTEM_PROMPT_LENGTH, pattern=NOT_BLANK,
        description="the session's own system prompt, sent instead of SYSTEM_PROMPT",
    ),
]  # fmt: skip


class CreateSession(ApiModel):
    user_id: UserId
    title: Title = ""
    model: ModelId | None = None
    system_prompt: SystemPrompt | None = None


class UpdateSession(ApiModel):
    """Any of a session's title, model and system prompt; a null systemPrompt goes back to
    the global SYSTEM_PROMPT."""

    # Merged with ApiModel's: the document says an empty body is refused.
    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    title: Title | None = None
    model: ModelId | None = None
    system_prompt: SystemPrompt | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> UpdateSession:
        if not self.model_fields_set:
            raise ValueError("give at least one of title, model, systemPrompt")
        return self

    @property
    def is_system_prompt_reset(self) -> bool:
        return "system_prompt" in self.model_fields_set and self.system_prompt is None


class AttachmentIn(ApiModel):
    type: Literal["image", "document", "audio"] = Field(
        description="what the file is; it must match what its bytes are"
    )
    media_type: str = Field(
        max_length=100, pattern=r"^[\w.+-]+/[\w.+-]+$",
        description="as the client knows it; the service goes by the bytes",
    )  # fmt: skip
    name: str | None = Field(default=None, max_length=255)
    data: str = Field(
        min_length=4, pattern=BASE64_PATTERN, description="the file's bytes in base64 (RFC 4648)"
    )


Attachments = Annotated[
    list[AttachmentIn],
    Field(
        description="files of the message: images reach the model, a document's text and an "
        "audio's transcript join the message (at most 4, each at most MAX_ATTACHMENT_BYTES)"
    ),
]


def _words_or_files_schema(words: str) -> dict[str, Any]:
    """What `_require_words_or_files` checks, said in JSON Schema: not-blank words, or files."""
    return {
        "anyOf": [
            {"properties": {words: {"pattern": NOT_BLANK}}},
            {"required": ["attachments"], "properties": {"attachments": {"minItems": 1}}},
        ]
    }


class StartChat(ApiModel):
    model_config = ConfigDict(json_schema_extra=_words_or_files_schema("initialMessage"))

    user_id: UserId
    title: Title = ""
    model_id: ModelId | None = None
    initial_message: str = Field(description="not blank, unless attachments are given")
    attachments: Attachments = []

    @model_validator(mode="after")
    def _words_or_files(self) -> StartChat:
        _require_words_or_files(self.initial_message, self.attachments)
        return self


class ChatMessage(ApiModel):
    model_config = ConfigDict(json_schema_extra=_words_or_files_schema("message"))

    session_id: str
    message: str = Field(description="not blank, unless attachments are given")
    model_id: ModelId | None = None
    stream: StrictBool = False
    attachments: Attachments = []

    @model_validator(mode="after")
    def _words_or_files(self) -> ChatMessage:
        _require_words_or_files(self.message, self.attachments)
        return self


def _require_words_or_files(words: str, files: list[AttachmentIn]) -> None:
    if not files and not words.strip():
        raise ValueError("must not be blank without attachments")


class AddMessage(ApiModel):
    role: Literal["user", "assistant", "system"] = Field(
        description="a user's token (JWT) may add role user only; the service token, any"
    )
    content: Text
    model: ModelId | None = None


class UserPath(ApiModel):
    user_id: UserId


class Page(ApiModel):
    limit: int = Field(ge=1, le=PAGE_LIMIT_MAX)
    offset: int = Field(default=0, ge=0, le=OFFSET_MAX)


# --- responses -------------------------------------------------------------------------------


class UsageOut(ApiModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float | None

    @classmethod
    def of(cls, usage: Usage | None) -> UsageOut | None:
        if usage is None:
            return None
        return cls(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            cost=usage.cost,
        )


class AttachmentOut(ApiModel):
    id: str = Field(description="GET /api/sessions/{sessionId}/attachments/{id} returns its bytes")
    type: Literal["image", "document", "audio"]
    media_type: str = Field(description="sniffed from the bytes, never taken from a name")
    name: str
    size: int = Field(description="bytes stored (an image as re-encoded for the model)")
    kept: bool = Field(
        description="false once MAX_ATTACHMENT_BYTES_PER_SESSION dropped its bytes for newer files"
    )

    @classmethod
    def of(cls, attachment: Attachment) -> AttachmentOut:
        return cls(
            id=attachment.id, type=attachment.kind.value, media_type=attachment.media_type,
            name=attachment.name, size=attachment.size, kept=attachment.kept,
        )  # fmt: skip


class MessageOut(ApiModel):
    id: str
    role: Literal["user", "assistant", "system"]
    content: str
    model: str | None
    timestamp: str = Field(description="ISO 8601, UTC")
    usage: UsageOut | None = Field(description="token usage of an assistant message")
    stopped: bool = Field(
        description="an answer /stop ended: what was written of it before (no usage then)"
    )
    attachments: list[AttachmentOut] = Field(description="the files of a user message")

    @classmethod
    def of(cls, message: Message) -> MessageOut:
        return cls(
            id=message.id,
            role=message.role.value,
            content=message.content,
            model=message.model,
            timestamp=iso_utc(message.timestamp),
            usage=UsageOut.of(message.usage),
            stopped=message.stopped,
            attachments=[AttachmentOut.of(attachment) for attachment in message.attachments],
        )


class SessionOut(ApiModel):
    id: str
    user_id: str
    title: str = Field(description="empty until named by /new or by its first message")
    model: str
    created_at: str = Field(description="ISO 8601, UTC")
    updated_at: str = Field(description="ISO 8601, UTC")
    message_count: int
    system_prompt: str | None = Field(
        description="its own system prompt (/persona); null: the global SYSTEM_PROMPT applies"
    )

    @classmethod
    def of(cls, session: Session) -> SessionOut:
        return cls(
            id=session.id,
            user_id=session.user_id,
            title=session.title,
            model=session.model,
            created_at=iso_utc(session.created_at),
            updated_at=iso_utc(session.updated_at),
            message_count=session.message_count,
            system_prompt=session.system_prompt,
        )


class SessionList(ApiModel):
    sessions: list[SessionOut]


class UsageTotalsOut(ApiModel):
    """Tokens and cost (USD) as the model reported them, over a span of UTC days."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float

    @classmethod
    def of(cls, totals: UsageTotals) -> UsageTotalsOut:
        return cls(
            prompt_tokens=totals.prompt_tokens, completion_tokens=totals.completion_tokens,
            total_tokens=totals.total_tokens, cost=totals.cost,
        )  # fmt: skip


class UserUsageOut(ApiModel):
    """A person's usage today and in the last 30 UTC days (today included), and what is left
    of today's DAILY_TOKEN_BUDGET (both null without a budget)."""

    today: UsageTotalsOut
    last_30_days: UsageTotalsOut  # last30Days on the wire
    daily_budget: int | None
    budget_left: int | None

    @classmethod
    def of(cls, report: UsageReport) -> UserUsageOut:
        return cls(
            today=UsageTotalsOut.of(report.today),
            last_30_days=UsageTotalsOut.of(report.last_30_days),
            daily_budget=report.daily_budget,
            budget_left=report.budget_left,
        )


class MessageList(ApiModel):
    messages: list[MessageOut]
    total: int

    @classmethod
    def of(cls, page: MessagePage) -> MessageList:
        return cls(messages=[MessageOut.of(m) for m in page.messages], total=page.total)


class SummaryOut(ApiModel):
    """The session's summary of its older messages: the model gets it instead of the messages
    up to `upToMessageId` (those still stored are still listed)."""

    text: str
    up_to_message_id: str = Field(description="the id of the last message it stands in for")

    @classmethod
    def of(cls, session_id: str, summary: SessionSummary) -> SummaryOut:
        return cls(text=summary.text, up_to_message_id=message_id(session_id, summary.up_to))


class HistoryPage(MessageList):
    summary: SummaryOut | None = Field(
        description="what the model gets instead of the session's older messages (made once "
        "they no longer fit its context, SUMMARIES=on); null while there is none"
    )

    @classmethod
    def of_session(cls, session_id: str, page: MessagePage) -> HistoryPage:
        summary = None if page.summary is None else SummaryOut.of(session_id, page.summary)
        listed = MessageList.of(page)
        return cls(messages=listed.messages, total=listed.total, summary=summary)


NoticeCode = Literal["previous_session_expired", "context_lost", "context_summarized"]


class ChatReply(ApiModel):
    session: SessionOut
    reply: MessageOut
    notices: list[NoticeCode] = Field(
        description="what the reply tells besides its answer, each once: `context_lost`, the "
        "first time older messages of the session no longer reach the model (dropped past "
        "MAX_MESSAGES_PER_SESSION, or left out of the model's context) with SUMMARIES=off; "
        "`context_summarized`, the first time the model gets a summary of older messages "
        "instead of their words (SUMMARIES=on); "
        "`previous_session_expired`, when the chat's active session had expired and this turn "
        "started a new one (a chat front's turn: a turn here names its session)"
    )

    @classmethod
    def of(cls, session: Session, reply: Message, notices: tuple[Notice, ...]) -> ChatReply:
        return cls(
            session=SessionOut.of(session),
            reply=MessageOut.of(reply),
            notices=[notice.value for notice in notices],
        )


class StoppedEvent(ApiModel):
    """The SSE `stopped` event: the session, and what was written of the answer (null when
    nothing was: the question stays for a retry)."""

    session: SessionOut
    reply: MessageOut | None


class StopResult(ApiModel):
    stopped: bool = Field(description="whether an answer was being written (it stops now)")


class TextDeltaEvent(ApiModel):
    text: str


class ErrorBody(ApiModel):
    code: str
    message: str


class ErrorOut(ApiModel):
    error: ErrorBody


class RedisStatus(ApiModel):
    status: Literal["up", "down"]
    latency_ms: float | None = None
    error: str | None = None


class Health(ApiModel):
    status: Literal["ok", "unavailable"]
    redis: RedisStatus


class SessionCounts(ApiModel):
    active: int = Field(description="sessions with activity within the window (about ±1%)")
    window_seconds: int


class SessionsHealth(Health):
    sessions: SessionCounts | None = None
