"""The lines of a backup file (format version 2), checked: core/backup/lines.py says what they mean.

    {"format": "chatbridge-backup", "version": 2, "createdAt": ms}
    {"kind": "session", "id", "userId", "creator", "title", "model", "createdAt", "updatedAt",
     "seq", "lastActivity", "expiresAt", "fileBytes", "systemPrompt"?, "summary"?,
     "summaryUpTo"?, "toldSummary"?, "entryModel"?, "messages": [{"seq",
     "role", "timestamp", "content", "model"?, "usage"?: {"promptTokens", "completionTokens",
     "cost"?}, "stopped"?,
     "attachments"?: [{"n", "kind", "mediaType", "name", "size", "data", "readByModel"?}, ...]},
     ...]}
                                                                          one per session
    {"kind": "user", "userId", "active", "model", "expiresAt"}           one per user state hash
    {"kind": "end", "sessions": n, "users": n, "messages": n}

Times are milliseconds since the epoch on the Redis server's clock; `lastActivity` is the
session's score in its owner's index, `expiresAt` the instant its keys expire (null: never).

Version 2 adds what version 1 left out of a session: `creator`, the person who started a
shared chat's session when it is not the owner itself (null: no such field), `fileBytes`, the
session's count of the bytes of its files still kept (null: it never stored a file), and the
files of its user messages (docs/data-model.md, "Attachments"): `n` (the file's id in its
session is `<seq>-<n>`), `kind` (`image`, `document`, `audio`), `mediaType`, `name`, `size`
(bytes) and `data`, the bytes in base64, or null once the session's budget dropped them (listed
as no longer kept). So a session line can be long: its files take up to
MAX_ATTACHMENT_BYTES_PER_SESSION * 4/3 (about 11.2 MB at the default 8 MiB) beside its text.
Version 1 files (written before files were stored) are still read; version 2 is written.
A version 2 session line may carry `systemPrompt`, the session's own system prompt (/persona),
absent when the global SYSTEM_PROMPT applies (files written before personas lack it); and
`summary`, `summaryUpTo` and `toldSummary`, the session's rolling summary (core/summaries.py),
the seq of the last message it stands in for, and true once a reply said the model relies on
it: absent while the session has none (files written before summaries lack them); and
`entryModel`, the model the session's stored answers that name none were given by
(docs/data-model.md, "Messages"), only when it is not `model` (files written before the lean
entries lack it). Each message names its own model in the file whatever the layout it was
stored in, so a file does not depend on it: a restore writes every message in today's layout
against `entryModel`, else `model`, and stores that as the session's `entryModel` when the
session has messages (one without any gets none, as it had none).

A problem is reported as `InvalidBackup` naming the line and the field: a `data` that is not
base64, a `size` its data does not have, a `fileBytes` that is not the sum of the kept files.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.alias_generators import to_camel

from core.conversation import Attachment, AttachmentKind, Role, Usage
from core.errors import InvalidBackup
from core.sessions.codec import Entry, EntryBasis, attachment_id, encoded_entry, entry_of
from core.sessions.keys import SESSION_ID_PATTERN, user_tag
from core.sessions.limits import MAX_SYSTEM_PROMPT_LENGTH
from core.summaries import SUMMARY_MAX_CHARACTERS
from core.tokens import count_tokens

FORMAT: Literal["chatbridge-backup"] = "chatbridge-backup"
VERSION = 2  # written
READ_VERSIONS = (1, 2)
FIRST_VERSION_WITH_FILES = 2


class Line(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, strict=True
    )


class Header(Line):
    format: Literal["chatbridge-backup"]
    version: int
    created_at: int


class UsageRecord(Line):
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    cost: float | None = None


def _decoded(value: object) -> object:
    """Base64 text as bytes, strictly: a corrupted file must not restore as other bytes."""
    if not isinstance(value, str):
        return value  # bytes given in Python; anything else the bytes check refuses
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except binascii.Error:
        raise ValueError("not valid base64") from None


def _encoded(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


Base64Bytes = Annotated[
    bytes, BeforeValidator(_decoded), PlainSerializer(_encoded, return_type=str, when_used="json")
]


class AttachmentRecord(Line):
    """A file of a user message; `data` null: dropped by the session's budget (not kept)."""

    n: int = Field(ge=1)
    kind: AttachmentKind
    media_type: str
    name: str
    size: int = Field(ge=0)
    data: Base64Bytes | None
    # Written only when true: a PDF sent to the model as a file (PDF_ENGINE=openrouter).
    read_by_model: bool = Field(default=False, exclude_if=lambda is_read: not is_read)

    @model_validator(mode="after")
    def _whole(self) -> AttachmentRecord:
        if self.data is not None and len(self.data) != self.size:
            raise ValueError(f"size: {self.size} bytes, but its data holds {len(self.data)}")
        return self


