"""How sessions and messages are encoded in Redis replies and list entries.

A message is one compact JSON array in the session's list (see docs/data-model.md):
`[seq, role, timestamp_ms, content, model?, prompt_tokens?, completion_tokens?, cost?, stopped?]`;
a stopped answer (/stop) has null usage and cost unless they were reported, and 1 last.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.conversation import Message, Role, Session, Usage, datetime_from_ms

ROLE_CODES = {Role.USER: "u", Role.ASSISTANT: "a", Role.SYSTEM: "s"}
ROLES_BY_CODE = {code: role for role, code in ROLE_CODES.items()}


def session_from(fields: Sequence[Any]) -> Session:
    session_id, user_id, title, model, created_ms, updated_ms, count = fields[:7]
    return Session(
        id=str(session_id),
        user_id=str(user_id),
        title=str(title or ""),
        model=str(model or ""),
        created_at=datetime_from_ms(int(created_ms)),
        updated_at=datetime_from_ms(int(updated_ms)),
        message_count=int(count),
    )


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


def entry_of(raw: str | bytes) -> Entry:
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
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def message_from(session_id: str, raw: str) -> Message:
    entry = entry_of(raw)
    return Message(
        id=message_id(session_id, entry.seq),
        role=entry.role,
        content=entry.content,
        model=entry.model,
        timestamp=datetime_from_ms(entry.timestamp_ms),
        usage=entry.usage,
        stopped=entry.stopped,
    )


def message_id(session_id: str, seq: int) -> str:
    return f"{session_id}-{seq}"


def usage_args(usage: Usage | None) -> tuple[str, str, str]:
    if usage is None:
        return "", "", ""
    cost = "" if usage.cost is None else repr(usage.cost)
    return str(usage.prompt_tokens), str(usage.completion_tokens), cost


def context_from(entries_json: str) -> tuple[tuple[Role, str], ...]:
    """The (role, content) pairs a model needs, from a JSON array of entries."""
    return tuple((ROLES_BY_CODE[entry[1]], entry[3]) for entry in json.loads(entries_json))
