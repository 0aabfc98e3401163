"""What streaming an answer looks like on every front: one turn streamed with the same endings
(cut off, failed, empty), and on a chat platform a "typing" hint while nothing is shown yet.

`bots/chatfront/reply_stream.py` is the `AnswerStream` of the chat platforms; the terminal has
its own, which prints the text as it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from core.commands import TurnReply
from core.conversation import Message
from core.errors import (
    ChatbridgeError,
    ModelStreamBroken,
    TurnInterrupted,
    TurnLockLost,
    TurnStopped,
    TurnTimeout,
)
from core.messages import describe, notice_text, text
from core.turn import Turn

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


class AnswerStream(Protocol):
    """A front's growing answer: its text as it arrives, then how the answer ended."""

    @property
    def has_shown_anything(self) -> bool:
        """Whether an ending would be shown under something: else it is said on its own."""
        ...

    async def started(self, session_id: str) -> None:
        """The turn is under way in `session_id` (what a ⏹ button stops): the model is being
        asked."""
        ...

    async def add(self, delta: str) -> None: ...

    async def finish(self, suffix: str = "", *, footer_line: str = "") -> None:
        """The answer is complete; `suffix` (may be empty: the reply's notices) goes right
        after its text, `footer_line` (may be empty) under both."""
        ...

    async def cut_off(self, notice: str) -> None:
        """The model's stream broke off: what was shown stays, followed by `notice`."""
        ...

    async def fail(self, reason: str) -> None:
        """An error ended the answer after something was shown: `reason` goes under it."""
        ...


async def stream_turn(
    reply: TurnReply,
    stream: AnswerStream,
    locale: str,
    *,
    say: Callable[[str], Awaitable[object]],
    footer: Callable[[Message | None], str] = lambda _: "",
    is_failure_logged: bool = True,
) -> None:
    """Stream the turn's answer into `stream`; `say` tells what `stream` has nowhere to show.

    A cut-off answer stays shown, marked incomplete, and a stopped one marked stopped; an error
    is added under what was shown (or streamed, for a turn ended mid-answer), or said on its
    own; an empty answer is said to be empty. A complete answer has the turn's notices under
    it, a paragraph of their own.
    """
    if reply.preface:  # what was heard in a voice message, and the like: first, on its own
        await say(reply.preface)
    try:
        async with reply.turn as turn:
            await stream.started(turn.session.id)
            async for delta in turn.deltas():
                await stream.add(delta)
    except ModelStreamBroken:
        await stream.cut_off(text(locale, "reply_incomplete"))
        return
    except TurnStopped as stopped:
        # Stopped before a word: the /stop's own reply says it, nothing is left to mark.
        if stopped.partial_text.strip() or stream.has_shown_anything:
            await stream.cut_off(text(locale, "answer_stopped"))
        return
    except ChatbridgeError as error:
        if is_failure_logged:
            log.warning("turn.failed", code=error.code, reason=str(error))
        if stream.has_shown_anything or _ended_mid_answer(error):
            await stream.fail(describe(error, locale))
        else:
            await say(describe(error, locale))
        return
    await stream.finish(notices_paragraph(turn, locale), footer_line=footer(turn.reply))
    if not stream.has_shown_anything:
        await say(text(locale, "empty_answer"))


def notices_paragraph(turn: Turn, locale: str) -> str:
    """What the answer tells besides (Turn.notices), a paragraph after it; '' for nothing."""
    lines = [
        notice_text(locale, notice, expired_after=turn.expired_after) for notice in turn.notices
    ]
    return "\n\n" + "\n".join(lines) if lines else ""


def _ended_mid_answer(error: ChatbridgeError) -> bool:
    """Whether the turn was ended after text arrived: that text stays, even when the front had
    not shown it yet (a quick answer waits for its first preview), with the reason under it."""
    if isinstance(error, TurnInterrupted | TurnLockLost | TurnTimeout):
        return bool(error.partial_text)
    return False