class MessageRecord(Line):
    seq: int = Field(ge=1)
    role: Role
    timestamp: int = Field(ge=0)
    content: str
    model: str | None = None
    usage: UsageRecord | None = None
    # Written only when true: an answer /stop ended (see codec.py).
    stopped: bool = Field(default=False, exclude_if=lambda stopped: not stopped)
    # Written only when the message has files (format version 2).
    attachments: list[AttachmentRecord] = Field(
        default_factory=list, exclude_if=lambda attachments: not attachments
    )

    @model_validator(mode="after")
    def _numbered(self) -> MessageRecord:
        previous = 0
        for attachment in self.attachments:
            if attachment.n <= previous:
                raise ValueError("attachments: n must increase from one file to the next")
            previous = attachment.n
        return self


class SessionRecord(Line):
    kind: Literal["session"]
    id: str = Field(pattern=SESSION_ID_PATTERN.pattern)
    user_id: str = Field(min_length=1)
    creator: str | None = Field(default=None, min_length=1)  # format version 2
    title: str
    model: str
    created_at: int = Field(ge=0)
    updated_at: int = Field(ge=0)
    seq: int = Field(ge=0)
    last_activity: int | None
    expires_at: int | None
    file_bytes: int | None = Field(default=None, ge=0)  # format version 2
    # Format version 2, optional: absent when the global SYSTEM_PROMPT applies.
    system_prompt: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SYSTEM_PROMPT_LENGTH,
        exclude_if=lambda prompt: prompt is None,
    )
    # Format version 2, optional: the session's summary of its older messages
    # (core/summaries.py), the seq of the last message it stands in for, and whether a reply
    # said the model relies on it. Absent while it has none (files written before summaries).
    summary: str | None = Field(
        default=None,
        min_length=1,
        max_length=SUMMARY_MAX_CHARACTERS,
        exclude_if=lambda summary: summary is None,
    )
    summary_up_to: int | None = Field(default=None, ge=1, exclude_if=lambda up_to: up_to is None)
    told_summary: bool = Field(default=False, exclude_if=lambda is_told: not is_told)
    # What the session's entries are written against beside createdAt (entry_basis in lib.lua),
    # when it is not `model` (the session's model changed since): a restore gives it back.
    entry_model: str | None = Field(default=None, exclude_if=lambda model: model is None)
    messages: list[MessageRecord]

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> SessionRecord:
        if _version_read(info) < FIRST_VERSION_WITH_FILES:
            self._check_version_1()
        if self.id[:4] != user_tag(self.user_id):
            raise ValueError("id: does not belong to this userId (its first 4 digits differ)")
        self._check_summary()
        previous = 0
        for message in self.messages:
            if message.seq <= previous:
                raise ValueError("messages: seq must increase from one message to the next")
            previous = message.seq
        if previous > self.seq:
            raise ValueError("seq: smaller than the seq of a message")
        kept = sum(len(data) for _, data in stored_files(self))
        if (self.file_bytes or 0) != kept:
            raise ValueError(
                f"fileBytes: {self.file_bytes}, but the files kept add up to {kept} bytes"
            )
        return self

    def _check_summary(self) -> None:
        if (self.summary is None) != (self.summary_up_to is None):
            raise ValueError("summaryUpTo: given with a summary, and only with one")
        if self.summary_up_to is not None and self.summary_up_to > self.seq:
            raise ValueError("summaryUpTo: past the session's seq")

    def _check_version_1(self) -> None:
        for field, value in (
            ("creator", self.creator),
            ("fileBytes", self.file_bytes),
            ("systemPrompt", self.system_prompt),
            ("summary", self.summary),
            ("toldSummary", self.told_summary or None),
        ):
            if value is not None:
                raise ValueError(f"{field}: not in format version 1")
        if any(message.attachments for message in self.messages):
            raise ValueError("attachments: not in format version 1")


def _version_read(info: ValidationInfo) -> int:
    """The version of the file being read (parse_record's context); a record built in Python
    is of the version written."""
    context = info.context
    return int(context["version"]) if isinstance(context, dict) else VERSION


class UserRecord(Line):
    kind: Literal["user"]
    user_id: str = Field(min_length=1)
    active: str | None = Field(pattern=SESSION_ID_PATTERN.pattern)
    model: str | None
    expires_at: int | None

    @model_validator(mode="after")
    def _consistent(self) -> UserRecord:
        if self.active is not None and self.active[:4] != user_tag(self.user_id):
            raise ValueError("active: not a session id of this userId")
        return self


class EndRecord(Line):
    kind: Literal["end"]
    sessions: int = Field(ge=0)
    users: int = Field(ge=0)
    messages: int = Field(ge=0)


Record = Annotated[SessionRecord | UserRecord | EndRecord, Field(discriminator="kind")]
_HEADER = TypeAdapter(Header)
_RECORD: TypeAdapter[SessionRecord | UserRecord | EndRecord] = TypeAdapter(Record)


def line_of(record: Line) -> str:
    return record.model_dump_json(by_alias=True) + "\n"


# --- messages: as stored <-> as backed up -------------------------------------------------------


