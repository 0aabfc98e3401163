"""The chat service: builds turns on a store and a model, and stops them when the service stops.

The service depends on two ports, `ChatModel` (core.llm.openrouter.OpenRouterClient) and
`TurnStore` (core.sessions.store.SessionStore); what one turn does is in core/turn.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from core.conversation import Message, NewAttachment, Notice, Session, Usage
from core.errors import ChatbridgeError
from core.events.publisher import EventPublisher
from core.llm.modalities import ModelModalities, route_images
from core.llm.wire import ChatMessage, StreamEvent
from core.observability.metrics import UNKNOWN_FRONT, Metrics
from core.sessions.store import TurnStart
from core.spaces import Speaker
from core.summaries import Summarizer
from core.tokens import DEFAULT_CONTEXT_TOKENS, MESSAGE_OVERHEAD_TOKENS, TokenCounter
from core.turn import Turn

# After the grace period, how long interrupted turns get to end (each ends at its next read
# from the model; one still busy in its front's code is left to the front's own shutdown).
INTERRUPTED_TURNS_WAIT_SECONDS = 5.0
# How often this process asks Redis whether a /stop named one of its turns (one round trip for
# all of them): a stop sent to any replica ends the answer within this, plus one model read.
# The same task extends all their locks, every third of the lock's ttl (_TurnWatch).
STOP_POLL_SECONDS = 0.25


class ChatModel(Protocol):
    """What a turn needs from a model provider (core.llm.openrouter.OpenRouterClient)."""

    @property
    def is_configured(self) -> bool: ...

    def stream(
        self, messages: Sequence[ChatMessage], *, model: str, max_tokens: int | None = None
    ) -> AsyncIterator[StreamEvent]: ...


class ModelCatalog(Protocol):
    """Which models read what (core.llm.models.ModelCatalog)."""

    async def modalities(self) -> ModelModalities: ...


class TurnStore(Protocol):
    """What a turn needs from the session store (core.sessions.store.SessionStore): a turn is
    two round trips, begin and finish, around the model call, and a lock it keeps alive."""

    @property
    def metrics(self) -> Metrics: ...

    @property
    def events(self) -> EventPublisher: ...

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
    ) -> TurnStart: ...

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
    ) -> tuple[Message, Session]: ...

    async def extend_locks(self, turns: Sequence[tuple[str, str]], ttl_ms: int) -> list[bool]: ...

    async def request_stop(self, session_id: str, *, owner: str | None = None) -> bool: ...

    async def stop_marks(self, turns: Sequence[tuple[str, str]]) -> list[bool]: ...

    async def release_lock(
        self, session_id: str, lock_token: str, *, spent_tokens: int = 0, billed_apart: str = ""
    ) -> bool: ...


# The store a ChatService was built on: the commands need all of SessionStore, a turn only this.
TurnStoreT_co = TypeVar("TurnStoreT_co", bound=TurnStore, covariant=True)


@dataclass(frozen=True, slots=True)
class TurnSettings:
    system_prompt: str
    default_model: str
    lock_ttl_ms: int = 30_000
    lock_wait_seconds: float = 60.0
    context_tokens: int | None = None  # CONTEXT_TOKENS (None: DEFAULT_CONTEXT_TOKENS)
    turn_timeout_seconds: float = 300.0  # TURN_TIMEOUT
    max_completion_tokens: int = 4096  # MAX_COMPLETION_TOKENS
    # VISION_MODEL: answers a message with images when its session's model reads none.
    vision_model: str | None = None


class ChatService(Generic[TurnStoreT_co]):
    """Builds turns; one instance serves every front."""

    def __init__(
        self,
        store: TurnStoreT_co,
        model: ChatModel,
        settings: TurnSettings,
        metrics: Metrics | None = None,
        *,
        events: EventPublisher | None = None,
        catalog: ModelCatalog | None = None,
        summarizer: Summarizer | None = None,
    ) -> None:
        self._store = store
        # SUMMARIES=on: makes the summaries of what falls out of the context; None: off.
        self.summarizer = summarizer
        self.token_counter = TokenCounter()
        # Which models read images; None: none is known, images go to whichever model.
        self.catalog = catalog
        self.model = model
        self.settings = settings
        # By default the store's, so one Metrics object sees the turn and its Redis errors.
        self.metrics = metrics if metrics is not None else store.metrics
        # Told how each turn ended (webhooks); by default the store's.
        self.events = events if events is not None else store.events
        self._running = _RunningTurns()
        self._watch = _TurnWatch(store, self._running, settings.lock_ttl_ms)
        self._is_stopping = False

    @property
    def store(self) -> TurnStoreT_co:
        return self._store

    @property
    def context_tokens(self) -> int:
        """CONTEXT_TOKENS: the most a request's messages may take (a model with a smaller
        context gets less: core/tokens.py, request_size)."""
        return self.settings.context_tokens or DEFAULT_CONTEXT_TOKENS

    @property
    def system_prompt_tokens(self) -> int:
        """What the global SYSTEM_PROMPT takes in a request, its message's overhead included."""
        prompt = self.settings.system_prompt
        return self.token_counter.count(prompt) + MESSAGE_OVERHEAD_TOKENS if prompt else 0

    @property
    def running_turns(self) -> int:
        return len(self._running.now())

    @property
    def is_stopping(self) -> bool:
        """True once `stop_turns` began: new turns are refused with ServiceStopping."""
        return self._is_stopping

    async def stop_turns(self, grace_seconds: float) -> int:
        """Refuse new turns; give the running ones `grace_seconds` to finish, then interrupt
        the rest. Returns how many were interrupted.

        An interrupted turn ends with TurnInterrupted at its next read from the model, like a
        cut stream: the user's message stays for /retry, no partial answer is stored, and its
        lock is released.
        """
        self._is_stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        try:
            if await self._running.none_within(grace_seconds):
                # Summaries under way get what is left of the grace (a later turn redoes one).
                await self._close_summarizer(max(0.0, deadline - loop.time()))
                return 0
            interrupted = await self._interrupt_running()
            await self._close_summarizer(0)
            return interrupted
        finally:
            await self._watch.close()

    async def aclose(self) -> None:
        """Stop what the service runs in the background, before its Redis client closes: a
        turn still running is interrupted (`stop_turns` first lets them finish) and the task
        keeping their locks ends. Summaries are the summarizer's owner's to close."""
        self._is_stopping = True
        try:
            await self._interrupt_running()
        finally:
            await self._watch.close()

    async def _interrupt_running(self) -> int:
        """Interrupt the running turns and give them INTERRUPTED_TURNS_WAIT_SECONDS to end;
        returns how many there were."""
        interrupted = self._running.now()
        for turn in interrupted:
            turn.interrupt()
        if interrupted:
            await self._running.none_within(INTERRUPTED_TURNS_WAIT_SECONDS)
        return len(interrupted)

    async def _close_summarizer(self, grace_seconds: float) -> None:
        if self.summarizer is not None:
            await self.summarizer.close(grace_seconds)

    async def stop_answer(self, session_id: str, *, owner: str | None = None) -> bool:
        """/stop: end the answer being written in `session_id`, on whichever replica writes it;
        what it showed is stored, marked stopped. False when no answer was being written;
        SessionNotFound when the session is not `owner`'s."""
        requested = await self._store.request_stop(session_id, owner=owner)
        if requested:
            for turn in self._running.now():  # no need to wait for the next poll here
                if turn.is_answering and turn.session.id == session_id:
                    turn.stop()
        return requested

    async def require_image_reader(self, model: str) -> None:
        """ModelCannotReadImages when a message with images for `model` would be refused (no
        VISION_MODEL to answer instead): for a caller about to create something first."""
        if self.catalog is None:
            return
        modalities = await self.catalog.modalities()
        route_images(model, modalities, vision_model=self.settings.vision_model,
                     preferred=(self.settings.default_model,))  # fmt: skip

    def _watch_turns(self) -> None:
        """A turn of this process began: its lock is kept from now on, and it may be asked to
        stop from anywhere."""
        self._watch.watch()

    def turn(
        self,
        text: str,
        *,
        user_id: str | None,
        session_id: str | None = None,
        model: str | None = None,
        front: str = UNKNOWN_FRONT,
        speaker: Speaker | None = None,
        attachments: Sequence[NewAttachment] = (),
    ) -> Turn:
        """A turn on `session_id`, or on the user's active session when it is None; its
        message brings `attachments` (checked and converted already: core/attachments).

        `speaker`: who wrote, when it is not the user themself (a space of a group chat:
        `user_id` is then the space). `front` (http, cli, telegram, discord) labels the turn's
        metrics.
        """
        return Turn(
            self, user_id, session_id, text=text, model=model, front=front, speaker=speaker,
            attachments=attachments,
        )  # fmt: skip

    def retry(
        self,
        *,
        user_id: str | None,
        session_id: str | None = None,
        model: str | None = None,
        front: str = UNKNOWN_FRONT,
        speaker: Speaker | None = None,
    ) -> Turn:
        """Answer the session's last user message again, replacing the answer it had."""
        return Turn(self, user_id, session_id, text=None, model=model, front=front, speaker=speaker)


