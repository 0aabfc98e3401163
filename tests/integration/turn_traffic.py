"""Chat turns back to back from many users, recording which ones the store acknowledged.

The failover tests run this while they kill or move a Redis node, then ask which acknowledged
turns are missing afterwards. A turn is acknowledged when both of its round trips returned (the
user's message and the answer are stored); a turn that failed is retried by nobody — its user
just goes on with the next one, as a user would after "temporarily unavailable".
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from core.conversation import MessagePage
from core.errors import SessionBusy, StoreUnavailable, TurnLockLost
from core.sessions.store import SessionStore

MODEL = "test/model"
PAUSE_SECONDS = 0.002  # between a user's turns: a busy user, not a benchmark
GIVE_UP_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Ack:
    session_id: str
    number: int
    at: float  # time.monotonic() when the turn's second round trip returned


@dataclass(frozen=True, slots=True)
class Failure:
    session_id: str
    at: float  # time.monotonic()
    kind: str  # what redis-py raised (or SessionBusy: a retried first round trip had run)


@dataclass
class TurnTraffic:
    store: SessionStore
    users: list[str]
    sessions: dict[str, str] = field(default_factory=dict)  # user -> session id
    acks: list[Ack] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def open_sessions(self) -> None:
        for user in self.users:
            session = await self.store.create_session(user, default_model=MODEL)
            self.sessions[user] = session.id

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TurnTraffic]:
        self._tasks = [asyncio.create_task(self._user(user)) for user in self.users]
        try:
            yield self
        finally:
            self._stopping.set()
            await asyncio.gather(*self._tasks)

    async def until_acknowledged(self, count: int, *, after: float = 0.0) -> None:
        """Until `count` turns were acknowledged after moment `after`."""
        await self._until(lambda: sum(ack.at > after for ack in self.acks) >= count)

    async def until_every_user_recovered(self, after: float) -> None:
        """Until every user had a turn acknowledged after moment `after`."""

        def recovered() -> bool:
            answered = {ack.session_id for ack in self.acks if ack.at > after}
            return answered == set(self.sessions.values())

        await self._until(recovered)

    async def missing(self) -> list[Ack]:
        """The acknowledged turns whose question or answer is not stored now."""
        lost = []
        for session_id in self.sessions.values():
            page = await self._read_when_back(session_id)
            held = [message.content for message in page.messages]
            for ack in self.acks:
                if ack.session_id == session_id and not (
                    f"q{ack.number}" in held and f"a{ack.number}" in held
                ):
                    lost.append(ack)
        return lost

    async def _read_when_back(self, session_id: str) -> MessagePage:
        """The session's messages. Just after a failover a read may still meet the dead node
        (a script the new master never ran is loaded on every master the client still
        knows); like a user, it tries again for a while."""
        deadline = time.monotonic() + 10
        while True:
            try:
                return await self.store.read_messages(session_id, limit=1_000_000)
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def duplicated_answers(self) -> int:
        """Answers stored twice: a second round trip retried after its reply was lost."""
        twice = 0
        for session_id in self.sessions.values():
            page = await self._read_when_back(session_id)
            answers = [m.content for m in page.messages if m.content.startswith("a")]
            twice += len(answers) - len(set(answers))
        return twice

    async def _until(self, condition: object) -> None:
        assert callable(condition)
        deadline = time.monotonic() + GIVE_UP_SECONDS
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"traffic did not get there in {GIVE_UP_SECONDS:g} s: "
                    f"{len(self.acks)} acknowledged, {len(self.failures)} failed"
                )
            if any(task.done() for task in self._tasks):
                await asyncio.gather(*self._tasks)  # a user's loop died: show why
            await asyncio.sleep(0.02)

    async def _user(self, user: str) -> None:
        session_id = self.sessions[user]
        number = 0
        while not self._stopping.is_set():
            number += 1
            token = secrets.token_hex(8)
            try:
                start = await self.store.begin_turn(
                    None, f"q{number}", session_id=session_id, lock_token=token,
                    lock_ttl_ms=30_000, context_tokens=200, default_model=MODEL,
                )  # fmt: skip
                await self.store.finish_turn(
                    start, f"a{number}", model=MODEL, usage=None, is_retry=False, spent_tokens=0
                )
                self.acks.append(Ack(session_id, number, time.monotonic()))
            except (StoreUnavailable, SessionBusy, TurnLockLost) as error:
                # TurnLockLost: a failover lost the lock (and the question with it), so the
                # answer is fenced out rather than stored without its question.
                cause = error.__cause__ or error
                self.failures.append(Failure(session_id, time.monotonic(), type(cause).__name__))
                await self._release(session_id, token)
            await asyncio.sleep(PAUSE_SECONDS)

    async def _release(self, session_id: str, token: str) -> None:
        """Free the lock a failed turn may hold (its first round trip may have run)."""
        while not self._stopping.is_set():
            with contextlib.suppress(StoreUnavailable):
                await self.store.release_lock(session_id, token)
                return
            await asyncio.sleep(0.05)
