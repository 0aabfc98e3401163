"""Pacing and ordering shared by the chat fronts: how often a chat sees an edit, in what order
a chat's events reach the core, and which handlers are still at work when the service stops."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Hashable, Iterator
from dataclasses import dataclass, field


class ChatPacer:
    """When each chat may next see an edit; shared by every answer streaming into it."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next_at: dict[Hashable, float] = {}

    def is_due(self, chat_id: Hashable) -> bool:
        return time.monotonic() >= self._next_at.get(chat_id, 0.0)

    def edited(self, chat_id: Hashable) -> None:
        self._next_at[chat_id] = time.monotonic() + self._interval

    def claim(self, chat_id: Hashable) -> bool:
        """Take the chat's edit slot if it is free now; taken before the edit is sent, so two
        answers streaming into one chat never both find it free."""
        if not self.is_due(chat_id):
            return False
        self.edited(chat_id)
        return True

    async def wait_for_slot(self, chat_id: Hashable) -> None:
        """Book the chat's next free slot and wait for it; later callers book later slots."""
        now = time.monotonic()
        slot = max(now, self._next_at.get(chat_id, 0.0))
        self._next_at[chat_id] = slot + self._interval
        await asyncio.sleep(slot - now)

    def shown(self, chat_id: Hashable) -> None:
        """A preview landed: the interval runs from now, so a slow Bot API is given fewer
        edits, not one per word (a slot booked later stays where it is)."""
        self.hold(chat_id, self._interval)

    def hold(self, chat_id: Hashable, seconds: float) -> None:
        self._next_at[chat_id] = max(self._next_at.get(chat_id, 0.0), time.monotonic() + seconds)


@dataclass
class _Queue:
    """One key's lock and how many tasks hold or wait for it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class InOrder:
    """Keys in parallel, each key's work one piece after the other, in arrival order.

    A user's `/new` and the message after it must reach the core in the order they were sent;
    asyncio.Lock wakes its waiters first come, first served.
    """

    def __init__(self) -> None:
        self._queues: dict[Hashable, _Queue] = {}

    @contextlib.asynccontextmanager
    async def turn_of(self, key: Hashable) -> AsyncIterator[None]:
        queue = self._queues.setdefault(key, _Queue())
        queue.users += 1
        try:
            async with queue.lock:
                yield
        finally:
            queue.users -= 1
            if queue.users == 0:
                del self._queues[key]  # idle keys cost nothing

    def __len__(self) -> int:
        return len(self._queues)


class RunningHandlers:
    """The handler tasks at work now, so a stopping front can let them say their last word."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        task = asyncio.current_task()
        if task is None:
            yield
            return
        self._tasks.add(task)
        try:
            yield
        finally:
            self._tasks.discard(task)

    async def finish_within(self, seconds: float) -> None:
        """Wait up to `seconds` for the handlers at work now (they are not cancelled)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=seconds)
