"""The Telegram front: python-telegram-bot in the service's own event loop.

Only translation lives here: who spoke (a `telegram:<id>` user), in which chat, forum topic and
language, the files they sent (photos, documents, voice notes, audio: bots/telegram/files.py;
an album's items as one message: bots/telegram/order.py), and how a core reply looks in
Telegram (HTML, split messages, inline buttons, answers streamed as drafts in private chats and
as paced edits elsewhere). Every reply goes to the topic the user wrote in.

Updates are handled concurrently across spaces (a chat, or a forum topic of one) and in order
within one; button taps at once, never behind a turn: Telegram gives up on an unanswered tap
after about 15 s.

Long polling by default; with TELEGRAM_WEBHOOK_URL, updates arrive through the aiohttp server.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import re
from typing import Any
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from telegram import BotCommand, Message, Update, User
from telegram.constants import ChatMemberStatus
from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bots.chatfront.access import AllowList, Platform
from bots.chatfront.pacing import ChatPacer
from bots.chatfront.startup import StartFailures, start_when_reachable
from bots.chatfront.streaming import stream_turn
from bots.runtime import Services
from bots.telegram.buttons import keyboard, read_tap
from bots.telegram.drafts import DraftChats, DraftReplyStream
from bots.telegram.files import (
    DownloadFailed,
    download,
    file_base_url,
    is_file_message,
    sent_files,
)
from bots.telegram.order import CONCURRENT_UPDATES, InOrderPerSpace, topic_of
from bots.telegram.stream import ReplyStream, send_document, send_text
from core.attachments.intake import IncomingFile
from core.commands import FileReply, Outcome, Reply, TurnReply, is_command
from core.errors import ChatbridgeError
from core.messages import COMMAND_DESCRIPTIONS, ENGLISH, PORTUGUESE, describe, text
from core.settings import Settings
from core.spaces import GroupSessions, Speaker, chat_of, group_speaker

log = structlog.get_logger(__name__)

WEBHOOK_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105  (a header name)
ALLOWED_UPDATES = ["message", "callback_query"]
TELEGRAM = Platform("telegram")
START_FAILURES = StartFailures(
    platform=TELEGRAM.name,
    refusal_hint="check TELEGRAM_BOT_TOKEN",
    token_refused=(InvalidToken,),
    unreachable=(NetworkError, RetryAfter),
)
TelegramApp = Application[Any, Any, Any, Any, Any, Any]


# Connections to the Bot API. httpcore scans every pooled connection (a readability syscall
# each) for every request it assigns, per queued request: PTB's default of 256 made that scan
# most of the CPU of a burst of 200 chats (5.8 ms an update against 2.2 with 16). Sixteen carry
# far more than the 30 messages a second Telegram takes from a bot; a request waits for one
# up to BOT_API_POOL_WAIT_SECONDS (PTB's default 1 s would drop messages in a burst).
BOT_API_CONNECTIONS = 16
BOT_API_POOL_WAIT_SECONDS = 10.0


class TelegramFront:
    def __init__(self, services: Services, settings: Settings) -> None:
        if settings.telegram_bot_token is None:
            raise ValueError("the Telegram front needs TELEGRAM_BOT_TOKEN")
        self._services = services
        self._token = settings.telegram_bot_token.get_secret_value()
        self._webhook_url = settings.telegram_webhook_url
        self._webhook_secret = _webhook_secret(settings, self._token)
        # Usernames may be listed as Telegram shows them, with their "@".
        self._allowed = AllowList(
            TELEGRAM, (entry.lstrip("@") for entry in settings.telegram_allowed_users)
        )
        self._pacer = ChatPacer(settings.telegram_edit_interval)
        self._drafts = DraftChats()
        self._group_sessions = settings.group_sessions
        self._max_file_bytes = settings.max_attachment_bytes
        self._is_stopping = False
        self._order = InOrderPerSpace(CONCURRENT_UPDATES)
        self.app = self._build(settings)
        # Its 429s are ours to handle (previews skipped, final text retried): not errors.
        logging.getLogger("telegram.ext.AIORateLimiter").setLevel(logging.CRITICAL)

    def _build(self, settings: Settings) -> TelegramApp:
        builder = (
            ApplicationBuilder()
            .token(self._token)
            .base_url(settings.telegram_api_base_url)
            .base_file_url(file_base_url(settings.telegram_api_base_url))
            .rate_limiter(AIORateLimiter())
            .concurrent_updates(self._order)
            .connection_pool_size(BOT_API_CONNECTIONS)
            .pool_timeout(BOT_API_POOL_WAIT_SECONDS)
        )
        if self._webhook_url:
            builder = builder.updater(None)
        app = builder.build()
        app.add_handler(CallbackQueryHandler(self._on_button))
        app.add_handler(MessageHandler(filters.TEXT, self._on_text))
        app.add_handler(MessageHandler(_FILES, self._on_files))
        app.add_handler(MessageHandler(~filters.TEXT & ~filters.StatusUpdate.ALL, self._on_other))
        app.add_error_handler(self._on_error)
        return app

    def http_routes(self) -> list[web.RouteDef]:
        """What the HTTP server serves for this front: the webhook, in webhook mode."""
        if not self._webhook_url:
            return []
        return [web.post(urlsplit(self._webhook_url).path or "/", self.webhook)]

    async def start(self) -> None:
        await self.app.initialize()
        await self._register_commands()
        if self._webhook_url:
            await self.app.bot.set_webhook(
                self._webhook_url,
                secret_token=self._webhook_secret,
                allowed_updates=ALLOWED_UPDATES,
            )
        elif self.app.updater is not None:
            await self.app.updater.start_polling(allowed_updates=ALLOWED_UPDATES)
        await self.app.start()
        log.info("telegram.started", bot=self.app.bot.username, webhook=bool(self._webhook_url))

    async def start_when_reachable(self) -> None:
        """Start, retrying while the Bot API cannot be reached; a refused token ends it."""
        await start_when_reachable(self.start, START_FAILURES)

    async def stop_taking_updates(self) -> None:
        """The service is stopping: long polling fetches no more (Telegram keeps the rest for
        the next poller), and the webhook answers 503 so Telegram delivers again later."""
        self._is_stopping = True
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()

    async def stop(self) -> None:
        """Stop once the updates taken are handled (python-telegram-bot waits for them)."""
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()
        if self.app.running:
            await self.app.stop()
        with contextlib.suppress(RuntimeError):  # never initialized: nothing to shut down
            await self.app.shutdown()

    async def webhook(self, request: web.Request) -> web.Response:
        """POSTs from Telegram, authenticated by the secret token set with setWebhook."""
        given = request.headers.get(WEBHOOK_SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self._webhook_secret.encode()):
            return web.json_response(
                {"error": {"code": "forbidden", "message": "Bad secret."}}, status=403
            )
        if self._is_stopping:
            return web.json_response(
                {"error": {"code": "service_stopping", "message": "Shutting down; send later."}},
                status=503,
            )
        update = await self._update_in(request)
        if update is None:
            return web.json_response(
                {"error": {"code": "bad_request", "message": "Not an Update object."}},
                status=400,
            )
        await self.app.update_queue.put(update)
        return web.Response(status=200)

    async def _update_in(self, request: web.Request) -> Update | None:
        """The posted Update, or None for a body that is not one (Telegram never sends such)."""
        try:
            data = await request.json()
            if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
                return None
            # python-telegram-bot reads fields without checking their types.
            return Update.de_json(data, self.app.bot)
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    async def _register_commands(self) -> None:
        for language, code in ((ENGLISH, None), (PORTUGUESE, "pt")):
            commands = [
                BotCommand(name, about) for name, about in COMMAND_DESCRIPTIONS[language].items()
            ]
            await self.app.bot.set_my_commands(commands, language_code=code)

    # --- handlers ------------------------------------------------------------------------------

    async def _on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Plain text and commands: to the core, if the message is for us and they may talk."""
        message, user = update.effective_message, update.effective_user
        typed = _typed_text(message)
        if message is None or user is None or typed is None:
            return
        if not self._is_for_us(message) or not await self._may_talk(message, user):
            return
        TELEGRAM.bind(user.id, message.chat_id)
        said = self._without_mention(typed)
        speaker = await self._speaker(message, user, said)
        outcome = await self._services.commands.handle(speaker, said, locale=_locale(user))
        await self._answer(outcome, message, user)

    async def _on_files(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Photos, documents, voice notes and audio, with or without a caption: to the core as
        one message (an album's items together), the caption its words, as text goes."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        album = await self._order.albums.gather(message)
        if not any(self._is_for_us(item) for item in album):
            return  # [] too: taken with an earlier item of its album
        if not await self._may_talk(message, user):
            return
        TELEGRAM.bind(user.id, message.chat_id)
        said = self._without_mention("\n\n".join(item.caption for item in album if item.caption))
        files = await self._files_of(album, message, _locale(user))
        if files is None:
            return
        speaker = await self._speaker(message, user, said)
        outcome = await self._services.commands.handle(
            speaker, said, locale=_locale(user), files=files
        )
        await self._answer(outcome, message, user)

    async def _files_of(
        self, album: list[Message], message: Message, locale: str
    ) -> list[IncomingFile] | None:
        """The files' bytes; None when they are refused, after saying why under `message`."""
        try:
            sent = sent_files(album, max_bytes=self._max_file_bytes)
            return await download(self.app.bot, sent, max_bytes=self._max_file_bytes)
        except ChatbridgeError as refused:  # too many, too large: before any download
            said = describe(refused, locale)
        except DownloadFailed as failed:
            said = text(locale, failed.key)
        await send_text(self.app.bot, message.chat_id, said, thread_id=topic_of(message),
                        reply_to=message.message_id)  # fmt: skip
        return None

    async def _answer(self, outcome: Outcome, message: Message, user: User) -> None:
        """What the core made of `message`: a streamed answer, or a reply to it."""
        if isinstance(outcome, TurnReply):
            await self._stream(outcome, message, user)
        else:
            await self._reply(outcome, message, user, reply_to=message.message_id)

    async def _on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A tap on a choice: answered first (Telegram waits for that), then the keyboard
        closes and its command runs as if typed. Someone else's buttons: a toast, no change."""
        query, user = update.callback_query, update.effective_user
        if query is None or user is None:
            return
        tap = read_tap(query.data)
        if tap.is_refused_to(user.id):
            await query.answer(text(_locale(user), "not_your_buttons"))
            return
        await query.answer()
        message = query.message
        if not isinstance(message, Message):
            return
        with contextlib.suppress(BadRequest):  # already closed by an earlier tap
            await message.edit_reply_markup(None)
        if tap.command is None or not await self._may_talk(message, user):
            return
        TELEGRAM.bind(user.id, message.chat_id)
        speaker = await self._speaker(message, user, tap.command)
        outcome = await self._services.commands.handle(speaker, tap.command, locale=_locale(user))
        if is_command(tap.command, "stop") and isinstance(outcome, Reply) and not outcome.is_error:
            return  # ⏹ under an answer: the answer itself shows it stopped
        if isinstance(outcome, TurnReply):
            await self._stream(outcome, message, user)
        else:
            await self._reply(outcome, message, user)  # in the tapped message's topic

    async def _on_other(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Stickers, videos, locations and the like: a short polite answer, where we were
        addressed (a video's caption is not answered alone: it is about the video)."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or not self._is_for_us(message):
            return
        if not await self._may_talk(message, user):
            return
        await send_text(self.app.bot, message.chat_id, text(_locale(user), "not_text"),
                        thread_id=topic_of(message), reply_to=message.message_id)  # fmt: skip

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log with the traceback; tell the user something went wrong, never leave them waiting."""
        log.error("telegram.handler_failed", exc_info=context.error)
        if isinstance(update, Update) and update.effective_chat is not None:
            locale = _locale(update.effective_user)
            topic = topic_of(update.effective_message)
            try:
                await send_text(self.app.bot, update.effective_chat.id, text(locale, "unexpected"),
                                thread_id=topic)  # fmt: skip
            except Exception:
                log.exception("telegram.error_reply_failed")

    # --- replies -------------------------------------------------------------------------------

    async def _reply(
        self,
        reply: Reply | FileReply,
        where: Message,
        user: User,
        *,
        reply_to: int | None = None,
    ) -> None:
        """`reply` to `user` in the chat and topic of `where`; its buttons are theirs only."""
        chat_id, topic = where.chat_id, topic_of(where)
        if isinstance(reply, FileReply):
            await send_document(
                self.app.bot, chat_id, reply.content, filename=reply.filename,
                caption=reply.caption, thread_id=topic, reply_to=reply_to,
            )  # fmt: skip
            return
        markup = keyboard(reply.choices, owner=user.id) if reply.choices else None
        await send_text(self.app.bot, chat_id, reply.text, thread_id=topic, reply_to=reply_to,
                        markup=markup)  # fmt: skip

    async def _stream(self, reply: TurnReply, message: Message, user: User) -> None:
        topic = topic_of(message)

        async def say(said: str) -> None:
            await send_text(self.app.bot, message.chat_id, said, thread_id=topic,
                            reply_to=message.message_id)  # fmt: skip

        async with self._reply_stream(message, user) as stream:
            await stream_turn(reply, stream, _locale(user), say=say)

    def _reply_stream(self, message: Message, user: User) -> ReplyStream:
        """Drafts in a private chat (unless Telegram refused them there), paced edits elsewhere:
        Telegram takes drafts for private chats only. A draft carries no button: ⏹ comes
        under edited previews (a private chat has /stop in its command menu)."""
        chat_id, topic, reply_to = message.chat_id, topic_of(message), message.message_id
        stop_label = text(_locale(user), "stop_button")
        if message.chat.type == "private" and self._drafts.allow(chat_id):
            return DraftReplyStream(
                self.app.bot, chat_id, self._pacer, self._drafts, thread_id=topic,
                reply_to=reply_to, stop_label=stop_label, owner=user.id,
            )  # fmt: skip
        return ReplyStream(
            self.app.bot, chat_id, self._pacer, thread_id=topic, reply_to=reply_to,
            stop_label=stop_label, owner=user.id,
        )  # fmt: skip

    # --- who may talk, and when we are addressed ------------------------------------------------

    async def _speaker(self, message: Message, user: User, said: str) -> Speaker:
        """`user` in the space `message` was said in: their own in a private chat; in a group
        or forum topic, theirs there or the chat's (GROUP_SESSIONS)."""
        person = TELEGRAM.user_id(user.id)
        if message.chat.type == "private":
            return Speaker.alone(person)
        chat = chat_of(TELEGRAM.name, message.chat_id, topic_of(message))
        mode = self._group_sessions
        # Asked only when it matters: a Bot API call per message would slow every group.
        is_admin = (
            mode is GroupSessions.SHARED
            and any(is_command(said, name) for name in ("delete", "rename"))
            and await self._is_chat_admin(message.chat_id, user.id)
        )
        return group_speaker(person, chat, mode, author=user.full_name, is_chat_admin=is_admin)

    async def _is_chat_admin(self, chat_id: int, user_id: int) -> bool:
        member = await self.app.bot.get_chat_member(chat_id, user_id)
        return member.status in (ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR)

    def _is_for_us(self, message: Message) -> bool:
        """In private chats, always; in groups, commands, mentions and replies to us."""
        if message.chat.type == "private":
            return True
        username = (self.app.bot.username or "").lower()
        said = (message.text or message.caption or "").lower()
        if said.startswith("/"):
            command = said.split()[0]
            return "@" not in command or command.endswith("@" + username)
        if username and "@" + username in said:
            return True
        replied = message.reply_to_message
        return bool(replied and replied.from_user and replied.from_user.id == self.app.bot.id)

    async def _may_talk(self, message: Message, user: User) -> bool:
        if self._allowed.admits(user.id, user.username):
            return True
        await send_text(self.app.bot, message.chat_id, text(_locale(user), "not_allowed"),
                        thread_id=topic_of(message), reply_to=message.message_id)  # fmt: skip
        return False

    def _without_mention(self, said: str) -> str:
        username = self.app.bot.username
        if username and not said.startswith("/"):
            said = re.sub(re.escape("@" + username), "", said, flags=re.IGNORECASE).strip()
        return said


def _typed_text(message: Message | None) -> str | None:
    """What the user typed: a text message's text, or the caption under an attachment."""
    if message is None:
        return None
    return message.text if message.text is not None else message.caption


class _FileFilter(filters.MessageFilter):
    """Messages carrying a file we take (bots/telegram/files.py)."""

    def filter(self, message: Message) -> bool:
        return is_file_message(message)


_FILES = _FileFilter(name="chatbridge files")


def _locale(user: User | None) -> str:
    return user.language_code or ENGLISH if user else ENGLISH


def _webhook_secret(settings: Settings, token: str) -> str:
    """TELEGRAM_WEBHOOK_SECRET, else one derived from the token (the same on every replica)."""
    if settings.telegram_webhook_secret is not None:
        return settings.telegram_webhook_secret.get_secret_value()
    return hashlib.sha256(b"chatbridge-webhook:" + token.encode()).hexdigest()
