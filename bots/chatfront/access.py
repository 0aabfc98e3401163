"""Who talks to a chat front: their user id in the core, the log context that names them, and
whether the front's allow list lets them in.

User ids carry their platform (`telegram:42`, `discord:42`): the same number on two platforms
is two people, each with sessions of their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Platform:
    """A chat platform as the core and the logs know it."""

    name: str  # "telegram", "discord"

    def user_id(self, user_number: int) -> str:
        """The core's id of the platform's user `user_number`."""
        return f"{self.name}:{user_number}"

    def bind(self, user_number: int, chat_id: int | None) -> None:
        """Every log line of this handler names the platform, the user and the chat."""
        structlog.contextvars.bind_contextvars(
            platform=self.name, user=self.user_id(user_number), chat=chat_id
        )


class Named(Protocol):
    """A role as an allow list sees it (discord.py's `Role` is one)."""

    @property
    def id(self) -> int: ...

    @property
    def name(self) -> str: ...


class AllowList:
    """Everyone, unless the settings name who may talk: users by id or username, or, where the
    platform has them, roles by id or name; names compare case-insensitively.

    A refusal is logged as `<platform>.refused_user` with the user's id.
    """

    def __init__(self, platform: Platform, users: Iterable[str], roles: Iterable[str] = ()) -> None:
        self._platform = platform
        self._users = {entry.lower() for entry in users}
        self._roles = {entry.lower() for entry in roles}

    @property
    def lets_everyone_in(self) -> bool:
        return not self._users and not self._roles

    def admits(self, user_number: int, username: str | None, roles: Iterable[Named] = ()) -> bool:
        if self.lets_everyone_in:
            return True
        if _is_named(user_number, username or "", self._users):
            return True
        if any(_is_named(role.id, role.name, self._roles) for role in roles):
            return True
        log.info(f"{self._platform.name}.refused_user", user=self._platform.user_id(user_number))
        return False


def _is_named(number: int, name: str, entries: set[str]) -> bool:
    return str(number) in entries or name.lower() in entries
