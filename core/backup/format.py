"""The lines of a backup file (format version 1), checked: core/backup/lines.py says what they mean.

    {"format": "chatbridge-backup", "version": 1, "createdAt": ms}
    {"kind": "session", "id", "userId", "title", "model", "createdAt", "updatedAt", "seq",
     "lastActivity", "expiresAt", "messages": [{"seq", "role", "timestamp", "content",
     "model"?, "usage"?: {"promptTokens", "completionTokens", "cost"?}, "stopped"?}, ...]}
                                                                          one per session
    {"kind": "user", "userId", "active", "model", "expiresAt"}           one per user state hash
    {"kind": "end", "sessions": n, "users": n, "messages": n}

Times are milliseconds since the epoch on the Redis server's clock; `lastActivity` is the
session's score in its owner's index, `expiresAt` the instant its keys expire (null: never).
A problem is reported as `InvalidBackup` naming the line and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from core.conversation import Role, Usage
from core.errors import InvalidBackup
from core.sessions.codec import Entry, encoded_entry, entry_of
from core.sessions.keys import SESSION_ID_PATTERN, user_tag

FORMAT: Literal["chatbridge-backup"] = "chatbridge-backup"
VERSION = 1


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


class MessageRecord(Line):
    seq: int = Field(ge=1)
    role: Role
    timestamp: int = Field(ge=0)
    content: str
    model: str | None = None
    usage: UsageRecord | None = None
    # Written only when true: an answer /stop ended (see codec.py).
    stopped: bool = Field(default=False, exclude_if=lambda stopped: not stopped)


class SessionRecord(Line):
    kind: Literal["session"]
    id: str = Field(pattern=SESSION_ID_PATTERN.pattern)
    user_id: str = Field(min_length=1)
    title: str
    model: str
    created_at: int = Field(ge=0)
    updated_at: int = Field(ge=0)
    seq: int = Field(ge=0)
    last_activity: int | None
    expires_at: int | None
    messages: list[MessageRecord]

    @model_validator(mode="after")
    def _consistent(self) -> SessionRecord:
        if self.id[:4] != user_tag(self.user_id):
            raise ValueError("id: does not belong to this userId (its first 4 digits differ)")
        previous = 0
        for message in self.messages:
            if message.seq <= previous:
                raise ValueError("messages: seq must increase from one message to the next")
            previous = message.seq
        if previous > self.seq:
            raise ValueError("seq: smaller than the seq of a message")
        return self


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


def message_record(raw: str) -> MessageRecord:
    """A stored entry (core/sessions/codec.py), as backed up."""
    entry = entry_of(raw)
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
    )  # fmt: skip


def stored_entry(message: MessageRecord) -> str:
    """The entry as the store writes it (see append_message.lua), compact JSON."""
    usage = message.usage
    return encoded_entry(
        Entry(
            seq=message.seq, role=message.role, timestamp_ms=message.timestamp,
            content=message.content, model=message.model, stopped=message.stopped,
            usage=None if usage is None else Usage(
                usage.prompt_tokens, usage.completion_tokens, usage.cost
            ),
        )
    )  # fmt: skip


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


def check_header(raw: str | bytes, where: str) -> None:
    try:
        header = json.loads(raw)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InvalidBackup(where=where, reason="not a chatbridge backup (no header)", line=1)
    if header.get("version") != VERSION:
        raise InvalidBackup(
            where=where,
            reason=f"format version {header.get('version')!r}; this chatbridge reads {VERSION}",
            line=1,
        )
    try:
        _HEADER.validate_json(raw)
    except ValidationError as error:
        raise InvalidBackup(
            where=where, reason=_first_problem(error, tagged=False), line=1
        ) from None


def parse_record(
    raw: str | bytes, where: str, number: int, *, after: EndRecord | None
) -> SessionRecord | UserRecord | EndRecord:
    if after is not None:
        raise InvalidBackup(where=where, reason="a line after the end line", line=number)
    try:
        return _RECORD.validate_json(raw)
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
