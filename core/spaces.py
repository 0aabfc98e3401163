"""Conversation spaces: whose sessions a message goes to, and who pays for its turn.

A person (`telegram:<id>`, `discord:<id>`, `cli:<name>`, an HTTP `userId`) has their own space,
named by their id: a private chat or DM, and every session made before spaces existed. A group
chat, a Telegram forum topic or a Discord channel or thread is a chat of its own:

    per_user (GROUP_SESSIONS default)  `<person>@<chat>`: the person's sessions in that chat
    shared                             `<chat>`: one set of sessions for all its members

A space id is what the store calls a user id: it owns an index, a state and sessions. A
person's space in a chat keeps the person's hash tag (core.sessions.keys.user_tag), so its
turns check the person's rate limit and budget in the same script; a shared chat has a slot of
its own, and its turns bill the person in theirs (SessionStore.begin_turn).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

AUTHOR_NAME_MAX_CHARS = 64


class GroupSessions(StrEnum):
    PER_USER = "per_user"
    SHARED = "shared"


@dataclass(frozen=True, slots=True)
class Speaker:
    """Who wrote (`person`: their limits, budget and buttons) and in which space (`space`:
    whose sessions). In a shared space `author` is the name their messages reach the model
    under, and `is_chat_admin` lets them delete sessions others started."""

    person: str
    space: str
    author: str = ""
    is_chat_admin: bool = False

    @classmethod
    def alone(cls, person: str) -> Speaker:
        """The person in their own space: a private chat, the terminal, the HTTP API."""
        return cls(person, person)

    @property
    def is_shared(self) -> bool:
        """A space of a whole group chat, not the person's own."""
        return person_of_space(self.space) != self.person


def chat_of(front: str, chat_id: int, thread_id: int | None = None) -> str:
    """A group chat's name: `telegram:chat:-100123`, a forum topic `...:topic:7`."""
    chat = f"{front}:chat:{chat_id}"
    return chat if thread_id is None else f"{chat}:topic:{thread_id}"


def group_speaker(
    person: str, chat: str, mode: GroupSessions, *, author: str, is_chat_admin: bool = False
) -> Speaker:
    """`person` writing in group chat `chat` (see chat_of)."""
    if mode is GroupSessions.SHARED:
        return Speaker(person, chat, author_name(author, fallback=person), is_chat_admin)
    return Speaker(person, f"{person}@{chat}")


# A person's space in a chat, as group_speaker names it: the person is the part before '@'.
# Matched whole and strictly, so that a free-form HTTP user id with an '@' in it (an e-mail
# address) stays a person of its own.
_PERSONAL_SPACE = re.compile(
    r"((?:telegram|discord):[0-9]+)@(?:telegram|discord):chat:-?[0-9]+(?::topic:[0-9]+)?"
)


def person_of_space(space: str) -> str:
    """The person whose space in a chat `space` is, else `space` itself (a person, or a chat)."""
    if "@" not in space:
        return space
    match = _PERSONAL_SPACE.fullmatch(space)
    return match.group(1) if match else space


def author_name(name: str, *, fallback: str) -> str:
    """A display name fit to prefix a message: one line, no control characters, bounded."""
    cleaned = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in name)
    cleaned = " ".join(cleaned.split())[:AUTHOR_NAME_MAX_CHARS].strip()
    return cleaned or fallback


def as_authored(content: str, author: str) -> str:
    """What a message of a shared space reaches the model as: its author's name first."""
    return f"{author}: {content}" if author else content
