"""Showing a growing answer in Telegram: one message sent at the first text, then edited.

Edits are paced per chat (TELEGRAM_EDIT_INTERVAL) because Telegram limits edits per chat, and
a 429 (`RetryAfter`) only skips previews: the final text is always delivered, waiting as long
as Telegram asks. Past 4096 characters the answer continues in further messages, split at
paragraph or code-block boundaries. Markdown is shown as Telegram HTML; if Telegram still
rejects the markup, the plain text goes instead.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from types import TracebackType

import structlog
from telegram import Bot, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, RetryAfter

from bots.chatfront.pacing import ChatPacer
from bots.chatfront.streaming import PacedPreviews, TypingHint
from bots.chatfront.text_split import close_open_code_block, split_message
from bots.telegram.render import plain_text, to_telegram_html, visible_length

log = structlog.get_logger(__name__)

MESSAGE_LIMIT = 4096
# Parts are cut this much short so that a preview's closing fence and " …" still fit.
PREVIEW_ROOM = 16
PART_LIMIT = MESSAGE_LIMIT - PREVIEW_ROOM
TYPING_EVERY_SECONDS = 4.0  # Telegram shows "typing" for 5 s
FINAL_ATTEMPTS = 6
Deliver = Callable[[str, ParseMode | None], Awaitable[Message | bool]]


def telegram_parts(markdown: str) -> list[str]:
    """Split for Telegram, which counts UTF-16 units: an emoji counts twice there.

    A part that is over in UTF-16 is split again at half the limit, where even a text of
    nothing but emoji fits.
    """
    parts = []
    for part in split_message(markdown, PART_LIMIT):
        if len(part.encode("utf-16-le")) // 2 > PART_LIMIT:
            parts.extend(split_message(part, PART_LIMIT // 2))
        else:
            parts.append(part)
    return parts


def seconds_of(retry_after: int | float | dt.timedelta) -> float:
    if isinstance(retry_after, dt.timedelta):
        return retry_after.total_seconds()
    return float(retry_after)


async def deliver(action: Deliver, markdown: str) -> Message | bool | None:
    """Send or edit as HTML; plain text if Telegram cannot parse it; None if nothing changed."""
    html = to_telegram_html(markdown)
    if visible_length(html) == 0:  # e.g. an empty code block: Telegram refuses empty text
        return await action("…", None)
    try:
        return await action(html, ParseMode.HTML)
    except BadRequest as error:
        reason = str(error).lower()
        if "message is not modified" in reason:
            return None
        if "can't parse entities" not in reason:
            raise
        log.warning("telegram.markup_rejected", reason=str(error))
        return await action(plain_text(markdown), None)


async def send_text(
    bot: Bot,
    chat_id: int,
    markdown: str,
    *,
    reply_to: int | None = None,
    markup: InlineKeyboardMarkup | None = None,
) -> list[Message]:
    """A finished reply, split past 4096 characters; buttons go under the last part."""
    parts = telegram_parts(markdown) or ["…"]
    sent = []
    for index, part in enumerate(parts):
        is_last = index == len(parts) - 1
        send = _sender(bot, chat_id, reply_to, markup if is_last else None)
        message = await _until_delivered(lambda send=send, part=part: deliver(send, part))  # type: ignore[misc]
        if isinstance(message, Message):
            sent.append(message)
    return sent


async def send_document(
    bot: Bot,
    chat_id: int,
    content: bytes,
    *,
    filename: str,
    caption: str,
    reply_to: int | None = None,
) -> Message | None:
    """A file under a caption (Markdown, shown as HTML), retried through flood control."""

    async def send(shown: str, mode: ParseMode | None) -> Message:
        return await bot.send_document(
            chat_id, content, filename=filename, caption=shown, parse_mode=mode,
            reply_parameters=_replying_to(reply_to),
        )  # fmt: skip

    sent = await _until_delivered(lambda: deliver(send, caption))
    return sent if isinstance(sent, Message) else None


def _sender(
    bot: Bot, chat_id: int, reply_to: int | None, markup: InlineKeyboardMarkup | None
) -> Deliver:
    async def send(text: str, mode: ParseMode | None) -> Message:
        return await bot.send_message(
            chat_id, text, parse_mode=mode, reply_parameters=_replying_to(reply_to),
            reply_markup=markup,
        )  # fmt: skip

    return send


@dataclass
class _Part:
    message_id: int
    shown: str


@dataclass
class ReplyStream(PacedPreviews):
    """`async with ReplyStream(...) as stream: await stream.add(d) ...; await stream.finish()`."""

    bot: Bot
    chat_id: int
    pacer: ChatPacer
    reply_to: int | None = None
    text: str = ""
    _parts: list[_Part] = field(default_factory=list)
    _typing: TypingHint = field(init=False)

    def __post_init__(self) -> None:
        self._typing = TypingHint(
            self._send_typing, every=TYPING_EVERY_SECONDS, is_over=lambda: bool(self._parts)
        )

    async def __aenter__(self) -> ReplyStream:
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

    @property
    def _pace_key(self) -> Hashable:
        return self.chat_id

    async def finish(self, suffix: str = "", *, footer_line: str = "") -> None:
        """Deliver the whole text (plus `suffix` and a footer line), however long Telegram makes
        us wait."""
        await self._settle_preview()
        await self._typing.stop()
        self.text += suffix
        if footer_line and self.text.strip():
            self.text = close_open_code_block(self.text) + "\n" + footer_line
        if self.text.strip():
            if self._parts:  # an edit: it waits its turn like the previews did
                await self.pacer.wait_for_slot(self.chat_id)
            else:
                self.pacer.edited(self.chat_id)
            await self._show(is_final=True)

    async def _show(self, *, is_final: bool) -> None:
        parts = telegram_parts(self.text)
        for index, part in enumerate(parts):
            is_preview = not is_final and index == len(parts) - 1
            shown = close_open_code_block(part) + " …" if is_preview else part
            try:
                await self._show_part(index, shown, is_final=is_final)
            except RetryAfter as error:
                self.pacer.hold(self.chat_id, seconds_of(error.retry_after))
                if is_final:
                    raise  # _until_delivered already waited as long as it should
                return  # a skipped preview is harmless: the final text follows

    async def _show_part(self, index: int, shown: str, *, is_final: bool) -> None:
        if index < len(self._parts) and self._parts[index].shown == shown:
            return
        if index < len(self._parts):
            action = self._edit_action(self._parts[index].message_id)
        else:
            action = self._send_action()
        if is_final:
            result = await _until_delivered(lambda: deliver(action, shown))
        else:
            result = await deliver(action, shown)
        if isinstance(result, Message) and index >= len(self._parts):
            self._parts.append(_Part(result.message_id, shown))
        elif index < len(self._parts):
            self._parts[index].shown = shown

    async def _send_typing(self) -> None:
        await self.bot.send_chat_action(self.chat_id, ChatAction.TYPING)

    def _send_action(self) -> Deliver:
        async def send(text: str, mode: ParseMode | None) -> Message:
            reply_to = self.reply_to if not self._parts else None
            return await self.bot.send_message(
                self.chat_id, text, parse_mode=mode, reply_parameters=_replying_to(reply_to)
            )

        return send

    def _edit_action(self, message_id: int) -> Deliver:
        async def edit(text: str, mode: ParseMode | None) -> Message | bool:
            return await self.bot.edit_message_text(
                text, chat_id=self.chat_id, message_id=message_id, parse_mode=mode
            )

        return edit


def _replying_to(message_id: int | None) -> ReplyParameters | None:
    """A reply that still goes out if the user deleted their message meanwhile."""
    if message_id is None:
        return None
    return ReplyParameters(message_id, allow_sending_without_reply=True)


async def _until_delivered(
    attempt: Callable[[], Awaitable[Message | bool | None]],
) -> Message | bool | None:
    """Retry through flood control: a final text must not be lost to a 429."""
    for number in range(1, FINAL_ATTEMPTS + 1):
        try:
            return await attempt()
        except RetryAfter as error:
            if number == FINAL_ATTEMPTS:
                raise
            wait = seconds_of(error.retry_after)
            log.warning("telegram.flood_wait", seconds=wait, attempt=number)
            await asyncio.sleep(wait)
    raise AssertionError("unreachable: the last attempt returns or raises")
