"""One chat turn: store the user's message, ask the model, store its answer.

A turn costs two Redis round trips (begin and finish) around the model call, holds the
session's lock in between so turns of one session never interleave, and leaves the session
as it was — with the user's message kept for /retry — when the model fails, its stream is
cut (the partial text is never stored), its circuit breaker refuses the call, the answer goes
on past TURN_TIMEOUT (TurnTimeout), the service stops before the answer is complete
(`ChatService.stop_turns`), or the turn loses its session to another writer (TurnLockLost: its
lock lapsed, and the answer is fenced out). A turn the person stops (/stop: TurnStopped) keeps
what it showed, stored marked stopped.

A turn's reply also tells, once, what the person could not see coming (`Turn.notices`): that
its space's previous session had expired, so this is a new one, and that older messages of
the session no longer reach the model. Both come with the two round trips: begin_turn says
what is left to tell, the stored answer notes it told it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, TypeAlias

import structlog

from core.conversation import (
    AttachmentKind,
    Message,
    NewAttachment,
    Notice,
    Session,
    estimated_tokens,
)
from core.errors import (
    ChatbridgeError,
    ModelCannotReadImages,
    ModelCircuitOpen,
    ModelError,
    ModelNotConfigured,
    ModelStreamBroken,
    ServiceStopping,
    SessionBusy,
    TurnInterrupted,
    TurnLockLost,
    TurnStopped,
    TurnTimeout,
)
from core.events.publisher import EventType, turn_completed, turn_failed
from core.llm.modalities import UNKNOWN as UNKNOWN_MODALITIES
from core.llm.modalities import Modality, ModelModalities, route_images
from core.llm.wire import (
    ChatMessage,
    CompletionDone,
    ContentPart,
    EncodedMessages,
    StreamEvent,
    compact_json,
)
from core.observability.metrics import ABANDONED, INTERNAL_ERROR, UNKNOWN_FRONT, ModelCall
from core.sessions.codec import ContextEntry, seq_of_message
from core.sessions.limits import IMAGE_TOKEN_ESTIMATE
from core.sessions.store import TurnStart
from core.spaces import Speaker
from core.summaries import summary_message
from core.tokens import (
    MESSAGE_OVERHEAD_TOKENS,
    RequestSize,
    cut_to_tokens,
    request_size,
)

if TYPE_CHECKING:
    # Only for annotations: core.chat builds turns, so it imports this module.
    from core.chat import ChatService, TurnStore

log = structlog.get_logger(__name__)

# How a turn is ended before its answer is complete, given the text streamed so far.
Ending: TypeAlias = Callable[[str], ChatbridgeError]
# Errors that say nothing about the model: ended by us, or refused before anything was sent.
NOT_THE_MODELS_FAULT = (ModelCircuitOpen, TurnInterrupted, TurnLockLost, TurnStopped)


class Turn:
    """Use as `async with service.turn(...) as turn: async for text in turn.deltas(): ...`."""

    def __init__(
        self,
        service: ChatService[TurnStore],
        user_id: str | None,
        session_id: str | None,
        *,
        text: str | None,
        model: str | None,
        front: str = UNKNOWN_FRONT,
        speaker: Speaker | None = None,
        attachments: Sequence[NewAttachment] = (),
    ) -> None:
        self._service = service
        self._attachments = attachments
        self._sends_images = True  # False: the answering model reads no images (_route_images)
        self._user_id = user_id
        self._speaker = speaker
        self._session_id = session_id
        self._text = text
        self._model_override = model
        self._front = front
        self._is_counted = False
        self._start: TurnStart | None = None
        self._stream: AsyncGenerator[str, None] | None = None
        self._reading_task: asyncio.Task[object] | None = None  # while waiting for the model
        self._ending: Ending | None = None  # set to end the turn at its next read
        self._has_cancelled_read = False
        # What DAILY_TOKEN_BUDGET charges a turn that ends without an answer (_tokens_spent).
        self._has_asked_model = False
        self._prompt_tokens = 0  # the estimate of what the model was sent
        self._parts: list[str] = []  # the answer's text so far
        self._is_context_trimmed = False  # CONTEXT_TOKENS left older messages out
        # The stored messages the model was sent, oldest first: seqs, or begin_turn.lua's
        # [seq, tokens, ...] JSON (TurnStart.sent), read only if a summary needs it.
        self._sent: list[int] | str = []
        self._model_ending: ChatbridgeError | None = None
        self._done: CompletionDone | None = None
        self.reply: Message | None = None
        self.session_after: Session | None = None  # the session once the reply is stored

    @property
    def session(self) -> Session:
        return self._started.session

    @property
    def lock_token(self) -> str:
        return self._started.lock_token

    @property
    def is_answering(self) -> bool:
        """Begun, and its answer not stored yet: what a /stop can still end."""
        return self._start is not None and self.reply is None

    @property
    def is_retry(self) -> bool:
        return self._text is None

    @property
    def model(self) -> str:
        return self._model_override or self.session.model or self._service.settings.default_model

    @property
    def notices(self) -> tuple[Notice, ...]:
        """What the reply tells besides its answer: the expiry of the space's previous session
        (known once the turn began), lost context (known once `deltas()` has started). Its
        stored answer counts them as told, so no later turn tells them again; an answer /stop
        ended tells nothing (the next answer does)."""
        if self._start is None or isinstance(self._model_ending, TurnStopped):
            return ()
        found = []
        if self._start.expired_after:
            found.append(Notice.PREVIOUS_SESSION_EXPIRED)
        # With SUMMARIES=on what is left out is summarised after this answer: said by the
        # first answer that relies on the summary instead.
        is_lost = self._leaves_messages_out
        if is_lost and self._service.summarizer is None and not self._start.is_context_loss_told:
            found.append(Notice.CONTEXT_LOST)
        if self._start.summary and not self._start.is_summary_told:
            found.append(Notice.CONTEXT_SUMMARIZED)
        return tuple(found)

    @property
    def _leaves_messages_out(self) -> bool:
        """Whether the model was not sent older messages that no summary stands in for."""
        return self._started.is_context_cut or self._is_context_trimmed

    @property
    def expired_after(self) -> int:
        """With PREVIOUS_SESSION_EXPIRED: the seconds without messages after which the space's
        previous session expired (its SESSION_TTL then); else 0."""
        return self._start.expired_after if self._start is not None else 0

    async def __aenter__(self) -> Turn:
        self._service._running.add(self)
        try:
            self._start = await self._begin()
        except BaseException as error:
            # __aexit__ does not run when __aenter__ raises.
            await self._report(error)
            self._service._running.discard(self)
            raise
        structlog.contextvars.bind_contextvars(session=self._start.session.id)
        self._service._watch_turns()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            # A consumer that stops early must not leave the model's HTTP stream open.
            await self._stream.aclose()
        try:
            if self._start is not None and self.reply is None:
                # The stored reply releases the lock in the same round trip; only a failed or
                # abandoned turn needs this extra one. The lock would expire anyway.
                with contextlib.suppress(ChatbridgeError):
                    await self._service.store.release_lock(
                        self.session.id, self._start.lock_token,
                        spent_tokens=self._tokens_spent(), billed_apart=self._start.billed_apart,
                    )  # fmt: skip
            # A no-op unless the turn ended without an answer or a core error.
            await self._report(exc)
            structlog.contextvars.unbind_contextvars("session")
        finally:
            self._service._running.discard(self)

    def interrupt(self) -> None:
        """End the turn at its next read from the model (at once if it is waiting for one)."""
        self._end_early(lambda shown: TurnInterrupted(partial_text=shown))

    def stop(self) -> None:
        """/stop: end the answer at its next read from the model (at once if it is waiting for
        one); what was streamed is stored, marked stopped, and TurnStopped ends `deltas()`."""
        self._end_early(lambda shown: TurnStopped(partial_text=shown))

    def lose_lock(self) -> None:
        """Another writer took the session (the lock lapsed): the answer could not be stored,
        so the turn ends at its next read from the model."""
        if self.reply is None:
            self._end_early(lambda shown: TurnLockLost(partial_text=shown))

    def _end_early(self, ending: Ending) -> None:
        """End the turn with `ending` at its next read from the model, at once if it is waiting
        for one; the first ending wins."""
        if self._ending is None:
            self._ending = ending
        if self._reading_task is not None and not self._has_cancelled_read:
            self._has_cancelled_read = True
            self._reading_task.cancel()

    def deltas(self) -> AsyncIterator[str]:
        """The model's answer as it arrives; stored as one message once complete."""
        self._stream = self._stream_answer()
        return self._stream

    async def _stream_answer(self) -> AsyncGenerator[str, None]:
        # Timed here, around the model call itself, so every front gets the same numbers.
        call = self._service.metrics.model_call(self.model)
        parts = self._parts
        size = await self._request_size()
        self._has_asked_model = True
        events = aiter(
            self._service.model.stream(
                self._context(size.context_tokens), model=self.model, max_tokens=size.max_tokens
            )
        )
        # TURN_TIMEOUT bounds the whole answer: keep-alive comments reset the client's read
        # timeout and the keeper would hold the lock for as long as they come.
        deadline = asyncio.get_running_loop().call_later(
            self._service.settings.turn_timeout_seconds, self._end_early, self._timed_out
        )
        try:
            while True:
                event = await self._next_event(events, parts)
                if isinstance(event, CompletionDone):
                    deadline.cancel()
                    self._done = event
                    call.answered(event.model, event.usage)
                    await self._store_reply("".join(parts), event)
                    await self._report(None)
                    _log_completed(event, call)
                    self._summarize_what_fell_out(size.context_tokens)
                    return
                call.saw_text()
                parts.append(event.text)
                yield event.text
        except ChatbridgeError as error:
            self._model_ending = error
            if not isinstance(error, NOT_THE_MODELS_FAULT):
                call.failed()  # a no-op when the model answered and storing its answer failed
            if isinstance(error, TurnStopped) and error.partial_text.strip():
                await self._store_stopped(error.partial_text)
            await self._report(error)
            raise
        finally:
            deadline.cancel()
            # Closed now, not by the event loop's finalizer on some later tick: a consumer that
            # stops early must not leave the model's HTTP stream (and its billing) running.
            if isinstance(events, AsyncGenerator):
                await events.aclose()

    def _timed_out(self, shown: str) -> TurnTimeout:
        return TurnTimeout(seconds=self._service.settings.turn_timeout_seconds, partial_text=shown)

    async def _next_event(
        self, events: AsyncIterator[StreamEvent], parts: list[str]
    ) -> StreamEvent:
        """The model's next event; ModelStreamBroken if its stream ends without the final one,
        the turn's ending once `_end_early()` was called (TurnInterrupted, TurnLockLost,
        TurnTimeout)."""
        if self._ending is not None:
            raise self._ending("".join(parts))
        # How asyncio.timeout() ends a wait, without its cost on every delta: _end_early()
        # cancels this read only, and the cancellation becomes the ending here.
        self._reading_task = asyncio.current_task()
        try:
            return await anext(events)
        except StopAsyncIteration:
            raise ModelStreamBroken(partial_text="".join(parts)) from None
        except asyncio.CancelledError:
            if not self._has_cancelled_read or self._uncancel() > 0 or self._ending is None:
                raise  # cancelled by someone else too: theirs to handle
            raise self._ending("".join(parts)) from None
        finally:
            self._reading_task = None

    def _uncancel(self) -> int:
        """Take back interrupt()'s cancellation; the count of cancellations still pending."""
        task = asyncio.current_task()
        return task.uncancel() if task is not None else 0

    def outcome(self) -> tuple[Message, Session]:
        """The stored reply and the session after it, once `deltas()` has run to its end."""
        if self.reply is None or self.session_after is None:
            raise RuntimeError("the turn has not stored its reply")
        return self.reply, self.session_after

    async def _report(self, ending: BaseException | None) -> None:
        """Count the turn and publish how it ended, once (the reply, if any, is stored)."""
        if not self._count(ending):
            return
        if self.reply is not None and self.session_after is not None:
            data = turn_completed(
                self.session_after, front=self._front, model=self.reply.model or self.model,
                usage=self.reply.usage,
            )  # fmt: skip
            await self._service.events.publish(EventType.TURN_COMPLETED, data)
            return
        session_id = self._start.session.id if self._start is not None else self._session_id
        user_id = self._start.session.user_id if self._start is not None else self._user_id
        code = _ending_code(ending)
        data = turn_failed(session_id, user_id, front=self._front, error=code)
        await self._service.events.publish(EventType.TURN_FAILED, data)

    def _count(self, ending: BaseException | None) -> bool:
        """Count the turn once: completed once its reply is stored, else by what ended it.

        True the first time, when it counted."""
        if self._is_counted:
            return False
        self._is_counted = True
        # The session's owner once known: a turn by session id (the HTTP API) names no user.
        user_id = self._start.session.user_id if self._start is not None else self._user_id
        if self.reply is not None:
            self._service.metrics.turn_completed(self._front, user_id)
        else:
            self._service.metrics.turn_ended_early(self._front, ending, user_id)
        return True

    @property
    def _started(self) -> TurnStart:
        if self._start is None:
            raise RuntimeError("use the turn inside `async with`")
        return self._start

    async def _begin(self) -> TurnStart:
        if not self._service.model.is_configured:
            raise ModelNotConfigured()
        modalities = await self._modalities_for_images()
        blind = self._blind_models(modalities)
        try:
            start = await self._begin_when_free(blind)
        except ModelCannotReadImages as refused:
            suggestion = modalities.suggestion(
                Modality.IMAGE, instead_of=refused.model,
                preferred=(self._service.settings.default_model,),
            )  # fmt: skip
            raise ModelCannotReadImages(model=refused.model, suggestion=suggestion) from None
        if start.images and not modalities.is_known and self._service.catalog is not None:
            modalities = await self._service.catalog.modalities()  # earlier images, no new one
        if start.images and modalities.is_known:
            self._route_images(start, modalities)
        return start

    def _route_images(self, start: TurnStart, modalities: ModelModalities) -> None:
        """The context carries images: a model that reads none gets VISION_MODEL to answer
        instead, or the images as text placeholders (a new image was refused already)."""
        if self._model_override:
            self._sends_images = (
                modalities.accepts(self._model_override, Modality.IMAGE) is not False
            )
            return
        model = start.session.model or self._service.settings.default_model
        try:
            route = route_images(
                model, modalities, vision_model=self._service.settings.vision_model
            )
        except ModelCannotReadImages:
            self._sends_images = False
            return
        if route.is_vision_model:
            self._model_override = route.model

    async def _modalities_for_images(self) -> ModelModalities:
        """What the models list says, when this message brings images and it matters."""
        catalog = self._service.catalog
        if catalog is None or not any(a.kind is AttachmentKind.IMAGE for a in self._attachments):
            return UNKNOWN_MODALITIES
        return await catalog.modalities()

    def _blind_models(self, modalities: ModelModalities) -> tuple[str, ...]:
        """The models this message's images may not go to (begin_turn refuses the turn if its
        session answers with one): none when VISION_MODEL can answer instead."""
        if not modalities.is_known:
            return ()
        settings = self._service.settings
        if self._model_override:  # asked for one model: it reads images, or the turn is refused
            route_images(self._model_override, modalities, vision_model=None,
                         preferred=(settings.default_model,))  # fmt: skip
            return ()
        vision = settings.vision_model
        if vision is not None and modalities.accepts(vision, Modality.IMAGE) is not False:
            return ()
        return tuple(
            sorted(model for model in modalities.models
                   if modalities.accepts(model, Modality.IMAGE) is False)
        )  # fmt: skip

    async def _begin_when_free(self, blind_models: Sequence[str] = ()) -> TurnStart:
        settings = self._service.settings
        deadline = time.monotonic() + settings.lock_wait_seconds
        delay = 0.05
        # One token for the whole turn, every attempt included: it names the turn, so a
        # repeated first round trip (a retry after a lost reply) answers the turn it began.
        token = secrets.token_hex(12)
        # The answer's cap and the system prompt: begin_turn adds its estimate of the context.
        reserve = settings.max_completion_tokens + estimated_tokens(settings.system_prompt)
        while True:
            if self._service.is_stopping:
                raise ServiceStopping()
            try:
                return await self._service.store.begin_turn(
                    self._user_id,
                    self._text,
                    session_id=self._session_id,
                    lock_token=token,
                    lock_ttl_ms=settings.lock_ttl_ms,
                    context_tokens=self._service.context_tokens,
                    default_model=settings.default_model,
                    reserve_tokens=reserve,
                    system_prompt_tokens=self._service.system_prompt_tokens,
                    person=self._speaker.person if self._speaker else None,
                    author=self._speaker.author if self._speaker else "",
                    attachments=self._attachments,
                    blind_models=blind_models,
                )
            except SessionBusy:
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    async def _request_size(self) -> RequestSize:
        """CONTEXT_TOKENS and MAX_COMPLETION_TOKENS, within the model's context when the models
        list gives it."""
        settings = self._service.settings
        model_context = None
        if self._service.catalog is not None:
            model_context = (await self._service.catalog.modalities()).context_length(self.model)
        return request_size(settings.context_tokens, model_context, settings.max_completion_tokens)

    def _context(self, context_tokens: int) -> Sequence[ChatMessage]:
        """System prompt, summary, then the newest messages that fit `context_tokens` (the
        newest always goes)."""
        start = self._started
        count = self._service.token_counter.count
        # The session's own (/persona) when it has one, else the global SYSTEM_PROMPT.
        system = start.session.system_prompt or self._service.settings.system_prompt
        head = [ChatMessage(role="system", content=system)] if system else []
        if start.summary:
            # Made for this size of request, but the session may have moved to a model with a
            # smaller context since: never more than half of it.
            head.append(summary_message(cut_to_tokens(start.summary, context_tokens // 2)))
        head_tokens = sum(count(str(m.content)) + MESSAGE_OVERHEAD_TOKENS for m in head)
        room = context_tokens - head_tokens
        # _prompt_tokens: the estimate of what the model is sent.
        if start.context:
            messages, tokens = self._entries_within(room)
            self._prompt_tokens = head_tokens + tokens
            return head + messages
        encoded, tokens = self._encoded_within(room)
        self._prompt_tokens = head_tokens + tokens
        return EncodedMessages(head, encoded)

    def _encoded_within(self, room: int) -> tuple[str, int]:
        """The messages begin_turn.lua encoded, sized there for CONTEXT_TOKENS, and what they
        take: the oldest are left out here only when they do not fit `room` (a model with a
        smaller context, or a head that takes more than the script counted: a persona or
        summary stored before their counts were)."""
        start = self._started
        self._sent = start.sent
        if start.context_tokens <= room:
            return start.encoded_context, start.context_tokens
        seqs_and_costs = json.loads(start.sent)
        costs = seqs_and_costs[1::2]
        kept, tokens = _newest_within(costs, room)
        first = len(costs) - kept
        self._is_context_trimmed = first > 0
        self._sent = seqs_and_costs[0::2][first:]
        messages = json.loads(f"[{start.encoded_context}]")[first:]
        return ",".join(compact_json(message) for message in messages), tokens

    def _entries_within(self, room: int) -> tuple[list[ChatMessage], int]:
        """The newest entries that fit `room` tokens, as the model's messages, and what they
        take: the images begin_turn returned go with their messages, the others are named in
        text."""
        count = self._service.token_counter.count
        context = self._started.context
        costs = [
            count(e.content) + MESSAGE_OVERHEAD_TOKENS + self._image_tokens(e) for e in context
        ]
        kept, tokens = _newest_within(costs, room)
        first = len(context) - kept
        self._sent = [entry.seq for entry in context[first:]]
        self._is_context_trimmed = first > 0
        content_of = self._content_of
        messages = [
            ChatMessage(e.role, content_of(e) if e.attachments else e.content)
            for e in context[first:]
        ]  # a Role is a str
        return messages, tokens

    def _image_tokens(self, entry: ContextEntry) -> int:
        if not self._sends_images:
            return 0
        sent = self._started.images
        return IMAGE_TOKEN_ESTIMATE * sum(1 for a in entry.attachments if a.id in sent)

    def _summarize_what_fell_out(self, context_tokens: int) -> None:
        """Once the answer is stored: have older messages summarised if this turn (its request
        `context_tokens` long) left out some that no summary stands in for, or the next trims
        would (core/summaries.py)."""
        summarizer = self._service.summarizer
        if summarizer is None or self.reply is None or self.session_after is None:
            return
        start = self._started
        summarizer.after_turn(
            start.session.id,
            person=self._speaker.person if self._speaker else start.session.user_id,
            covered=start.summary_up_to,
            sent=_seqs(self._sent),
            answer_seq=seq_of_message(self.reply),
            is_cut=self._leaves_messages_out,
            stored_count=self.session_after.message_count,
            context_tokens=context_tokens,
        )

    def _content_of(self, entry: ContextEntry) -> str | tuple[ContentPart, ...]:
        """The entry's text, or parts: its text and the files the model reads itself (images,
        PDFs for OpenRouter's parser) that begin_turn returned; older ones are named."""
        images = [a for a in entry.attachments if a.kind is AttachmentKind.IMAGE]
        files = [a for a in entry.attachments if a.is_read_by_model]
        if not images and not files:
            return entry.content
        sent = self._started.images
        shown = sent if self._sends_images else {}
        text = entry.content
        if unseen := [image.name for image in images if image.id not in shown]:
            text += f"\n[{len(unseen)} earlier image(s), no longer shown: {', '.join(unseen)}]"
        if unread := [file.name for file in files if file.id not in sent]:
            text += f"\n[{len(unread)} earlier file(s), no longer shown: {', '.join(unread)}]"
        text = text.lstrip()
        parts: list[ContentPart] = [{"type": "text", "text": text}] if text else []
        for image in images:
            if image.id in shown:
                url = _data_url(image.media_type, shown[image.id])
                parts.append({"type": "image_url", "image_url": {"url": url}})
        for file in files:
            if file.id in sent:
                url = _data_url(file.media_type, sent[file.id])
                parts.append({"type": "file", "file": {"filename": file.name, "file_data": url}})
        return tuple(parts)

    def _tokens_spent(self) -> int:
        """What the model's work on this turn cost, for DAILY_TOKEN_BUDGET: its reported usage,
        else an estimate of what it was sent and streamed; 0 when it never had the request
        (refused before it was sent, or answered with an error status)."""
        if self._done is not None and self._done.usage is not None:
            return self._done.usage.total_tokens
        ending = self._model_ending
        if not self._has_asked_model:
            return 0
        if isinstance(ending, ModelError) and not isinstance(ending, TurnTimeout):
            if ending.reported_tokens is not None:
                return ending.reported_tokens
            if not ending.reached_model and not self._parts:
                return 0
        # Ended by us (stopped, timed out, fenced out, abandoned), cut, or without usage.
        return self._prompt_tokens + estimated_tokens("".join(self._parts))

    async def _store_reply(self, text: str, done: CompletionDone) -> None:
        try:
            self.reply, self.session_after = await self._service.store.finish_turn(
                self._started, text, model=done.model, usage=done.usage, is_retry=self.is_retry,
                spent_tokens=self._tokens_spent(), told=self.notices,
            )  # fmt: skip
        except TurnLockLost:
            raise TurnLockLost(partial_text=text) from None

    async def _store_stopped(self, shown: str) -> None:
        """What the person saw of a stopped answer, kept so that the model sees it too."""
        try:
            self.reply, self.session_after = await self._service.store.finish_turn(
                self._started, shown, model=self.model, usage=None, is_retry=self.is_retry,
                spent_tokens=self._tokens_spent(), stopped=True,
            )  # fmt: skip
        except TurnLockLost:
            raise TurnLockLost(partial_text=shown) from None


def _newest_within(costs: Sequence[int], room: int) -> tuple[int, int]:
    """How many of the newest messages, whose costs are `costs` (oldest first), fit `room`
    tokens (the newest always goes), and what they take."""
    kept, total = 0, 0
    for cost in reversed(costs):
        if kept and total + cost > room:
            break
        kept, total = kept + 1, total + cost
    return kept, total


def _seqs(sent: list[int] | str) -> list[int]:
    """The seqs of `Turn._sent`: a list already, or begin_turn.lua's [seq, tokens, ...]."""
    return sent if isinstance(sent, list) else json.loads(sent)[0::2]


def _data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def _ending_code(ending: BaseException | None) -> str:
    """How a turn without an answer ended: the core error's code, a bug, or abandoned."""
    if isinstance(ending, ChatbridgeError):
        return ending.code
    return INTERNAL_ERROR if isinstance(ending, Exception) else ABANDONED


def _log_completed(done: CompletionDone, call: ModelCall) -> None:
    log.info(
        "turn.completed",
        model=done.model,
        seconds=round(call.elapsed(), 3),
        completion_tokens=done.usage.completion_tokens if done.usage else None,
    )
