"""Sessions and their messages in Redis.

Every operation is one Lua script (one round trip), so every limit is enforced atomically in
Redis however many replicas and tasks write at once. The layout and its reasons are in
docs/data-model.md; key names come from core.sessions.keys, the limits from
core.sessions.limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from redis.asyncio.cluster import RedisCluster

from core.conversation import (
    Attachment,
    Message,
    MessagePage,
    NewAttachment,
    Notice,
    Role,
    Session,
    SessionSummary,
    Usage,
    datetime_from_ms,
)
from core.errors import (
    AttachmentGone,
    ChatbridgeError,
    ModelCannotReadImages,
    NothingToRetry,
    SessionBusy,
    SessionLimitReached,
    SessionNotFound,
    StoreUnavailable,
    TurnLockLost,
)
from core.events.publisher import (
    NO_EVENTS,
    EventPublisher,
    EventType,
    session_created,
    session_deleted,
)
from core.observability.activity import SessionActivity
from core.observability.metrics import Metrics
from core.sessions.bills import PersonBills
from core.sessions.codec import (
    KINDS_BY_CODE,
    ROLE_CODES,
    ContextEntry,
    EntryBasis,
    as_bytes,
    context_from,
    message_from,
    message_id,
    session_from,
    usage_args,
)
from core.sessions.keys import (
    new_session_id,
    session_key,
    tag_of_session,
    user_index_key,
    user_tag,
    user_usage_key,
)
from core.sessions.limits import SessionLimits
from core.sessions.scripts import LuaScripts
from core.sessions.summary_store import SummaryStore
from core.sessions.usage import USAGE_WINDOW_DAYS, UsageReport, usage_report
from core.spaces import as_authored, person_of_space
from core.storage.connection import POOL_WAIT_SECONDS, RedisClient
from core.tokens import TokenCounter

T = TypeVar("T")

TITLE_LENGTH = 60
# How long a /stop waits for the turn it names (the turn's replica polls every fraction of a
# second; a turn that ended meanwhile never reads it).
STOP_MARK_MS = 60_000
# Storing an answer the model was paid for is tried again when Redis did not answer (or no
# connection was free within the pool's wait, under load): its call id makes the repeat store
# it once, and a lock that lapsed meanwhile fences it out (TurnLockLost) as on the first try.
FINISH_RETRY_DELAYS = (0.5, 2.0)
# The share of a waiting pool's connections that new turns' first round trips never take: one
# in FINISHING_SHARE is left for the writes that finish turns, so that under a burst of new
# turns an answer already streamed (and paid for) is not lost waiting behind them.
FINISHING_SHARE = 5
# How append_message.lua is told what an answer told besides (its ARGV[18]).
NOTICE_CODES = {
    Notice.PREVIOUS_SESSION_EXPIRED: "e",
    Notice.CONTEXT_LOST: "c",
    Notice.CONTEXT_SUMMARIZED: "s",
}


@dataclass(frozen=True, slots=True)
class SessionList:
    sessions: tuple[Session, ...]
    active_id: str | None


@dataclass(frozen=True, slots=True)
class TurnStart:
    """What the first round trip of a turn returns: the session, locked, and its context."""

    session: Session
    user_seq: int
    # The context's entries, oldest first, when one of them has files (core/turn.py builds
    # their messages); else empty, and `encoded_context` holds the messages.
    context: tuple[ContextEntry, ...]
    lock_token: str
    # The person billed for the turn in their own slot (a shared space's turn: bills.py) when
    # it ends, '' when begin_turn billed them itself.
    billed_apart: str = ""
    # What the reply must tell (Notice). The seconds without messages after which the space's
    # previous session expired, while the turn's session was started for that and no stored
    # answer has said so (0: nothing to tell).
    expired_after: int = 0
    # Whether older messages of the session that `summary` does not stand in for are left out
    # of the context (trimmed by MAX_MESSAGES_PER_SESSION, or past its tokens), and
    # whether an answer of the session has said that some were.
    is_context_cut: bool = False
    # The bytes of the images the model is sent, by attachment id: those still kept of the
    # last IMAGE_CONTEXT_TURNS user messages of `context`.
    images: Mapping[str, bytes] = field(default_factory=dict)
    is_context_loss_told: bool = False
    # What the session's older messages said, made by core/summaries.py ('' = none): it stands
    # in for the messages up to seq `summary_up_to`, none of which are in `context`.
    summary: str = ""
    summary_up_to: int = 0
    is_summary_told: bool = False  # an answer has said that it relied on a summary
    # The context as the model's messages, sized by begin_turn.lua within the request's tokens
    # from the counts stored with each message: request JSON objects joined by commas, put in
    # the request as they are ('' when `context` holds the entries).
    encoded_context: str = ""
    # What the context's messages take (their stored counts and each message's overhead), and
    # their seqs and tokens as one JSON array [seq, tokens, ...], oldest first.
    context_tokens: int = 0
    sent: str = "[]"


class SessionStore:
    """The only code that reads or writes session data in Redis (besides core/backup/lines.py)."""

    def __init__(
        self,
        redis: RedisClient,
        limits: SessionLimits,
        metrics: Metrics | None = None,
        *,
        events: EventPublisher = NO_EVENTS,
    ) -> None:
        self._redis = redis
        self.limits = limits
        self.metrics = metrics if metrics is not None else Metrics()
        # Told of sessions created and deleted once the change is stored (webhooks).
        self.events = events
        self.activity = SessionActivity(limits.ttl_seconds)
        self._scripts = LuaScripts(redis, self.activity, self.metrics)
        self._run = self._scripts.run
        self._bills = PersonBills(self._scripts, limits)
        self.summaries = SummaryStore(self._scripts)
        # Each message's tokens are counted as it is stored: a turn's context is sized by them.
        self.count_tokens = TokenCounter().count
        self._turn_starts = _turn_start_slots(redis)

    async def ping(self) -> float:
        """Round-trip latency to Redis in milliseconds (on a cluster: to its slowest master)."""
        started = time.perf_counter()
        if isinstance(self._redis, RedisCluster):
            # Every master at once: the cluster is up only when all of its slots are served.
            await self._scripts.translate(self._redis.ping(target_nodes=RedisCluster.PRIMARIES))
        else:
            await self._scripts.translate(self._redis.ping())
        return (time.perf_counter() - started) * 1000

    async def active_session_count(self) -> int:
        """Sessions that stored a message or were created within SESSION_TTL (about ±1%)."""
        return int(await self._scripts.translate(self.activity.count(self._redis)))

    async def create_session(
        self,
        user_id: str,
        *,
        title: str = "",
        model: str = "",
        default_model: str,
        for_turn: bool = False,
        creator: str = "",
        system_prompt: str | None = None,
    ) -> Session:
        """A new, active session; `for_turn`: refused when a turn could not start now.
        `creator`: the person starting it in a shared space (see session_creator).
        `system_prompt`: its own (held to MAX_SYSTEM_PROMPT_LENGTH), else the global one."""
        if system_prompt is not None:
            self.limits.check_system_prompt(system_prompt)
        session_id = new_session_id(user_id)
        limits = self.limits
        turn_limits = limits.turn_limit_args() if for_turn else (0, 0, 0)
        reply = await self._run(
            "create_session",
            user_index_key(user_id),
            user_tag(user_id),
            user_id,
            session_id,
            title,
            model,
            default_model,
            limits.ttl_seconds,
            limits.max_sessions_per_user,
            limits.policy.value,
            *turn_limits,
            creator,
            system_prompt or "",
            self.count_tokens(system_prompt) if system_prompt else "",
            active_session=session_id,
        )
        if refusal := limits.refusal(reply):
            raise refusal
        if reply[0] == "LIMIT":
            raise SessionLimitReached(limit=limits.max_sessions_per_user)
        for evicted_id in reply[9:]:  # SESSION_LIMIT_POLICY=evict_oldest made room
            await self.events.publish(
                EventType.SESSION_DELETED, session_deleted(str(evicted_id), user_id)
            )
        session = session_from(reply[1:9])
        await self.events.publish(EventType.SESSION_CREATED, session_created(session))
        return session

    async def session_creator(self, session: Session) -> str:
        """Who started `session`: the person who did in a shared space, else its owner."""
        creator = await self._scripts.translate(
            self._redis.hget(session_key(session.id), "creator")
        )
        return str(creator) if creator else session.user_id

    async def get_session(self, session_id: str, *, owner: str | None = None) -> Session:
        reply = await self._run(
            "get_session",
            session_key(session_id),
            tag_of_session(session_id),
            session_id,
            owner or "",
            self.limits.ttl_seconds,
        )
        return _session_or_not_found(reply)

    async def active_session(self, user_id: str) -> Session | None:
        """The user's active session (or their most recent one), refreshing its expiry."""
        reply = await self._run(
            "get_session", user_index_key(user_id), user_tag(user_id), "", user_id,
            self.limits.ttl_seconds,
        )  # fmt: skip
        return None if reply[0] == "NOT_FOUND" else session_from(reply[1:])

    async def list_sessions(self, user_id: str) -> SessionList:
        reply = await self._run(
            "list_sessions", user_index_key(user_id), user_tag(user_id), user_id,
            self.limits.ttl_seconds,
        )  # fmt: skip
        rows = reply[1:]
        sessions = tuple(
            session_from([rows[i], user_id, *rows[i + 1 : i + 7]]) for i in range(0, len(rows), 7)
        )
        return SessionList(sessions=sessions, active_id=reply[0] or None)

    async def switch_session(self, user_id: str, session_id: str) -> Session:
        if tag_of_session(session_id) != user_tag(user_id):
            raise SessionNotFound()
        reply = await self._run(
            "switch_session", user_index_key(user_id), user_tag(user_id), user_id, session_id,
            self.limits.ttl_seconds,
        )  # fmt: skip
        return _session_or_not_found(reply)

    async def delete_session(self, session_id: str, *, owner: str | None = None) -> str | None:
        """Delete a session; returns the owner's new active session id, if any remains."""
        reply = await self._run(
            "delete_session", session_key(session_id), tag_of_session(session_id), session_id,
            owner or "", new_call_id(),
        )  # fmt: skip
        if reply[0] == "NOT_FOUND":
            raise SessionNotFound()
        await self.events.publish(
            EventType.SESSION_DELETED, session_deleted(session_id, str(reply[1]))
        )
        return str(reply[2]) or None

    async def rename_session(
        self, session_id: str, title: str, *, owner: str | None = None
    ) -> Session:
        return await self._update(session_id, owner, {"title": title})

    async def update_session(
        self,
        session_id: str,
        *,
        owner: str | None = None,
        title: str | None = None,
        model: str | None = None,
        system_prompt: str | None = None,
        is_system_prompt_reset: bool = False,
    ) -> Session:
        """Change any of a session's title, model and system prompt in one round trip;
        `is_system_prompt_reset`: back to the global SYSTEM_PROMPT. A system prompt is held to
        MAX_SYSTEM_PROMPT_LENGTH first (EmptyMessage, SystemPromptTooLong)."""
        changes: dict[str, str] = {}
        if title is not None:
            changes["title"] = title
        if model is not None:
            changes["model"] = model
        if system_prompt is not None:
            self.limits.check_system_prompt(system_prompt)
            changes["systemPrompt"] = system_prompt
            changes["systemPromptTokens"] = str(self.count_tokens(system_prompt))
        elif is_system_prompt_reset:
            changes["systemPrompt"] = ""  # update_session.lua removes it
        if not changes:
            return await self.get_session(session_id, owner=owner)
        return await self._update(session_id, owner, changes)

    async def usage(self, person: str) -> UsageReport:
        """What `person`'s turns cost today and in the last 30 UTC days (today included), and
        what is left of today's DAILY_TOKEN_BUDGET. One round trip."""
        reply = await self._run(
            "read_usage", user_usage_key(person, 0), user_tag(person), person, USAGE_WINDOW_DAYS
        )
        return usage_report(reply, self.limits.daily_token_budget)

    async def set_user_model(self, user_id: str, model: str) -> str | None:
        """The user's model for new sessions, applied to the active one; returns its id."""
        reply = await self._run(
            "set_model", user_index_key(user_id), user_tag(user_id), user_id, model,
            self.limits.ttl_seconds,
        )  # fmt: skip
        return str(reply) or None

    async def append_message(
        self,
        session_id: str,
        role: Role,
        content: str,
        *,
        owner: str | None = None,
        model: str | None = None,
        usage: Usage | None = None,
        lock_token: str = "",
        replaces_after_seq: int = 0,
    ) -> Message:
        """Store one message as given, past any turn's lock and uncounted: for a turn's answer
        (`lock_token`), and for tests and benchmarks that fill sessions. What a caller adds goes
        through add_message instead. User-written content is held to MAX_MESSAGE_LENGTH."""
        if role is not Role.ASSISTANT:
            self.check_content(content)
        message, _ = await self._append(
            session_id, role, content, owner=owner, model=model, usage=usage,
            lock_token=lock_token, replaces_after_seq=replaces_after_seq,
            call_id=lock_token or new_call_id(),
        )  # fmt: skip
        return message

    async def add_message(
        self,
        session_id: str,
        role: Role,
        content: str,
        *,
        owner: str | None = None,
        model: str | None = None,
    ) -> Message:
        """Store a message the model did not answer (POST /api/sessions/{id}/messages).

        Held to its role's length limit before anything is sent (EmptyMessage, MessageTooLong);
        then, in one round trip, refused while a turn holds the session (SessionBusy) or when
        the session's owner is at RATE_LIMIT_MESSAGES (RateLimited), else stored and counted
        against that owner like a turn. Its call id makes a retried call store and count once.
        """
        self.limits.check_added(role, content)
        rate_limit, window_ms, _ = self.limits.turn_limit_args()  # no tokens spent: no budget
        reply = await self._run(
            "add_message", session_key(session_id), tag_of_session(session_id), session_id,
            owner or "", ROLE_CODES[role], content, model or "", self.limits.ttl_seconds,
            self.limits.max_messages_per_session, rate_limit, window_ms, new_call_id(),
            self.count_tokens(content), active_session=session_id,
        )  # fmt: skip
        if refusal := self.limits.refusal(reply):
            raise refusal
        if reply[0] == "NOT_FOUND":
            raise SessionNotFound()
        if reply[0] == "BUSY":
            raise SessionBusy()
        return Message(
            id=message_id(session_id, int(reply[1])),
            role=role,
            content=content,
            model=model,
            timestamp=datetime_from_ms(int(reply[2])),
        )

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
        """The turn's second round trip: store the answer (`stopped`: what was shown of one
        /stop ended, marked so), settle its `spent_tokens` (its usage, or their estimate)
        against the reservation, release the lock, and note what the answer `told` besides, so
        that no later turn tells it again.

        TurnLockLost (nothing stored, the tokens still counted) when the turn no longer holds
        its session: its lock lapsed and another turn took it, or wrote to the session."""
        charged = used_by = ""
        if not start.billed_apart:  # else its person's slot counts it (settle_turn.lua)
            used_by = person_of_space(start.session.user_id)
            if self.limits.daily_token_budget > 0:
                charged = used_by
        store_answer = functools.partial(
            self._append,
            start.session.id, Role.ASSISTANT, reply, owner=None, model=model, usage=usage,
            lock_token=start.lock_token, replaces_after_seq=start.user_seq if is_retry else 0,
            charged_user=charged, call_id=start.lock_token, spent_tokens=spent_tokens,
            stopped=stopped,
            told="".join(NOTICE_CODES[notice] for notice in told), used_by=used_by,
        )  # fmt: skip
        try:
            message, count = await _tried_while_unavailable(store_answer)
        finally:
            if start.billed_apart:  # stored or fenced out, the model's work was done
                await self._bills.settle(
                    start.billed_apart, start.lock_token, spent_tokens, usage=usage
                )
        session = replace(start.session, updated_at=message.timestamp, message_count=count)
        return message, session

    async def _append(
        self,
        session_id: str,
        role: Role,
        content: str,
        *,
        owner: str | None,
        model: str | None,
        usage: Usage | None,
        lock_token: str,
        replaces_after_seq: int,
        call_id: str,
        charged_user: str = "",
        spent_tokens: int = 0,
        stopped: bool = False,
        told: str = "",
        used_by: str = "",
    ) -> tuple[Message, int]:
        reply = await self._run(
            "append_message",
            session_key(session_id),
            tag_of_session(session_id),
            session_id,
            owner or "",
            ROLE_CODES[role],
            content,
            model or "",
            *usage_args(usage),
            self.limits.ttl_seconds,
            self.limits.max_messages_per_session,
            lock_token,
            replaces_after_seq,
            charged_user,
            call_id,
            spent_tokens,
            "1" if stopped else "",
            told,
            used_by,
            self.count_tokens(content),
            active_session=session_id,
        )
        if reply[0] == "NOT_FOUND":
            raise SessionNotFound()
        if reply[0] == "LOCK_LOST":
            raise TurnLockLost()
        seq, timestamp_ms, count = int(reply[1]), int(reply[2]), int(reply[3])
        message = Message(
            id=message_id(session_id, seq),
            role=role,
            content=content,
            model=model,
            timestamp=datetime_from_ms(timestamp_ms),
            usage=usage,
            stopped=stopped,
        )
        return message, count

    async def read_messages(
        self, session_id: str, *, owner: str | None = None, offset: int = 0, limit: int = 50
    ) -> MessagePage:
        """Messages oldest first, `offset` from the oldest held, and how many are held."""
        return await self._read(session_id, owner, max(offset, 0), max(limit, 0))

    async def recent_messages(
        self, session_id: str, count: int, *, owner: str | None = None
    ) -> MessagePage:
        """The newest `count` messages, oldest first."""
        return await self._read(session_id, owner, -count, count)

    async def _read(
        self, session_id: str, owner: str | None, start: int, limit: int
    ) -> MessagePage:
        reply = await self._run(
            "read_messages", session_key(session_id), tag_of_session(session_id), session_id,
            owner or "", start, limit, self.limits.ttl_seconds,
        )  # fmt: skip
        if reply[0] == "NOT_FOUND":
            raise SessionNotFound()
        kept = frozenset(json.loads(reply[2]))
        summary = SessionSummary(str(reply[3]), int(reply[4])) if reply[3] else None
        basis = EntryBasis(int(reply[5]), str(reply[6]))
        messages = tuple(message_from(session_id, raw, basis, kept) for raw in reply[7:])
        return MessagePage(messages=messages, total=int(reply[1]), summary=summary)

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
        """Lock the session and store the user's message (None: /retry the last one) with its
        `attachments` (their bytes kept within MAX_ATTACHMENT_BYTES_PER_SESSION, the oldest
        of the session dropped first: AttachmentsTooLarge if they alone do not fit). A message
        with images is refused (ModelCannotReadImages, nothing stored) when its session's model
        is one of `blind_models`.

        `user_id` names the space whose session it is (core/spaces.py), `person` who wrote
        (None: the space's owner); in a shared space the message is stored as `author`'s.
        With no session id, the space's active session is used, or created when it has none.
        Raises SessionBusy when another turn holds the lock, and RateLimited or
        DailyBudgetExhausted (nothing stored) when the person may not start a turn now.
        `lock_token` names the turn: called again with it, this answers the turn it began.
        With DAILY_TOKEN_BUDGET, the turn reserves its context's estimate plus `reserve_tokens`
        (its completion's cap and system prompt) until finish_turn or release_lock settles it.

        The context is the newest messages that fit `context_tokens` beside the system prompt
        (the session's own, else the global one, which takes `system_prompt_tokens` with its
        overhead) and the summary, returned as the model's messages (`encoded_context`).
        """
        if content is not None:
            if not attachments:  # with files, the caller held the typed words to it
                self.check_content(content)
            content = as_authored(content, author)
        files = self.limits.file_args(attachments)
        files.append(json.dumps(list(blind_models)) if blind_models else "")
        files += [self.count_tokens(content) if content else 0, system_prompt_tokens]
        anchor, tag = _turn_anchor(user_id, session_id)
        billed_apart = person if person is not None and user_tag(person) != tag else ""
        turn_limits = self.limits.turn_limit_args()
        if billed_apart:
            # Only the completion's cap and the system prompt: the context is not read yet.
            await self._bills.reserve(billed_apart, lock_token, reserve_tokens)
            turn_limits = (0, 0, 0)
        created_id = new_session_id(user_id) if user_id else ""
        try:
            await self._take_turn_start_slot()
            try:
                reply = await self._run(
                    "begin_turn", anchor, tag, user_id or "", session_id or "", created_id,
                    content or "", lock_token, lock_ttl_ms, self.limits.ttl_seconds,
                    self.limits.max_messages_per_session, context_tokens, default_model,
                    TITLE_LENGTH, *turn_limits, reserve_tokens, person or "", *files,
                )  # fmt: skip
            finally:
                if self._turn_starts is not None:
                    self._turn_starts.release()
            if refusal := self.limits.refusal(reply):
                raise refusal
            start = replace(_turn_start(reply, lock_token), billed_apart=billed_apart)
        except ChatbridgeError:
            if billed_apart:
                with contextlib.suppress(ChatbridgeError):
                    await self._bills.give_back(billed_apart, lock_token)
            raise
        if start.session.id == created_id:  # the space had no session: the turn made one
            await self.events.publish(EventType.SESSION_CREATED, session_created(start.session))
        return start

    async def _take_turn_start_slot(self) -> None:
        """Wait, up to POOL_WAIT_SECONDS, until fewer new turns than `_turn_starts` allows
        are in their first round trip (StoreUnavailable after that, as the pool would)."""
        slots = self._turn_starts
        if slots is None:
            return
        if not slots.locked():
            await slots.acquire()  # free: at once
            return
        try:
            async with asyncio.timeout(POOL_WAIT_SECONDS):
                await slots.acquire()
        except TimeoutError:
            error = StoreUnavailable()
            self.metrics.redis_error(error)
            raise error from None

    async def release_lock(
        self, session_id: str, lock_token: str, *, spent_tokens: int = 0, billed_apart: str = ""
    ) -> bool:
        """End a turn without an answer: release its lock, and settle its token reservation
        to `spent_tokens` (what the model was sent and streamed; 0 if it never had it), in
        `billed_apart`'s slot for a shared space's turn (TurnStart.billed_apart)."""
        try:
            return await self._lock(session_id, lock_token, 0, spent_tokens)
        finally:
            if billed_apart:
                await self._bills.settle(billed_apart, lock_token, spent_tokens)

    async def extend_locks(self, turns: Sequence[tuple[str, str]], ttl_ms: int) -> list[bool]:
        """For each running turn (session id, lock token): keep its lock `ttl_ms` more (taking
        back a lapsed one nobody wrote after), or False once the turn no longer holds its
        session; one round trip for all."""
        replies = await self._scripts.run_many(
            "lock",
            [
                (session_key(sid, ":lock"), (tag_of_session(sid), token, ttl_ms, sid, 0))
                for sid, token in turns
            ],
        )
        return [bool(reply) for reply in replies]

    async def read_attachment(
        self, session_id: str, attachment_id: str, *, owner: str | None = None
    ) -> tuple[Attachment, bytes]:
        """A file of the session's messages and its bytes (GET .../attachments/{id}).

        SessionNotFound for no such session or file, or someone else's; AttachmentGone when
        MAX_ATTACHMENT_BYTES_PER_SESSION dropped its bytes."""
        reply = await self._run(
            "read_attachment", session_key(session_id), tag_of_session(session_id), session_id,
            owner or "", attachment_id,
        )  # fmt: skip
        if reply[0] == "NOT_FOUND":
            raise SessionNotFound()
        kind, media_type, name = KINDS_BY_CODE[str(reply[1])], str(reply[2]), str(reply[3])
        if reply[0] == "GONE":
            raise AttachmentGone(name=name)
        data = as_bytes(reply[4])
        return Attachment(attachment_id, kind, media_type, name, len(data)), data

    async def request_stop(self, session_id: str, *, owner: str | None = None) -> bool:
        """Ask the turn answering in `session_id` to stop, wherever it runs: True when a turn
        held the session (it stops within STOP_POLL_SECONDS, core/chat.py), False when none
        did. SessionNotFound when the session is not `owner`'s."""
        reply = await self._run(
            "request_stop", session_key(session_id), tag_of_session(session_id), session_id,
            owner or "", STOP_MARK_MS, new_call_id(), active_session=session_id,
        )  # fmt: skip
        if reply[0] == "NOT_FOUND":
            raise SessionNotFound()
        return bool(int(reply[1]))

    async def stop_marks(self, turns: Sequence[tuple[str, str]]) -> list[bool]:
        """For each running turn (session id, lock token): whether it was asked to stop; one
        round trip for all (a pipeline: on a cluster, one per node)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id, _ in turns:
                pipe.get(session_key(session_id, ":stop"))
            marks = await self._scripts.translate(pipe.execute())
        return [mark == token for mark, (_, token) in zip(marks, turns, strict=True)]

    def check_content(self, content: str) -> None:
        """Refuse empty or over-long user content before anything is stored."""
        self.limits.check_content(content)

    async def _lock(self, session_id: str, lock_token: str, ttl_ms: int, spent_tokens: int) -> bool:
        reply = await self._run(
            "lock", session_key(session_id, ":lock"), tag_of_session(session_id), lock_token,
            ttl_ms, session_id, spent_tokens,
        )  # fmt: skip
        return bool(reply)

    async def _update(
        self, session_id: str, owner: str | None, changes: Mapping[str, str]
    ) -> Session:
        pairs = [part for field_value in changes.items() for part in field_value]
        reply = await self._run(
            "update_session", session_key(session_id), tag_of_session(session_id), session_id,
            owner or "", self.limits.ttl_seconds, *pairs,
        )  # fmt: skip
        return _session_or_not_found(reply)


def new_call_id() -> str:
    """The id of one logical call: redis-py's retries repeat it, a new action gets another
    (the scripts keep what a call did under it: docs/data-model.md, "Repeated calls")."""
    return secrets.token_hex(12)


def _turn_anchor(user_id: str | None, session_id: str | None) -> tuple[str, str]:
    """The key a turn's script starts from, and its hash tag: the session's, else the user's
    index (their active session, or a new one)."""
    if session_id is not None:
        tag = tag_of_session(session_id)
        if user_id is not None and tag != user_tag(user_id):
            raise SessionNotFound()
        return session_key(session_id), tag
    if user_id is None:
        raise ValueError("a turn needs a user, a session, or both")
    return user_index_key(user_id), user_tag(user_id)


def _turn_start(reply: list[Any], lock_token: str) -> TurnStart:
    status = reply[0]
    if status == "NOT_FOUND":
        raise SessionNotFound()
    if status == "BUSY":
        raise SessionBusy()
    if status == "NOTHING_TO_RETRY":
        raise NothingToRetry()
    if status == "LOCK_LOST":
        raise TurnLockLost()
    if status == "MODEL_CANNOT_SEE":
        raise ModelCannotReadImages(model=str(reply[1]))
    session = session_from(reply[1:9])
    context = context_from(reply[10]) if reply[10] else ()
    images = {str(reply[i]): as_bytes(reply[i + 1]) for i in range(20, len(reply), 2)}
    return TurnStart(
        session=session, user_seq=int(reply[9]), context=context, lock_token=lock_token,
        expired_after=int(reply[11] or 0), is_context_cut=reply[12] == "1",
        is_context_loss_told=reply[13] == "1", images=images, summary=str(reply[14]),
        summary_up_to=int(reply[15]), is_summary_told=reply[16] == "1",
        encoded_context=str(reply[17]), context_tokens=int(reply[18]), sent=str(reply[19]),
    )  # fmt: skip


def _turn_start_slots(redis: RedisClient) -> asyncio.Semaphore | None:
    """How many new turns may be in their first round trip at once: all but
    1/FINISHING_SHARE of the connections of a pool that makes commands wait for one (None:
    a pool that does not, a Cluster's)."""
    size = getattr(getattr(redis, "connection_pool", None), "max_connections", None)
    if not isinstance(size, int) or size < 2:
        return None
    return asyncio.Semaphore(size - max(1, size // FINISHING_SHARE))


def _session_or_not_found(reply: list[Any]) -> Session:
    if reply[0] == "NOT_FOUND":
        raise SessionNotFound()
    return session_from(reply[1:])


async def _tried_while_unavailable(call: Callable[[], Awaitable[T]]) -> T:
    """`call`, tried again after each of FINISH_RETRY_DELAYS while Redis is unavailable."""
    for delay in FINISH_RETRY_DELAYS:
        try:
            return await call()
        except StoreUnavailable:
            await asyncio.sleep(delay)
    return await call()
