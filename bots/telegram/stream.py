"""Showing a growing answer in Telegram: one message sent at the first text, then edited.
(A private chat's answer is shown as drafts instead: `bots/telegram/drafts.py`.)

Edits are paced per chat (TELEGRAM_EDIT_INTERVAL) because Telegram limits edits per chat, and
a 429 (`RetryAfter`) only skips previews: the final text is always delivered, waiting as long
as Telegram asks. Past 4096 characters the answer continues in further messages, split at
paragraph or code-block boundaries. Markdown is shown as Telegram HTML; if Telegram still
rejects the markup, the plain text goes instead.

In a forum, everything names the topic (`thread_id`): Telegram puts a reply in the topic of the
message it answers, but the further parts, the "typing" hint and a reply whose question was
deleted meanwhile would otherwise land in "General".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Hashable
from functools import partial

import structlog
from telegram import Bot, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, RetryAfter

from bots.chatfront import reply_stream
from bots.chatfront.pacing import ChatPacer
from bots.chatfront.reply_stream import PREVIEW_ROOM, RetryPolicy, until_delivered
from bots.chatfront.streaming import FIRST_PREVIEW_AFTER_SECONDS
from bots.chatfront.text_split import split_message
from bots.telegram.buttons import keyboard
from bots.telegram.render import plain_text, to_telegram_html, visible_length
from core.commands import Choice

log = structlog.get_logger(__name__)

MESSAGE_LIMIT = 4096
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


class FloodControl(RetryPolicy[RetryAfter]):
    """Telegram's 429 says how long to wait: waited out, FINAL_ATTEMPTS tries in all."""

    error_type = RetryAfter
    attempts = FINAL_ATTEMPTS

    def is_retryable(self, error: RetryAfter) -> bool:
        return True

    def seconds_before_retry(self, error: RetryAfter, attempt: int) -> float:
        return seconds_of(error.retry_after)

    def note_retry(self, error: RetryAfter, attempt: int, seconds: float) -> None:
        log.warning("telegram.flood_wait", seconds=seconds, attempt=attempt)


FLOOD_CONTROL = FloodControl()


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
    thread_id: int | None = None,
    reply_to: int | None = None,
    markup: InlineKeyboardMarkup | None = None,
) -> list[Message]:
    """A finished reply, split past 4096 characters; buttons go under the last part."""
    parts = telegram_parts(markdown) or ["…"]
    sent = []
    for index, part in enumerate(parts):
        is_last = index == len(parts) - 1
        send = _sender(bot, chat_id, thread_id, reply_to, markup if is_last else None)
        message = await until_delivered(partial(deliver, send, part), FLOOD_CONTROL)
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
    thread_id: int | None = None,
    reply_to: int | None = None,
) -> Message | None:
    """A file under a caption (Markdown, shown as HTML), retried through flood control."""

    async def send(shown: str, mode: ParseMode | None) -> Message:
        return await bot.send_document(
            chat_id, content, filename=filename, caption=shown, parse_mode=mode,
            message_thread_id=thread_id, reply_parameters=_replying_to(reply_to),
        )  # fmt: skip

    sent = await until_delivered(partial(deliver, send, caption), FLOOD_CONTROL)
    return sent if isinstance(sent, Message) else None


def _sender(
    bot: Bot,
    chat_id: int,
    thread_id: int | None,
    reply_to: int | None,
    markup: InlineKeyboardMarkup | None,
) -> Deliver:
    async def send(text: str, mode: ParseMode | None) -> Message:
        return await bot.send_message(
            chat_id, text, parse_mode=mode, message_thread_id=thread_id,
            reply_parameters=_replying_to(reply_to), reply_markup=markup,
        )  # fmt: skip

    return send


class ReplyStream(reply_stream.ReplyStream[int, RetryAfter]):
    """`async with ReplyStream(...) as stream: await stream.add(d) ...; await stream.finish()`.

    A part is known by its message id.
    """

    def __init__(
        self,
        bot: Bot,
        chat_id: int,
        pacer: ChatPacer,
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
        stop_label: str = "⏹",
        owner: int | None = None,
        first_preview_after: float = FIRST_PREVIEW_AFTER_SECONDS,
    ) -> None:
        self.bot, self.chat_id, self.thread_id, self.reply_to = bot, chat_id, thread_id, reply_to
        # The ⏹ button under a preview is the asker's, as every button is (buttons.py).
        self._stop_label, self._owner = stop_label, owner
        super().__init__(
            pacer, typing_every=TYPING_EVERY_SECONDS, retries=FLOOD_CONTROL,
            first_preview_after=first_preview_after,
        )  # fmt: skip

    @property
    def _pace_key(self) -> Hashable:
        return self.chat_id

    def _parts_of(self, text: str) -> list[str]:
        return telegram_parts(text)

    async def _send(self, text: str, *, is_preview: bool) -> int | None:
        reply_to = self.reply_to if not self._parts else None
        markup = self._stop_button(is_preview)
        send = _sender(self.bot, self.chat_id, self.thread_id, reply_to, markup)
        sent = await deliver(send, text)
        return sent.message_id if isinstance(sent, Message) else None

    async def _edit(self, handle: int, text: str, *, is_preview: bool) -> None:
        markup = self._stop_button(is_preview)  # None takes it away

        async def edit(shown: str, mode: ParseMode | None) -> Message | bool:
            return await self.bot.edit_message_text(
                shown, chat_id=self.chat_id, message_id=handle, parse_mode=mode,
                reply_markup=markup,
            )  # fmt: skip

        await deliver(edit, text)

    def _stop_button(self, is_preview: bool) -> InlineKeyboardMarkup | None:
        if not is_preview or not self.stoppable or self._owner is None:
            return None
        choice = Choice(self._stop_label, f"/stop {self.stoppable}")
        return keyboard((choice,), owner=self._owner)

    async def _show_typing(self) -> None:
        await self.bot.send_chat_action(
            self.chat_id, ChatAction.TYPING, message_thread_id=self.thread_id
        )

    def _part_failed(self, error: RetryAfter, *, is_final: bool) -> None:
        # No edit in this chat before Telegram allows one: the next preview would fail too.
        self.pacer.hold(self.chat_id, seconds_of(error.retry_after))


def _replying_to(message_id: int | None) -> ReplyParameters | None:
    """A reply that still goes out if the user deleted their message meanwhile."""
    if message_id is None:
        return None
    return ReplyParameters(message_id, allow_sending_without_reply=True)
