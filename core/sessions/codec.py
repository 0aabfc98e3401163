"""How sessions and messages are encoded in Redis replies and list entries.

A message is one compact JSON array in the session's list (see docs/data-model.md, "Messages"):
`[seq, kind, ms since the session's createdAt, content, prompt_tokens?, completion_tokens?,
cost?, model?, attachments?]`, written against the session's basis (`EntryBasis`): its
`createdAt`, and its `entryModel`, the model of an answer that names none. The kind is the role
number (`ROLE_NUMBERS`; 3: an answer /stop ended) plus 4 times the tokens its content takes
(core/tokens.py; 0: not counted, as in entries written before counts were stored), so that
begin_turn.lua sizes a turn's context without decoding an entry; the model is there only when
it differs from the basis's (an answer) or when there is one (any other message; `""`: an
answer without one); a user message with files lists them at [8] as `[n, kind, media type,
name, size]` (kind `i`, `d`, `a` or `f`; the bytes are in the session's `:files` hash under
`<seq>-<n>`); absent fields before a present one are null.

Entries written before this layout (the first layout) are still read: `[seq, role letter,
timestamp_ms, content, model?, prompt_tokens?, completion_tokens?, cost?, stopped?,
attachments?]`. The role's type tells the two apart.
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
ROLE_NUMBERS = {Role.USER: 0, Role.ASSISTANT: 1, Role.SYSTEM: 2}
STOPPED_ANSWER = 3  # the role number of an answer /stop ended
ROLES_BY_NUMBER = {number: role for role, number in ROLE_NUMBERS.items()} | {
    STOPPED_ANSWER: Role.ASSISTANT
}
# An entry's kind is its role number plus TOKENS_UNIT times its content's tokens.
TOKENS_UNIT = 4
# Where an entry's fields are (Python's count), in this layout and in the first.
MODEL_AT, ATTACHMENTS_AT = 7, 8
FIRST_LAYOUT_ATTACHMENTS_AT = 9


class EntryBasis(NamedTuple):
    """What a session's entries are written against (entry_basis in lib.lua): its createdAt
    (ms) and its entryModel, the model of an answer that names none."""

    created_ms: int
    model: str


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
    tokens: int = 0  # what its content takes (core/tokens.py); 0: not counted


def entry_kind(role: Role, tokens: int, *, stopped: bool = False) -> int:
    """An entry's role number and its content's token count, packed as the entry stores them."""
    return (STOPPED_ANSWER if stopped else ROLE_NUMBERS[role]) + TOKENS_UNIT * tokens


def as_bytes(value: str | bytes) -> bytes:
    """A binary value as Redis holds it: the client decodes replies as UTF-8 with
    `surrogateescape` (core/storage/connection.py), which this undoes exactly."""
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value


def attachment_id(seq: int, number: int) -> str:
    return f"{seq}-{number}"


def is_first_layout(entry: list[Any]) -> bool:
    return isinstance(entry[1], str)


def attachments_of(entry: list[Any], kept: Container[str] | None = None) -> tuple[Attachment, ...]:
    """The files an entry lists; `kept`: the ids whose bytes are still stored (None: all)."""
    at = FIRST_LAYOUT_ATTACHMENTS_AT if is_first_layout(entry) else ATTACHMENTS_AT
    if len(entry) <= at or not entry[at]:
        return ()
    seq = int(entry[0])
    found = []
    for number, kind, media_type, name, size in entry[at]:
        ref = attachment_id(seq, int(number))
        is_kept = kept is None or ref in kept
        is_read = kind == READ_BY_MODEL_CODE
        attachment = Attachment(ref, KINDS_BY_CODE[kind], media_type, name, int(size), is_kept)
        found.append(replace(attachment, is_read_by_model=is_read) if is_read else attachment)
    return tuple(found)


def entry_of(raw: str | bytes, basis: EntryBasis, kept: Container[str] | None = None) -> Entry:
    """A stored entry of either layout, read against its session's `basis`; `kept`: the ids
    of the session's files still stored (None: all)."""
    entry = json.loads(raw)
    if is_first_layout(entry):
        return _first_layout_entry(entry, kept)
    fields = len(entry)
    usage = None
    if fields > 5 and entry[4] is not None:
        cost = float(entry[6]) if fields > 6 and entry[6] is not None else None
        usage = Usage(prompt_tokens=int(entry[4]), completion_tokens=int(entry[5]), cost=cost)
    role_number, tokens = entry[1] % TOKENS_UNIT, entry[1] // TOKENS_UNIT
    role = ROLES_BY_NUMBER[role_number]
    if fields > MODEL_AT and entry[MODEL_AT] is not None:
        model = entry[MODEL_AT] or None
    else:
        model = (basis.model or None) if role is Role.ASSISTANT else None
    return Entry(
        seq=int(entry[0]),
        role=role,
        timestamp_ms=basis.created_ms + int(entry[2]),
        content=entry[3],
        model=model,
        usage=usage,
        stopped=role_number == STOPPED_ANSWER,
        attachments=attachments_of(entry, kept),
        tokens=tokens,
    )


def _first_layout_entry(entry: list[Any], kept: Container[str] | None) -> Entry:
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


def encoded_entry(entry: Entry, basis: EntryBasis) -> str:
    """Compact JSON, as push_message in lib.lua writes it against the session's `basis`."""
    kind = entry_kind(entry.role, entry.tokens, stopped=entry.stopped)
    fields: list[Any] = [entry.seq, kind, entry.timestamp_ms - basis.created_ms, entry.content]
    if entry.usage is not None:
        fields += [entry.usage.prompt_tokens, entry.usage.completion_tokens]
        if entry.usage.cost is not None:
            fields.append(entry.usage.cost)
    model = entry.model or ""
    if model != (basis.model if entry.role is Role.ASSISTANT else ""):
        fields += [None] * (MODEL_AT - len(fields)) + [model]
    if entry.attachments:
        fields += [None] * (ATTACHMENTS_AT - len(fields))
        fields.append([
            [int(a.id.rsplit("-", 1)[1]), kind_code(a.kind, is_read_by_model=a.is_read_by_model),
             a.media_type, a.name, a.size]
            for a in entry.attachments
        ])  # fmt: skip
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def message_from(
    session_id: str, raw: str, basis: EntryBasis, kept: Container[str] | None = None
) -> Message:
    entry = entry_of(raw, basis, kept)
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
    """What a model needs of each entry, from a JSON array of entries of any layout (seq, role
    and content sit where every layout puts them; files are read only where an entry is long
    enough to list them)."""
    return tuple(
        ContextEntry(entry[0], _role_of(entry[1]), entry[3], attachments_of(entry))
        for entry in json.loads(entries_json)
    )


def _role_of(kind: str | int) -> Role:
    """The role of an entry's kind: a letter (the first layout) or a packed number."""
    return ROLES_BY_CODE[kind] if isinstance(kind, str) else ROLES_BY_NUMBER[kind % TOKENS_UNIT]
