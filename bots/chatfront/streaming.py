"""What streaming an answer into a chat looks like on every chat platform: a "typing" hint while
nothing is shown yet, and one turn streamed with the same endings (cut off, failed, empty)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from typing import Protocol

import structlog

from bots.chatfront.pacing import ChatPacer
from core.commands import TurnReply
from core.conversation import Message
from core.errors import ChatbridgeError, ModelStreamBroken
from core.messages import describe, text

log = structlog.get_logger(__name__)

# A quick answer (most of a fast model's) is complete by then: shown whole, without a hint or an
# edit. A slower one gets its "typing" hint, and its first words, from then on.
TYPING_AFTER_SECONDS = 0.5
FIRST_PREVIEW_AFTER_SECONDS = 0.5


class TypingHint:
    """Calls `show` every `every` seconds from TYPING_AFTER_SECONDS after `start()` until
    `stop()` or until `is_over()`: an answer that is quick needs no hint, and each hint is a
    request that counts against the platform's rate limits."""

    def __init__(
        self, show: Callable[[], Awaitable[object]], *, every: float, is_over: Callable[[], bool]
    ) -> None:
        self._show, self._every, self._is_over = show, every, is_over
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_showing())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _keep_showing(self) -> None:
        await asyncio.sleep(TYPING_AFTER_SECONDS)
        while not self._is_over():
            with contextlib.suppress(Exception):  # a lost "typing" hint is harmless
                await self._show()
            await asyncio.sleep(self._every)


class PacedPreviews:
    """Previews of a growing answer, at most one per edit interval, each sent in the background:
    the model is read on while a preview is on its way (a slow chat platform slows only the
    previews). A subclass has `text`, `pacer`, `has_shown_anything`, `_pace_key` and `_show`;
    its `finish` starts with `_settle_preview()`, its `__aexit__` calls `_drop_preview()`.
    """

    text: str
    pacer: ChatPacer
    _preview: asyncio.Task[None] | None = None
    _is_preview_sending = False

    @property
    def has_shown_anything(self) -> bool:
        raise NotImplementedError

    @property
    def _pace_key(self) -> Hashable:
        raise NotImplementedError

    async def _show(self, *, is_final: bool) -> None:
        raise NotImplementedError

    async def add(self, delta: str) -> None:
        self.text += delta
        if not self.text.strip() or (self._preview is not None and not self._preview.done()):
            return  # the preview on its way is followed by one with the newer text
        if self._preview is not None:
            await self._preview  # a failed preview fails the answer here, as it would have inline
        self._is_preview_sending = False
        if not self.has_shown_anything:
            self._preview = asyncio.create_task(self._show_first_preview())
        elif self.pacer.claim(self._pace_key):
            self._preview = asyncio.create_task(self._show_preview())

    async def _show_first_preview(self) -> None:
        """The first text waits a moment: an answer complete by then is sent whole, as one
        message that never needs an edit (the chat's next edit slot can be a second away)."""
        await asyncio.sleep(FIRST_PREVIEW_AFTER_SECONDS)
        self.pacer.edited(self._pace_key)  # the first message counts as the chat's edit
        await self._show_preview()

    async def _show_preview(self) -> None:
        self._is_preview_sending = True
        await self._show(is_final=False)
        self.pacer.shown(self._pace_key)

    async def _settle_preview(self) -> None:
        """Before the whole text: a preview on its way lands first (it may be the message); one
        still waiting for its moment is not needed any more."""
        if self._preview is None:
            return
        if not self._is_preview_sending:
            await self._drop_preview()
            return
        await self._preview

    async def _drop_preview(self) -> None:
        """The answer is over, finished or not: no preview may outlive it."""
        if self._preview is not None and not self._preview.done():
            self._preview.cancel()
        if self._preview is not None:
            # How the answer ended is what gets reported; a failed preview adds nothing to it.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._preview


class AnswerStream(Protocol):
    """A platform's growing answer: previews as text arrives, then the whole text."""

    @property
    def has_shown_anything(self) -> bool: ...

    async def add(self, delta: str) -> None: ...

    async def finish(self, suffix: str = "", *, footer_line: str = "") -> None: ...


async def stream_turn(
    reply: TurnReply,
    stream: AnswerStream,
    locale: str,
    *,
    say: Callable[[str], Awaitable[object]],
    footer: Callable[[Message | None], str] = lambda _: "",
) -> None:
    """Stream the turn's answer into `stream`; `say` tells what `stream` has nowhere to show.

    A cut-off answer stays shown, marked incomplete; an error is added under what was shown,
    or said on its own; an empty answer is said to be empty.
    """
    try:
        async with reply.turn as turn:
            async for delta in turn.deltas():
                await stream.add(delta)
    except ModelStreamBroken:
        await stream.finish("\n\n" + text(locale, "reply_incomplete"))
        return
    except ChatbridgeError as error:
        log.warning("turn.failed", code=error.code, reason=str(error))
        if stream.has_shown_anything:
            await stream.finish("\n\n⚠️ " + describe(error, locale))
        else:
            await say(describe(error, locale))
        return
    await stream.finish(footer_line=footer(turn.reply))
    if not stream.has_shown_anything:
        await say(text(locale, "empty_answer"))
