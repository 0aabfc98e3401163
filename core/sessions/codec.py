"""How sessions and messages are encoded in Redis replies and list entries.

A message is one compact JSON array in the session's list (see docs/data-model.md):
`[seq, role, timestamp_ms, content, model?, prompt_tokens?, completion_tokens?, cost?, stopped?,
attachments?]`; a stopped answer (/stop) has null usage and cost unless they were reported, and
1 at [8]; a user message with files lists them at [9] as `[n, kind, media type, name, size]`
(kind `i`, `d` or `a`; the bytes are in the session's `:files` hash under `<seq>-<n>`), the
fields before it null.
"""

from __future__ import annotations

import json
from collections.abc import Container, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from core.conversation import (
    Attachment,
    AttachmentKind,
    Message,
    Role,
    Session,
    Usage,
    datetime_from_ms,
)

ROLE_CODES = {Role.USER: "u", Role.ASSISTANT: "a", Role.SYSTEM: "s"}
ROLES_BY_CODE = {code: role for role, code in ROLE_CODES.items()}


def session_from(fields: Sequence[Any]) -> Session:
    session_id, user_id, title, model, created_ms, updated_ms, count, prompt = fields[:8]
    return Session(
        id=str(session_id),
        user_id=str(user_id),
        title=str(title or ""),
        model=str(model or ""),
        created_at=datetime_from_ms(int(created_ms)),
        updated_at=datetime_from_ms(int(updated_ms)),
        message_count=int(count),
        system_prompt=str(prompt) if prompt else None,
    )


KIND_CODES = {AttachmentKind.IMAGE: "i", AttachmentKind.DOCUMENT: "d", AttachmentKind.AUDIO: "a"}
# A document the model is sent as a file (Attachment.is_read_by_model), like an image.
READ_BY_MODEL_CODE = "f"
KINDS_BY_CODE = {code: kind for kind, code in KIND_CODES.items()} | {
    READ_BY_MODEL_CODE: AttachmentKind.DOCUMENT
}


def kind_code(kind: AttachmentKind, *, is_read_by_model: bool) -> str:
    return READ_BY_MODEL_CODE if is_read_by_model else KIND_CODES[kind]


ATTACHMENTS_AT = 9  # where a stored entry lists its files


class ContextEntry(NamedTuple):
    """One message of a turn's context as stored: what the model is sent is built from it."""

    seq: int
    role: Role
    content: str
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored message as its list entry holds it."""

    seq: int
    role: Role
    timestamp_ms: int
    content: str
    model: str | None = None
    usage: Usage | None = None
    stopped: bool = False
    attachments: tuple[Attachment, ...] = ()


def as_bytes(value: str | bytes) -> bytes:
    """A binary value as Redis holds it: the client decodes replies as UTF-8 with
    `surrogateescape` (core/storage/connection.py), which this undoes exactly."""
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value


def attachment_id(seq: int, number: int) -> str:
    return f"{seq}-{number}"


def attachments_of(entry: list[Any], kept: Container[str] | None = None) -> tuple[Attachment, ...]:
    """The files an entry lists; `kept`: the ids whose bytes are still stored (None: all)."""
    if len(entry) <= ATTACHMENTS_AT or not entry[ATTACHMENTS_AT]:
        return ()
    seq = int(entry[0])
    found = []
    for number, kind, media_type, name, size in entry[ATTACHMENTS_AT]:
        ref = attachment_id(seq, int(number))
        is_kept = kept is None or ref in kept
        is_read = kind == READ_BY_MODEL_CODE
        attachment = Attachment(ref, KINDS_BY_CODE[kind], media_type, name, int(size), is_kept)
        found.append(replace(attachment, is_read_by_model=is_read) if is_read else attachment)
    return tuple(found)


def entry_of(raw: str | bytes, kept: Container[str] | None = None) -> Entry:
    """A stored entry; `kept`: the ids of the session's files still stored (None: all)."""
    entry = json.loads(raw)
    fields = len(entry)
    usage = None
    if fields >= 7 and entry[5] is not None:
        cost = float(entry[7]) if fields >= 8 and entry[7] is not None else None
        usage = Usage(prompt_tokens=int(entry[5]), completion_tokens=int(entry[6]), cost=cost)
    return Entry(
        seq=int(entry[0]),
        role=ROLES_BY_CODE[entry[1]],
        timestamp_ms=int(entry[2]),
        content=entry[3],
        model=(entry[4] if fields >= 5 else None) or None,
        usage=usage,
        stopped=fields >= 9 and entry[8] == 1,
        attachments=attachments_of(entry, kept),
    )


def encoded_entry(entry: Entry) -> str:
    """Compact JSON, as append_message.lua writes it."""
    fields: list[Any] = [entry.seq, ROLE_CODES[entry.role], entry.timestamp_ms, entry.content]
    if entry.model is not None or entry.usage is not None or entry.stopped:
        fields.append(entry.model or "")
    if entry.usage is not None:
        fields += [entry.usage.prompt_tokens, entry.usage.completion_tokens]
        if entry.usage.cost is not None or entry.stopped:
            fields.append(entry.usage.cost)
    if entry.stopped:
        fields += [None] * (8 - len(fields)) + [1]
    if entry.attachments:
        fields += [None] * (ATTACHMENTS_AT - len(fields))
        fields.append([
            [int(a.id.rsplit("-", 1)[1]), kind_code(a.kind, is_read_by_model=a.is_read_by_model),
             a.media_type, a.name, a.size]
            for a in entry.attachments
        ])  # fmt: skip
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def message_from(session_id: str, raw: str, kept: Container[str] | None = None) -> Message:
    entry = entry_of(raw, kept)
    return Message(
        id=message_id(session_id, entry.seq),
        role=entry.role,
        content=entry.content,
        model=entry.model,
        timestamp=datetime_from_ms(entry.timestamp_ms),
        usage=entry.usage,
        stopped=entry.stopped,
        attachments=entry.attachments,
    )


def message_id(session_id: str, seq: int) -> str:
    return f"{session_id}-{seq}"


def seq_of_message(message: Message) -> int:
    """The message's sequence number in its session, from its id (`message_id`)."""
    return int(message.id.rsplit("-", 1)[1])


def usage_args(usage: Usage | None) -> tuple[str, str, str]:
    if usage is None:
        return "", "", ""
    cost = "" if usage.cost is None else repr(usage.cost)
    return str(usage.prompt_tokens), str(usage.completion_tokens), cost


def context_from(entries_json: str) -> tuple[ContextEntry, ...]:
    """What a model needs of each entry, from a JSON array of entries (up to
    MAX_MESSAGES_PER_SESSION of them on every turn: one tuple each, files read only where
    listed)."""
    roles = ROLES_BY_CODE
    return tuple(
        ContextEntry(entry[0], roles[entry[1]], entry[3], attachments_of(entry))
        if len(entry) > ATTACHMENTS_AT
        else ContextEntry(entry[0], roles[entry[1]], entry[3])
        for entry in json.loads(entries_json)
    )