def message_record(raw: str, basis: EntryBasis, files: Mapping[str, bytes]) -> MessageRecord:
    """A stored entry (core/sessions/codec.py, either layout), as backed up; `basis`: what its
    session's entries are written against; `files`: the session's files still kept, by id."""
    entry = entry_of(raw, basis)
    usage = entry.usage
    return MessageRecord(
        seq=entry.seq,
        role=entry.role,
        timestamp=entry.timestamp_ms,
        content=entry.content,
        model=entry.model,
        usage=None if usage is None else UsageRecord(
            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
            cost=usage.cost,
        ),
        stopped=entry.stopped,
        attachments=[_attachment_record(file, files.get(file.id)) for file in entry.attachments],
    )  # fmt: skip


def _attachment_record(file: Attachment, data: bytes | None) -> AttachmentRecord:
    number = int(file.id.rsplit("-", 1)[1])
    return AttachmentRecord(
        n=number, kind=file.kind, media_type=file.media_type, name=file.name, size=file.size,
        data=data, read_by_model=file.is_read_by_model,
    )  # fmt: skip


def stored_entry(message: MessageRecord, basis: EntryBasis) -> str:
    """The entry as the store writes it against `basis` (push_message in lib.lua), with its
    content's tokens counted."""
    usage = message.usage
    return encoded_entry(
        Entry(
            seq=message.seq, role=message.role, timestamp_ms=message.timestamp,
            content=message.content, model=message.model, stopped=message.stopped,
            tokens=count_tokens(message.content),
            usage=None if usage is None else Usage(
                usage.prompt_tokens, usage.completion_tokens, usage.cost
            ),
            attachments=tuple(
                Attachment(
                    attachment_id(message.seq, f.n), f.kind, f.media_type, f.name, f.size,
                    is_read_by_model=f.read_by_model,
                )
                for f in message.attachments
            ),
        ),
        basis,
    )  # fmt: skip


def stored_files(record: SessionRecord) -> list[tuple[str, bytes]]:
    """The session's `:files` hash as the store holds it: (`<seq>-<n>`, bytes) of each file
    still kept."""
    return [
        (attachment_id(message.seq, file.n), file.data)
        for message in record.messages
        for file in message.attachments
        if file.data is not None
    ]


@dataclass
class Counts:
    sessions: int = 0
    users: int = 0
    messages: int = 0

    def add(self, record: SessionRecord | UserRecord) -> None:
        if isinstance(record, SessionRecord):
            self.sessions += 1
            self.messages += len(record.messages)
        else:
            self.users += 1


def check_end(end: EndRecord | None, seen: Counts, last_line: int, source: str) -> None:
    if last_line == 0:
        raise InvalidBackup(where=source, reason="the file is empty")
    if end is None:
        raise InvalidBackup(
            where=source,
            reason=f"ends after line {last_line} without its end line: the backup is incomplete",
            line=last_line,
        )
    if (end.sessions, end.users, end.messages) != (seen.sessions, seen.users, seen.messages):
        raise InvalidBackup(
            where=source,
            reason=f"the end line counts {end.sessions} sessions, {end.users} users and "
            f"{end.messages} messages; the file holds {seen.sessions}, {seen.users} and "
            f"{seen.messages}",
        )


def check_header(raw: str | bytes, where: str) -> int:
    """The version of the file whose first line is `raw`."""
    try:
        header = json.loads(raw)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InvalidBackup(where=where, reason="not a chatbridge backup (no header)", line=1)
    version = header.get("version")
    if version not in READ_VERSIONS or isinstance(version, bool):
        readable = " and ".join(str(known) for known in READ_VERSIONS)
        raise InvalidBackup(
            where=where,
            reason=f"format version {version!r}; this chatbridge reads {readable}",
            line=1,
        )
    try:
        _HEADER.validate_json(raw)
    except ValidationError as error:
        raise InvalidBackup(
            where=where, reason=_first_problem(error, tagged=False), line=1
        ) from None
    return int(version)


def parse_record(
    raw: str | bytes, where: str, number: int, *, version: int, after: EndRecord | None
) -> SessionRecord | UserRecord | EndRecord:
    """Line `number` of a file of format `version` (check_header's)."""
    if after is not None:
        raise InvalidBackup(where=where, reason="a line after the end line", line=number)
    try:
        return _RECORD.validate_json(raw, context={"version": version})
    except ValidationError as error:
        raise InvalidBackup(where=where, reason=_first_problem(error), line=number) from None


def _first_problem(error: ValidationError, *, tagged: bool = True) -> str:
    """`messages.2.role: Input should be ...`; a tagged union's first location is the tag."""
    first = error.errors(include_url=False, include_input=False)[0]
    if first["type"] == "json_invalid":
        return "not valid JSON"
    message = first["msg"].removeprefix("Value error, ")
    location = first["loc"][1:] if tagged else first["loc"]
    path = ".".join(str(part) for part in location)
    return f"{path}: {message}" if path else message