class _TurnWatch:
    """What this process's running turns need from Redis, for all of them at once: every
    STOP_POLL_SECONDS one round trip asks whether a /stop (sent to whichever replica) named
    any, and every third of the lock's ttl one more extends all their locks (a turn that lost
    its session to another writer ends at once: its answer could not be stored)."""

    def __init__(self, store: TurnStore, running: _RunningTurns, lock_ttl_ms: int) -> None:
        self._store = store
        self._running = running
        self._lock_ttl_ms = lock_ttl_ms
        self._task: asyncio.Task[None] | None = None

    def watch(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        extend_every = self._lock_ttl_ms / 3000
        period = min(STOP_POLL_SECONDS, extend_every)
        extend_at = loop.time() + extend_every
        while self._running.now():  # ends with the last turn; the next one starts it again
            await asyncio.sleep(period)
            answering = [turn for turn in self._running.now() if turn.is_answering]
            if not answering:
                continue
            await self._end_stopped(answering)
            if loop.time() >= extend_at and await self._extend_locks(answering):
                extend_at = loop.time() + extend_every

    async def _end_stopped(self, answering: list[Turn]) -> None:
        asked = [(turn.session.id, turn.lock_token) for turn in answering]
        try:
            marks = await self._store.stop_marks(asked)
        except ChatbridgeError:
            return  # Redis out of reach: asked again at the next poll
        for turn, is_marked in zip(answering, marks, strict=True):
            if is_marked:
                turn.stop()

    async def _extend_locks(self, answering: list[Turn]) -> bool:
        """Whether the locks were extended (else tried again at the next poll: a lock lasts
        its whole ttl, three polls at least)."""
        held = [(turn.session.id, turn.lock_token) for turn in answering]
        try:
            holds = await self._store.extend_locks(held, self._lock_ttl_ms)
        except ChatbridgeError:
            return False
        for turn, still_holds in zip(answering, holds, strict=True):
            if not still_holds:
                turn.lose_lock()
        return True


class _RunningTurns:
    """The turns in progress in this process, for a stopping service to wait for."""

    def __init__(self) -> None:
        self._turns: set[Turn] = set()
        self._none = asyncio.Event()
        self._none.set()

    def add(self, turn: Turn) -> None:
        self._turns.add(turn)
        self._none.clear()

    def discard(self, turn: Turn) -> None:
        self._turns.discard(turn)
        if not self._turns:
            self._none.set()

    def now(self) -> list[Turn]:
        return list(self._turns)

    async def none_within(self, seconds: float) -> bool:
        """Whether every turn has ended within `seconds`."""
        try:
            await asyncio.wait_for(self._none.wait(), seconds)
        except TimeoutError:
            return False
        return True
