"""A model turn in memory: the deltas it yields and how it ends, without Redis or a model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType

from core.conversation import Message, Notice, Session, datetime_from_ms

# The session every in-memory turn answers in (what a ⏹ button under it would stop).
SESSION = Session(
    id="0" * 32, user_id="telegram:1", title="", model="m/x",
    created_at=datetime_from_ms(0), updated_at=datetime_from_ms(0), message_count=0,
)  # fmt: skip


class InMemoryTurn:
    """A turn that yields `deltas`, waits for `before_ending` if given, then raises `ending`
    (or completes with `reply`, telling `notices`)."""

    def __init__(
        self,
        deltas: list[str],
        *,
        ending: Exception | None = None,
        before_ending: asyncio.Event | None = None,
        fails_to_start: Exception | None = None,
        reply: Message | None = None,
        notices: tuple[Notice, ...] = (),
        expired_after: int = 0,
    ) -> None:
        self._deltas, self._ending, self._before_ending = deltas, ending, before_ending
        self._fails_to_start = fails_to_start
        self._reply = reply
        self.reply: Message | None = None
        self.session = SESSION
        self.notices, self.expired_after = notices, expired_after

    async def __aenter__(self) -> InMemoryTurn:
        if self._fails_to_start is not None:
            raise self._fails_to_start
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    async def deltas(self) -> AsyncIterator[str]:
        for delta in self._deltas:
            yield delta
        if self._before_ending is not None:
            await self._before_ending.wait()
        if self._ending is not None:
            raise self._ending
        self.reply = self._reply
