"""An in-memory `TurnStore` (core.chat): sessions, messages and locks in dicts, so the turn and
command logic can be tested without Redis.

A turn sees here what SessionStore gives it (core/sessions/store.py, lua/begin_turn.lua and
lua/append_message.lua):

- `begin_turn` refuses content by the store's rule (SessionLimits.check_content); finds the
  session: by id (SessionNotFound when it is gone or another user's), else the user's active
  one, created with the user's model (or the default) when they have none; takes its lock
  (SessionBusy while another token holds it); stores the user's message, titling an untitled
  session with its first line; and returns the session, the user message's sequence number,
  the newest messages whose contents fit `context_tokens` at BYTES_PER_TOKEN (the newest
  always) oldest first, as entries (core/turn.py sizes them by tokens within), and the lock
  token. No summaries here: tests/integration has them, on the real store.
- A /retry (content None) stores nothing: its context ends at the newest user message, and it
  is NothingToRetry, with nothing created and the lock let go, when there is none.
- A turn holds its session while its token holds the lock, or while nobody holds the lock
  and nothing was stored since the turn began (lua/lib.lua, holds_turn); a test takes a lock
  away with `locks`, as an expiry or another replica would.
- `finish_turn` stores only for a turn that holds its session (else TurnLockLost, nothing
  stored), releases the turn's lock (even when the session is gone: SessionNotFound then),
  drops on /retry the answers after the user's message, and stores the answer with its model
  and usage, noting that it `told` CONTEXT_LOST when it did.
- Notices: `begin_turn` says whether the context leaves older messages out (its first message
  is not the session's first: trimmed at `max_messages_per_session`, or past the bytes),
  and whether an answer of the session has told so. A session here never expires, so
  `expired_after` is always 0.
- `extend_locks` keeps the lock of each turn that holds its session (taking a lapsed one back),
  False otherwise; `release_lock` releases only the token holding the lock.
- The tokens a turn reserves (`reserve_tokens`) and settles to (`spent_tokens` of finish_turn
  or release_lock, the first of them) are kept in `turns` for the tests to read.
- The lock token names the turn (lua/lib.lua, "Repeated calls"): `begin_turn` called again
  with a token it began answers that same turn, storing nothing more (TurnLockLost if the
  turn no longer holds its session), `finish_turn` called again answers what it answered, and
  so does `release_lock`.
- `request_stop` marks the session with the token holding its lock (`stop_marks` holds them),
  as lua/request_stop.lua does; `stop_marks` answers which turns were marked.

Left to tests/integration, on the real store: expiry (a lock here lasts until it is released),
the rate limit, the token budget and the session limit. The few reads the commands make are
here too, so a command test can get past its argument checks.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from core.conversation import (
    Message,
    MessagePage,
    NewAttachment,
    Notice,
    Role,
    Session,
    Usage,
    datetime_from_ms,
)
from core.errors import NothingToRetry, SessionBusy, SessionNotFound, TurnLockLost
from core.events.publisher import NO_EVENTS, EventPublisher, EventType, session_created
from core.observability.metrics import Metrics
from core.sessions.codec import ContextEntry, message_id, seq_of_message
from core.sessions.keys import new_session_id
from core.sessions.limits import SessionLimits
from core.sessions.store import TITLE_LENGTH, SessionList, TurnStart
from core.spaces import as_authored

# How many bytes of context a token stands for here (the real store counts tokens).
BYTES_PER_TOKEN = 6


@dataclass(slots=True)
class _StoredSession:
    id: str
    user_id: str
    model: str
    created_at: datetime
    updated_at: datetime
    recency: int  # higher: used more recently (the store's "most recent first")
    title: str = ""
    last_seq: int = 0
    messages: list[Message] = field(default_factory=list)
    is_context_loss_told: bool = False  # an answer told CONTEXT_LOST

    def value(self) -> Session:
        return Session(
            self.id, self.user_id, self.title, self.model, self.created_at, self.updated_at,
            len(self.messages),
        )  # fmt: skip


@dataclass(slots=True)
class _TurnRecord:
    """What the store keeps of a turn under its lock token: how it began (and the session's
    last seq then), and its stored reply once it has one."""

    start: TurnStart
    seq_at_begin: int
    outcome: tuple[Message, Session] | None = None
    is_fenced: bool = False  # its finish_turn found it no longer held its session
    released: bool | None = None  # what its release_lock answered, once called
    reserved_tokens: int = 0  # what begin_turn was asked to reserve beyond the context
    spent_tokens: int | None = None  # what it was settled to, once (finish or release)

    def settle(self, spent_tokens: int) -> None:
        if self.spent_tokens is None:
            self.spent_tokens = spent_tokens

    @property
    def has_ended(self) -> bool:
        return self.outcome is not None or self.is_fenced or self.released is not None


class InMemoryTurnStore:
    """Sessions, messages and turn locks of one test, in memory."""

    def __init__(
        self,
        limits: SessionLimits | None = None,
        metrics: Metrics | None = None,
        *,
        events: EventPublisher = NO_EVENTS,
    ) -> None:
        self.limits = limits if limits is not None else SessionLimits()
        self.metrics = metrics if metrics is not None else Metrics()
        self.events = events
        self.locks: dict[str, str] = {}  # session id: the token of the turn holding its lock
        self.busy_refusals = 0  # turns refused with SessionBusy
        self.lock_extensions = 0
        self.stop_requests: dict[str, str] = {}  # session id: the token of the turn asked to stop
        self.begin_tokens: list[str] = []  # the lock token of every begin_turn call, in order
        self.turns: dict[str, _TurnRecord] = {}  # by lock token
        self._sessions: dict[str, _StoredSession] = {}
        self._active: dict[str, str] = {}  # user id: their active session's id
        self._user_models: dict[str, str] = {}  # user id: their /model choice
        self._recency = itertools.count(1)

    def check_content(self, content: str) -> None:
        self.limits.check_content(content)

    async def begin_turn(
        self,
        user_id: str | None,
        content: str | None,
        *,
        session_id: str | None,
        lock_token: str,
        lock_ttl_ms: int,
        context_tokens: int,
        default_model: str,
        reserve_tokens: int = 0,
        system_prompt_tokens: int = 0,
        person: str | None = None,
        author: str = "",
        attachments: Sequence[NewAttachment] = (),
        blind_models: Sequence[str] = (),
    ) -> TurnStart:
        # `person` is not billed apart here: this store keeps no limits per person.
        if user_id is None and session_id is None:
            raise ValueError("a turn needs a user, a session, or both")
        if content is not None:
            self.check_content(content)
            content = as_authored(content, author)
        self.begin_tokens.append(lock_token)
        if (begun := self.turns.get(lock_token)) is not None:
            return self._begun_again(begun)
        stored, is_created = self._session_of_turn(user_id, session_id, content, default_model)
        if stored.id in self.locks:
            self.busy_refusals += 1
            raise SessionBusy()
        self.locks[stored.id] = lock_token
        now = _now()
        if content is None:
            user_seq, context = self._retry_context(stored, stored.messages)
            context = _within_bytes(context, context_tokens * BYTES_PER_TOKEN)
        else:
            user_seq, context = self._store_question(
                stored, content, context_tokens * BYTES_PER_TOKEN, now
            )
        self._touch(stored, now)
        self._active[stored.user_id] = stored.id
        start = TurnStart(
            stored.value(), user_seq,
            tuple(ContextEntry(seq_of_message(m), m.role, m.content) for m in context),
            lock_token,
            is_context_cut=bool(context) and seq_of_message(context[0]) > 1,
            is_context_loss_told=stored.is_context_loss_told,
        )  # fmt: skip
        self.turns[lock_token] = _TurnRecord(start, stored.last_seq, reserved_tokens=reserve_tokens)
        if is_created:
            await self.events.publish(EventType.SESSION_CREATED, session_created(start.session))
        return start

    async def finish_turn(
        self,
        start: TurnStart,
        reply: str,
        *,
        model: str,
        usage: Usage | None,
        is_retry: bool,
        spent_tokens: int,
        stopped: bool = False,
        told: tuple[Notice, ...] = (),
    ) -> tuple[Message, Session]:
        record = self.turns.get(start.lock_token)
        if record is not None and record.outcome is not None:
            return record.outcome  # a repeat: the reply it stored
        if record is not None:
            record.settle(spent_tokens)  # even when fenced out: the model did the work
        if record is not None and (record.is_fenced or not self._holds(record)):
            record.is_fenced = True
            raise TurnLockLost()
        if self.locks.get(start.session.id) == start.lock_token:
            del self.locks[start.session.id]
        stored = self._owned(start.session.id, owner=None)
        while (
            is_retry and stored.messages and _is_answer_after(stored.messages[-1], start.user_seq)
        ):
            stored.messages.pop()
        now = _now()
        message = self._append(stored, Role.ASSISTANT, reply, model=model, usage=usage, now=now)
        if stopped:
            message = stored.messages[-1] = replace(message, stopped=True)
        stored.is_context_loss_told |= Notice.CONTEXT_LOST in told
        self._touch(stored, now)
        session = replace(
            start.session, updated_at=message.timestamp, message_count=len(stored.messages)
        )
        if record is not None:
            record.outcome = (message, session)
        return message, session

    async def extend_locks(self, turns: Sequence[tuple[str, str]], ttl_ms: int) -> list[bool]:
        return [self._extend_lock(session_id, token) for session_id, token in turns]

    def _extend_lock(self, session_id: str, lock_token: str) -> bool:
        record = self.turns.get(lock_token)
        is_held = self.locks.get(session_id) == lock_token
        if not (is_held if record is None else self._holds(record)):
            return False
        self.locks[session_id] = lock_token  # taken back if it had lapsed
        self.lock_extensions += 1
        return True

    async def release_lock(
        self, session_id: str, lock_token: str, *, spent_tokens: int = 0, billed_apart: str = ""
    ) -> bool:
        record = self.turns.get(lock_token)
        if record is not None and record.released is not None:
            return record.released  # a repeat
        if record is not None:
            record.settle(spent_tokens)
        is_held = self.locks.get(session_id) == lock_token
        if is_held:
            del self.locks[session_id]
        if record is not None:
            record.released = is_held
        return is_held

    async def request_stop(self, session_id: str, *, owner: str | None = None) -> bool:
        self._owned(session_id, owner)
        holder = self.locks.get(session_id)
        if holder is not None:
            self.stop_requests[session_id] = holder
        return holder is not None

    async def stop_marks(self, turns: Sequence[tuple[str, str]]) -> list[bool]:
        return [self.stop_requests.get(session_id) == token for session_id, token in turns]

    def _holds(self, record: _TurnRecord) -> bool:
        """Whether the turn still holds its session: its token holds the lock, or nobody does
        and nothing was stored since it began (lua/lib.lua, holds_turn)."""
        session_id = record.start.session.id
        holder = self.locks.get(session_id)
        if holder is not None:
            return holder == record.start.lock_token
        stored = self._sessions.get(session_id)
        return (
            not record.has_ended and stored is not None and (stored.last_seq == record.seq_at_begin)
        )

    def _begun_again(self, begun: _TurnRecord) -> TurnStart:
        """A repeat of a turn's begin_turn: the turn it began, while it still holds its session."""
        if not self._holds(begun):
            raise TurnLockLost()
        self.locks[begun.start.session.id] = begun.start.lock_token
        return begun.start

    # What the commands read (core/commands.py), as SessionStore answers it.

    async def active_session(self, user_id: str) -> Session | None:
        stored = self._active_of(user_id)
        return stored.value() if stored is not None else None

    async def list_sessions(self, user_id: str) -> SessionList:
        mine = [stored for stored in self._sessions.values() if stored.user_id == user_id]
        mine.sort(key=lambda stored: stored.recency, reverse=True)
        return SessionList(tuple(s.value() for s in mine), self._active.get(user_id))

    async def switch_session(self, user_id: str, session_id: str) -> Session:
        stored = self._owned(session_id, owner=user_id)
        self._active[user_id] = stored.id
        return stored.value()

    async def get_session(self, session_id: str, *, owner: str | None = None) -> Session:
        return self._owned(session_id, owner).value()

    async def recent_messages(
        self, session_id: str, count: int, *, owner: str | None = None
    ) -> MessagePage:
        stored = self._owned(session_id, owner)
        newest = stored.messages[-count:] if count > 0 else []
        return MessagePage(tuple(newest), total=len(stored.messages))

    async def set_user_model(self, user_id: str, model: str) -> str | None:
        self._user_models[user_id] = model
        stored = self._active_of(user_id)
        if stored is None:
            return None
        stored.model = model
        return stored.id

    # For the tests' own checks.

    def conversation(self, session_id: str) -> list[tuple[str, str]]:
        """The session's messages as (role, content), oldest first."""
        return [(m.role.value, m.content) for m in self._owned(session_id, None).messages]

    def _session_of_turn(
        self, user_id: str | None, session_id: str | None, content: str | None, model: str
    ) -> tuple[_StoredSession, bool]:
        """The turn's session, and whether the turn created it."""
        if session_id is not None:
            return self._owned(session_id, user_id), False
        assert user_id is not None  # begin_turn checked that one is given
        active = self._active_of(user_id)
        if active is not None:
            return active, False
        if content is None:  # nothing to answer again: create nothing
            raise NothingToRetry()
        return self._create(user_id, self._user_models.get(user_id, model)), True

    def _retry_context(
        self, stored: _StoredSession, window: list[Message]
    ) -> tuple[int, list[Message]]:
        """The newest user message's seq, and the window up to and including it."""
        users = [index for index, message in enumerate(window) if message.role is Role.USER]
        if not users:
            del self.locks[stored.id]
            raise NothingToRetry()
        return seq_of_message(window[users[-1]]), window[: users[-1] + 1]

    def _store_question(
        self,
        stored: _StoredSession,
        content: str,
        context_bytes: int,
        now: datetime,
    ) -> tuple[int, list[Message]]:
        message = self._append(stored, Role.USER, content, model=None, usage=None, now=now)
        context = _within_bytes(
            stored.messages, context_bytes
        )  # once trimmed, as the store reads it
        if not stored.title:
            stored.title = content.lstrip().split("\n", 1)[0][:TITLE_LENGTH]
        return seq_of_message(message), context

    def _append(
        self,
        stored: _StoredSession,
        role: Role,
        content: str,
        *,
        model: str | None,
        usage: Usage | None,
        now: datetime,
    ) -> Message:
        stored.last_seq += 1
        message = Message(message_id(stored.id, stored.last_seq), role, content, model, now, usage)
        stored.messages.append(message)
        del stored.messages[: -self.limits.max_messages_per_session]
        return message

    def _touch(self, stored: _StoredSession, now: datetime) -> None:
        """Used now: updated, and the user's most recent session."""
        stored.updated_at = now
        stored.recency = next(self._recency)

    def _create(self, user_id: str, model: str) -> _StoredSession:
        now = _now()
        stored = _StoredSession(
            new_session_id(user_id), user_id, model, now, now, next(self._recency)
        )
        self._sessions[stored.id] = stored
        self._active[user_id] = stored.id
        return stored

    def _active_of(self, user_id: str) -> _StoredSession | None:
        # Nothing expires or is deleted here, so a user's active session is always there.
        return self._sessions.get(self._active.get(user_id, ""))

    def _owned(self, session_id: str, owner: str | None) -> _StoredSession:
        """The session; SessionNotFound when it is gone or not `owner`'s (None: anyone's)."""
        stored = self._sessions.get(session_id)
        if stored is None or (owner is not None and stored.user_id != owner):
            raise SessionNotFound()
        return stored


def _within_bytes(messages: list[Message], context_bytes: int) -> list[Message]:
    """The newest messages whose contents take at most `context_bytes` (the newest always)."""
    kept: list[Message] = []
    for message in reversed(messages):
        context_bytes -= len(message.content.encode())
        if context_bytes < 0 and kept:
            break
        kept.append(message)
    return kept[::-1]


def _is_answer_after(message: Message, seq: int) -> bool:
    """What a /retry replaces: an answer stored after the question it answers again."""
    return message.role is Role.ASSISTANT and seq_of_message(message) > seq


def _now() -> datetime:
    """Milliseconds, as the store's Redis TIME stamps them."""
    return datetime_from_ms(time.time_ns() // 1_000_000)
