"""One answer streamed into a chat: a message sent at the first text, then edited as more
arrives, continued in further messages past the platform's limit.

The lifecycle is the same on every chat platform, and lives here once: a "typing" hint until
something is shown, previews paced per chat (one on its way at a time, each in the background,
skipped when the platform is busy), then the whole text, retried until it is delivered. A
platform supplies only what differs: a `ReplyStream` subclass (how to split the text, send a
part, edit it and show "typing", and what edits are paced per) and a `RetryPolicy` (which
failed requests are worth another attempt, and how long to wait first).
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Generic, Self, TypeVar

from bots.chatfront.pacing import ChatPacer
from bots.chatfront.streaming import FIRST_PREVIEW_AFTER_SECONDS, TypingHint
from bots.chatfront.text_split import close_open_code_block

Handle = TypeVar("Handle")  # a sent message, as the platform needs it to edit that message
PlatformError = TypeVar("PlatformError", bound=Exception)
T = TypeVar("T")

PREVIEW_MARK = " …"  # after a preview's last words: more is coming
# A platform cuts its parts this much short of its limit, so that a preview's closing code fence
# and PREVIEW_MARK still fit.
PREVIEW_ROOM = 16


class RetryPolicy(ABC, Generic[PlatformError]):
    """Which failed requests to a platform are worth another attempt, and when."""

    @property
    @abstractmethod
    def error_type(self) -> type[PlatformError]:
        """What the platform's client raises for a failed request."""

    @property
    @abstractmethod
    def attempts(self) -> int:
        """How many times a final text is tried before its error is raised."""

    @abstractmethod
    def is_retryable(self, error: PlatformError) -> bool:
        """False for a request that would be refused again (it is raised at once)."""

    @abstractmethod
    def seconds_before_retry(self, error: PlatformError, attempt: int) -> float:
        """How long to wait after attempt number `attempt` (from 1) failed with `error`."""

    @abstractmethod
    def note_retry(self, error: PlatformError, attempt: int, seconds: float) -> None:
        """Log that attempt number `attempt` failed and the next follows in `seconds`."""


async def until_delivered(
    attempt: Callable[[], Awaitable[T]], policy: RetryPolicy[PlatformError]
) -> T:
    """`attempt()`'s result, tried again while it fails in a way `policy` finds worth retrying:
    a final text must not be lost to a rate limit or to the platform's own failure."""
    for number in range(1, policy.attempts + 1):
        try:
            return await attempt()
        except policy.error_type as error:
            if number == policy.attempts or not policy.is_retryable(error):
                raise
            seconds = policy.seconds_before_retry(error, number)
            policy.note_retry(error, number, seconds)
            await asyncio.sleep(seconds)
    raise AssertionError("unreachable: the last attempt returns or raises")


@dataclass
class _Part(Generic[Handle]):
    """A message of the answer and the text it shows now."""

    handle: Handle
    shown: str


