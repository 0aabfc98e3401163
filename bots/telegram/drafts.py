"""A private chat's answer shown as a draft while it is written (Bot API `sendMessageDraft`).

A draft sits at the bottom of a private chat, and each newer text under the same draft id is
animated in: no message is sent until the answer is complete, so nothing is edited and the
edit pacing (TELEGRAM_EDIT_INTERVAL, which Telegram's per-chat edit limits call for) does not
apply. A draft is not a message: it vanishes 30 s after the last one and as soon as the bot
sends the chat a message, so the finished answer goes out as messages, split past 4096
characters, with the same text, HTML, notices and error endings as the edit path's last edit.

Drafts are still coalesced, to one every DRAFT_INTERVAL seconds per answer with one on its way
at a time (a slower Bot API gets fewer): each draft is a request, and python-telegram-bot's
AIORateLimiter holds the whole bot to 30 requests a second, drafts and every chat's final
messages alike; a draft per token would queue other chats' answers behind one chat's drafts,
for no visible gain (clients fade the new characters in). While an answer is longer than one
message, the draft shows its last part.

Telegram refuses drafts outside private chats (`TEXTDRAFT_PEER_INVALID`), so groups (their
forum topics too) never try them, and it may refuse them for a private chat too; a Bot API
server older than 9.3 answers 404 (`InvalidToken` in python-telegram-bot). After any such
refusal the chat streams as edits for the rest of the process (remembered in memory, the oldest
forgotten past REFUSALS_KEPT chats), starting with the answer that was refused: its text so far
is sent as the first message, then edited as on the edit path. A draft is never a message, so
nothing is lost or shown twice.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import OrderedDict

import structlog
from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import BadRequest, InvalidToken, RetryAfter

from bots.chatfront.pacing import ChatPacer
from bots.chatfront.text_split import close_open_code_block
from bots.telegram.stream import ReplyStream, deliver, seconds_of

log = structlog.get_logger(__name__)

# About three drafts a second at most, smooth with the clients' fade-in. The first comes this
# long after the first text (the edit path's first message: 0.5 s): an answer complete by then
# is one message and no draft.
DRAFT_INTERVAL = 0.3
REFUSALS_KEPT = 10_000  # chats remembered to have refused drafts (a few hundred kB at most)


class DraftChats:
    """Which private chats take drafts: every one, until Telegram refuses drafts there."""

    def __init__(self, *, capacity: int = REFUSALS_KEPT) -> None:
        self._capacity = capacity
        self._refused: OrderedDict[int, None] = OrderedDict()
        # Non-zero, as Telegram requires; from a random start, so that two replicas answering
        # one chat at once (webhook mode) do not animate into each other's draft.
        self._draft_ids = itertools.count(secrets.randbelow(2**40) + 1)

    def allow(self, chat_id: int) -> bool:
        return chat_id not in self._refused

    def refuse(self, chat_id: int) -> None:
        """Drafts were refused there; past the capacity the oldest refusal is forgotten (that
        chat tries a draft once more, and falls back again if it is still refused)."""
        self._refused[chat_id] = None
        self._refused.move_to_end(chat_id)
        while len(self._refused) > self._capacity:
            self._refused.popitem(last=False)

    def new_draft_id(self) -> int:
        return next(self._draft_ids)


class DraftReplyStream(ReplyStream):
    """A private chat's answer: drafts while it grows, then messages; paced edits once
    Telegram refuses drafts. `pacer` is the chat's edit pacer, for that fallback."""

    def __init__(
        self,
        bot: Bot,
        chat_id: int,
        pacer: ChatPacer,
        drafts: DraftChats,
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
        stop_label: str = "⏹",
        owner: int | None = None,
    ) -> None:
        # Its own pacer: drafts are paced per answer, and a private chat streams one at a time.
        # The ⏹ is for the edits this answer falls back to, if Telegram refuses its drafts.
        super().__init__(
            bot, chat_id, ChatPacer(DRAFT_INTERVAL), thread_id=thread_id, reply_to=reply_to,
            stop_label=stop_label, owner=owner, first_preview_after=DRAFT_INTERVAL,
        )  # fmt: skip
        self._edit_pacer = pacer
        self._drafts = drafts
        self._draft_ids: list[int] = []  # one per part: a new part is a new draft, not an edit
        self._drafted: tuple[int, str] | None = None  # (part, text) of the draft last shown
        self._is_drafting = True
        self._drafts_resume_at = 0.0  # time.monotonic() before which no draft is tried

    @property
    def has_shown_anything(self) -> bool:
        return self._drafted is not None or super().has_shown_anything

    async def _show(self, *, is_final: bool) -> None:
        if is_final or not self._is_drafting:
            await super()._show(is_final=is_final)
            return
        if time.monotonic() < self._drafts_resume_at:
            return  # skipped: Telegram asked for a pause (a 429) that is not over
        try:
            await self._show_draft()
        except RetryAfter as error:
            # Skipped, as a preview is; the pacer's hold alone would not do: the first draft's
            # delay restarts the pacer, and a 429 can come before any draft was shown.
            self._drafts_resume_at = time.monotonic() + seconds_of(error.retry_after)
            self._part_failed(error, is_final=False)
        except (BadRequest, InvalidToken) as error:  # markup refusals were retried as plain text
            await self._continue_with_edits(error)

    async def _show_draft(self) -> None:
        parts = self._parts_of(self.text)
        if not parts:
            return
        index = len(parts) - 1
        while len(self._draft_ids) <= index:
            self._draft_ids.append(self._drafts.new_draft_id())
        # No PREVIEW_MARK: a draft is plainly still being written, and a mark at its end would
        # be faded in again with every draft.
        shown = close_open_code_block(parts[index])
        if self._drafted == (index, shown):
            return
        draft_id = self._draft_ids[index]

        async def draft(text: str, mode: ParseMode | None) -> bool:
            return await self.bot.send_message_draft(
                self.chat_id, draft_id, text, message_thread_id=self.thread_id, parse_mode=mode
            )

        await deliver(draft, shown)
        self._drafted = (index, shown)

    async def _continue_with_edits(self, error: BadRequest | InvalidToken) -> None:
        """This chat refuses drafts: this answer and the chat's next ones stream as edits, from
        a first message with all the text so far."""
        log.warning("telegram.drafts_refused", reason=str(error))
        self._drafts.refuse(self.chat_id)
        self._is_drafting = False
        self.pacer = self._edit_pacer
        self.pacer.edited(self.chat_id)  # the first message counts as the chat's edit
        await super()._show(is_final=False)
