"""How sessions and messages are encoded in Redis replies and list entries.

A message is one compact JSON array in the session's list (see docs/data-model.md):
`[seq, role, timestamp_ms, content, model?, prompt_tokens?, completion_tokens?, cost?]`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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


def message_from(session_id: str, raw: str) -> Message:
    # [seq, role, timestamp_ms, content, model?, prompt_tokens?, completion_tokens?, cost?]
    entry = json.loads(raw)
    seq, role_code, timestamp_ms, content = entry[:4]
    usage = None
    if len(entry) >= 7:
        cost = float(entry[7]) if len(entry) >= 8 else None
        usage = Usage(prompt_tokens=int(entry[5]), completion_tokens=int(entry[6]), cost=cost)
    return Message(
        id=message_id(session_id, int(seq)),
        role=ROLES_BY_CODE[role_code],
        content=content,
        model=(entry[4] if len(entry) >= 5 else None) or None,
        timestamp=datetime_from_ms(int(timestamp_ms)),
        usage=usage,
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