class ReplyStream(ABC, Generic[Handle, PlatformError]):
    """`async with Stream(...) as stream: await stream.add(d) ...; await stream.finish()`.

    Previews are sent in the background, at most one per edit interval of the chat: the model
    is read on while a preview is on its way, so a slow platform slows only the previews.

    A platform's stream passes its pacer, typing interval and `RetryPolicy` to `__init__` and
    implements the abstract methods; `Handle` is what its `_send` returns and `_edit` takes.
    """

    def __init__(
        self,
        pacer: ChatPacer,
        *,
        typing_every: float,
        retries: RetryPolicy[PlatformError],
        first_preview_after: float = FIRST_PREVIEW_AFTER_SECONDS,
    ) -> None:
        self.pacer = pacer
        self.text = ""
        self._retries = retries
        self._first_preview_after = first_preview_after
        self._parts: list[_Part[Handle]] = []
        # Over once anything is shown, by whatever a platform shows first (a Telegram draft).
        self._typing = TypingHint(
            self._show_typing, every=typing_every, is_over=lambda: self.has_shown_anything
        )
        self._preview: asyncio.Task[None] | None = None
        self._is_preview_sending = False
        self.stoppable = ""  # the session whose answer this is, once its turn began: for ⏹

    # What each platform supplies.

    @property
    @abstractmethod
    def _pace_key(self) -> Hashable:
        """What edits are paced per: the chat or channel."""

    @abstractmethod
    def _parts_of(self, text: str) -> list[str]:
        """`text` split into messages, each PREVIEW_ROOM short of the platform's limit."""

    @abstractmethod
    async def _send(self, text: str, *, is_preview: bool) -> Handle | None:
        """Send `text` as the answer's next message; None when nothing was sent. A preview
        (the growing end of an answer) carries the ⏹ button that stops it (`stoppable`)."""

    @abstractmethod
    async def _edit(self, handle: Handle, text: str, *, is_preview: bool) -> None:
        """Show `text` in the answer's message `handle` instead of what it shows now; with
        the ⏹ button only as a preview."""

    @abstractmethod
    async def _show_typing(self) -> None: ...

    @abstractmethod
    def _part_failed(self, error: PlatformError, *, is_final: bool) -> None:
        """A part was not shown for an error worth retrying: a preview is skipped after this,
        a final text (out of attempts) raises `error` after this."""

    # The lifecycle, the same everywhere.

    async def __aenter__(self) -> Self:
        self._typing.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._typing.stop()
        await self._drop_preview()

    @property
    def has_shown_anything(self) -> bool:
        return bool(self._parts)

    async def started(self, session_id: str) -> None:
        # The "typing" hint, from __aenter__, is all a chat shows before the text.
        self.stoppable = session_id

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

    async def finish(self, suffix: str = "", *, footer_line: str = "") -> None:
        """Deliver the whole text, plus `suffix` and a footer line, retrying until it lands."""
        await self._settle_preview()
        await self._typing.stop()
        self.text += suffix
        if not self.text.strip():
            return
        if footer_line:
            self.text = close_open_code_block(self.text) + "\n" + footer_line
        if self._parts:  # an edit: it waits its turn like the previews did
            await self.pacer.wait_for_slot(self._pace_key)
        else:
            self.pacer.edited(self._pace_key)
        await self._show(is_final=True)

    async def cut_off(self, notice: str) -> None:
        await self.finish("\n\n" + notice)

    async def fail(self, reason: str) -> None:
        await self.finish("\n\n⚠️ " + reason)

    async def _show_first_preview(self) -> None:
        """The first text waits a moment: an answer complete by then is sent whole, as one
        message that never needs an edit (the chat's next edit slot can be a second away)."""
        await asyncio.sleep(self._first_preview_after)
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

    async def _show(self, *, is_final: bool) -> None:
        parts = self._parts_of(self.text)
        for index, part in enumerate(parts):
            is_preview = not is_final and index == len(parts) - 1
            shown = close_open_code_block(part) + PREVIEW_MARK if is_preview else part
            try:
                if is_final:
                    show = partial(self._show_part, index, shown, is_preview=False)
                    await until_delivered(show, self._retries)
                else:
                    await self._show_part(index, shown, is_preview=is_preview)
            except self._retries.error_type as error:
                if not self._retries.is_retryable(error):
                    raise
                self._part_failed(error, is_final=is_final)
                if is_final:
                    raise  # until_delivered already waited as long as it should
                return  # a skipped preview is harmless: the final text follows

    async def _show_part(self, index: int, shown: str, *, is_preview: bool) -> None:
        if index >= len(self._parts):
            handle = await self._send(shown, is_preview=is_preview)
            if handle is not None:
                self._parts.append(_Part(handle, shown))
            return
        part = self._parts[index]
        if part.shown != shown:
            await self._edit(part.handle, shown, is_preview=is_preview)
            part.shown = shown
