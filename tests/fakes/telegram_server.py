"""A strict stand-in for the Telegram Bot API (`/bot<token>/<method>`), served on 127.0.0.1.

It answers in the real shapes (`{"ok": true, "result": ...}`, or `{"ok": false, "error_code",
"description"}` with Telegram's own wording) and refuses what Telegram refuses: a wrong token
(401), an unknown method (404), a chat it has never seen, empty or over-long text (counted after
HTML parsing, see `telegram_html`), broken HTML, callback data over 64 bytes, an edit that
changes nothing, getUpdates while a webhook is set or while another getUpdates is waiting,
a sendDocument without a non-empty upload (or a file_id it issued), an upload over 50 MB or a
caption over 1024 characters, a reply to a message that is gone (unless
`allow_sending_without_reply`), a `message_thread_id` that is not a topic of the chat, and an
answer to a callback query more than `callback_query_timeout` seconds (15, as Telegram) after
the tap.

Drafts (`sendMessageDraft`, Bot API 9.3) are what a user sees of a message the bot is still
writing: only in a private chat (elsewhere Telegram answers `TEXTDRAFT_PEER_INVALID`), with a
non-zero `draft_id` and a text of 1-4096 characters after HTML parsing, refused like
sendMessage's. A draft is no message: `fake.drafts(chat_id)` lists every draft sent,
`fake.shown_draft(chat_id)` the one the user sees now, until the bot sends the chat a message
or `DRAFT_TTL` passes. `fake.refuse_drafts()` refuses every draft (400), or those to one chat
(`chat_id=`), as Telegram does for a bot it does not allow them; `as_unknown_method=True`
answers 404, as a Bot API server older than 9.3 answers a method it does not know.

Forum topics are modelled as Telegram has them: `fake.open_topic("Tides")` makes the group a
forum and returns the topic's thread id; a user's message there carries `message_thread_id` and
`is_topic_message`. A message the bot sends goes to the topic it names, else to the topic of the
message it replies to (Telegram's rule), else to "General" (`thread_id` None).

Users send files as Telegram delivers them (`user_sends_photo`, `user_sends_document`,
`user_sends_voice`, `user_sends_audio`, with the bytes the test gives); a bot gets them with
getFile and a download from `/file/bot<token>/<file_path>` (`telegram_files`), and
`fake.downloads` lists what it downloaded.

Tests play the users and read what they would see:

    fake.user_says("/start")                 # queued for getUpdates, returns the Update JSON
    await fake.wait_for(lambda: fake.messages(1001))
    assert fake.messages(1001)[-1].visible_text == "Hello!"
    document = fake.messages(1001)[-1].extra["document"]    # a sendDocument: its caption is
    content = fake.files[document["file_id"]]               # the visible text; the file's bytes

Faults are queued per method and consumed in order: `fake.rate_limit("editMessageText", 3)`.
`fake.flood_control(edits_per_second=1)` refuses edits to one chat that come too fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from aiohttp import web

from tests.fakes.telegram_files import FileHost, FileRefused
from tests.fakes.telegram_html import HtmlParseError, parse_html, utf16_length

FAKE_BOT_TOKEN = "123456:TEST-fake-telegram-token-abcdefghijk"
DEFAULT_USER_ID = 1001
# ChatMemberAdministrator's rights (Bot API 9.x); python-telegram-bot requires each of them.
ADMIN_RIGHTS = (
    "is_anonymous", "can_manage_chat", "can_delete_messages", "can_manage_video_chats",
    "can_restrict_members", "can_promote_members", "can_change_info", "can_invite_users",
    "can_post_stories", "can_edit_stories", "can_delete_stories",
)  # fmt: skip
DEFAULT_GROUP_ID = -1001234567890
DEFAULT_FORUM_ID = -1009876543210
CALLBACK_QUERY_TIMEOUT = 15.0  # seconds Telegram waits for answerCallbackQuery after a tap
MAX_TEXT_LENGTH = 4096  # UTF-16 code units of the visible text, as Telegram counts
MAX_CALLBACK_DATA_BYTES = 64
MAX_CAPTION_LENGTH = 1024  # UTF-16 code units, like text
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # what a bot may upload through the Bot API
# A message carrying one of these has a caption, not a text.
MEDIA_FIELDS = frozenset({"document", "photo", "voice", "audio", "video", "animation"})
DRAFT_TTL = 30.0  # seconds a draft stays shown without a newer one (message_typing_draft_ttl)
WELL_FORMED_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
COMMAND_NAME = re.compile(r"^[a-z0-9_]{1,32}$")
COMMAND_OR_MENTION = re.compile(r"(?<![\w/@])(/[A-Za-z0-9_]{1,64}(?:@\w{3,32})?|@\w{5,32})(?!\w)")
JSON_PARAMETERS = frozenset(
    {"reply_markup", "entities", "commands", "scope", "allowed_updates", "reply_parameters"}
    | {"link_preview_options", "caption_entities"}
)
INT_PARAMETERS = frozenset(
    {"chat_id", "message_id", "offset", "limit", "timeout", "cache_time", "message_thread_id"}
    | {"draft_id"}
)
BOOL_PARAMETERS = frozenset({"drop_pending_updates", "show_alert", "disable_notification"})
CHAT_ACTIONS = frozenset(
    {"typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice"}
    | {"upload_document", "choose_sticker", "find_location", "record_video_note"}
    | {"upload_video_note"}
)
BUTTON_ACTIONS = frozenset(
    {"url", "callback_data", "web_app", "login_url", "switch_inline_query", "pay"}
    | {"switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text"}
    | {"callback_game"}
)
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
QUERY_TOO_OLD = "query is too old and response timeout expired or query ID is invalid"
POLLING_CONFLICT = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
# Telegram's answer to a draft for a group, supergroup or channel (seen in the wild: it is not
# in the Bot API's documentation), and to a bot it does not let use drafts.
DRAFT_PEER_INVALID = "TEXTDRAFT_PEER_INVALID"
# A zero or missing draft_id: the documentation says "must be non-zero"; Telegram's wording of
# the refusal is not documented, so this one says what is wrong.
DRAFT_ID_ZERO = "draft_id must be non-zero"
T = TypeVar("T")


class ApiError(Exception):
    """One refusal, answered as Telegram's error body."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after


def bad_request(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


def too_many_requests(retry_after: int) -> ApiError:
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float  # time.monotonic() when the request arrived
    status: int = 0  # the HTTP status answered; 0 while a long poll waits (or was abandoned)

    @property
    def is_ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class MessageVersion:
    text: str  # as sent, markup included
    parse_mode: str | None
    visible_text: str  # what the user reads
    entities: list[dict[str, Any]]
    reply_markup: dict[str, Any] | None
    at: float


@dataclass
class StoredMessage:
    chat_id: int
    message_id: int
    sender: dict[str, Any]  # the `from` User
    date: int
    versions: list[MessageVersion]  # the first as sent, then one per edit
    extra: dict[str, Any] = field(default_factory=dict)  # sticker, photo, reply_to_message...
    is_deleted: bool = False
    thread_id: int | None = None  # the forum topic it is in; None: "General" or not a forum

    @property
    def is_from_bot(self) -> bool:
        return bool(self.sender["is_bot"])

    @property
    def current(self) -> MessageVersion:
        return self.versions[-1]

    @property
    def text(self) -> str:
        return self.current.text

    @property
    def visible_text(self) -> str:
        return self.current.visible_text

    @property
    def parse_mode(self) -> str | None:
        return self.current.parse_mode

    @property
    def reply_markup(self) -> dict[str, Any] | None:
        return self.current.reply_markup

    @property
    def edit_count(self) -> int:
        return len(self.versions) - 1

    def buttons(self) -> list[dict[str, Any]]:
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [button for row in rows for button in row]


@dataclass(frozen=True)
class Draft:
    """One sendMessageDraft Telegram showed: the text a user sees of a message being written."""

    chat_id: int
    draft_id: int
    thread_id: int | None
    text: str  # as sent, markup included
    parse_mode: str | None
    visible_text: str
    entities: list[dict[str, Any]]
    at: float  # when it was taken, on the fake's draft_clock (time.monotonic by default)


@dataclass(frozen=True)
class Upload:
    """A file part of a multipart request, read whole."""

    filename: str | None
    content_type: str
    content: bytes


@dataclass(frozen=True)
class ChatActionSent:
    """A sendChatAction Telegram showed: where, and in which topic."""

    chat_id: int
    action: str
    thread_id: int | None
    at: float


@dataclass(frozen=True)
class Webhook:
    url: str
    secret_token: str | None
    allowed_updates: list[str] | None


class FakeTelegram:
    """One fake Bot API for one bot; `start()` it, point `telegram.Bot` at `base_url`."""

    def __init__(
        self,
        *,
        token: str = FAKE_BOT_TOKEN,
        bot_id: int | None = None,
        bot_username: str = "chatbridge_test_bot",
        requires_escaping: bool = True,
        callback_query_timeout: float = CALLBACK_QUERY_TIMEOUT,
    ) -> None:
        self.token = token
        self.bot_id = bot_id if bot_id is not None else int(token.split(":", 1)[0])
        self.bot_username = bot_username
        self.requires_escaping = requires_escaping  # see telegram_html: bare `&` and `>`
        self.callback_query_timeout = callback_query_timeout  # tests may shorten it
        self.chat_actions: list[ChatActionSent] = []
        self.calls: list[Call] = []
        self._delays: dict[str, float] = {}
        self.chats: dict[int, dict[str, Any]] = {}  # every chat seen in an update
        self.webhook: Webhook | None = None
        self.callback_answers: dict[str, dict[str, Any]] = {}
        self.files: dict[str, bytes] = {}  # file_id -> content, of every document sent
        self.hosted = FileHost(token)  # what users sent: getFile and downloads
        self._documents: list[dict[str, Any]] = []
        self._open_queries: dict[str, float] = {}  # query id -> when the user tapped
        self._topics: dict[int, set[int]] = {}  # forum chat id -> its topics' thread ids
        self._members: dict[int, dict[int, dict[str, Any]]] = {}  # chat -> user id -> user
        self._admins: dict[int, set[int]] = {}  # group chat id -> its administrators
        self._chat_messages: dict[int, list[StoredMessage]] = {}
        self._drafts: dict[int, list[Draft]] = {}  # chat -> every draft sent there
        self._shown_drafts: dict[int, Draft] = {}  # chat -> the draft its user sees now
        self._drafts_refused_in: set[int] | None = set()  # None: refused in every chat
        self.draft_clock: Callable[[], float] = time.monotonic  # what DRAFT_TTL is measured on
        self._unknown_methods: set[str] = set()  # known to this fake, refused as unknown (404)
        self._by_id: dict[tuple[int, int], StoredMessage] = {}
        self._pending: list[dict[str, Any]] = []
        self._next_update_id = 1
        self._next_query_id = 4_000_000_000_000_000_000
        self._wakeup = asyncio.Event()
        self._poll_generation = 0
        self._allowed_updates: set[str] | None = None
        self._commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self._faults: dict[str, deque[int]] = {}
        self._min_gap = {"edit": 0.0, "send": 0.0}
        self._last_at: dict[tuple[str, int], float] = {}
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._methods: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
            name.lower(): (name, handler)
            for name, handler in (
                ("getMe", self._get_me),
                ("getUpdates", self._get_updates),
                ("setWebhook", self._set_webhook),
                ("deleteWebhook", self._delete_webhook),
                ("getWebhookInfo", self._get_webhook_info),
                ("setMyCommands", self._set_my_commands),
                ("getMyCommands", self._get_my_commands),
                ("sendMessage", self._send_message),
                ("sendMessageDraft", self._send_message_draft),
                ("editMessageText", self._edit_message_text),
                ("editMessageReplyMarkup", self._edit_message_reply_markup),
                ("deleteMessage", self._delete_message),
                ("sendChatAction", self._send_chat_action),
                ("answerCallbackQuery", self._answer_callback_query),
                ("sendDocument", self._send_document),
                ("getChatMember", self._get_chat_member),
                ("getFile", self._get_file),
            )
        }

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/bot"

    @property
    def base_file_url(self) -> str:
        """Where files are downloaded from: `<base_file_url><token>/<file_path>`."""
        return f"http://127.0.0.1:{self._port}/file/bot"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self.hosted.serve)
        # A client that gives up on a long poll must not leave a waiting handler behind.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # What tests read.

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def messages(self, chat_id: int, *, include_user: bool = False) -> list[StoredMessage]:
        """The chat as it looks now, oldest first: the bot's messages (and the user's)."""
        return [
            message
            for message in self._chat_messages.get(chat_id, [])
            if not message.is_deleted and (message.is_from_bot or include_user)
        ]

    @property
    def downloads(self) -> list[str]:
        """The file_ids of every file a bot downloaded, in order."""
        return self.hosted.downloads

    def drafts(self, chat_id: int) -> list[Draft]:
        """Every draft the bot sent to the chat and Telegram took, oldest first."""
        return list(self._drafts.get(chat_id, []))

    def shown_draft(self, chat_id: int) -> Draft | None:
        """The draft the chat's user sees now: the latest, until the bot sent the chat a
        message (any message of the bot's ends its draft) or DRAFT_TTL passed."""
        draft = self._shown_drafts.get(chat_id)
        if draft is None or self.draft_clock() - draft.at > DRAFT_TTL:
            return None
        return draft

    def commands(
        self, *, language_code: str = "", scope: dict[str, Any] | None = None
    ) -> list[dict[str, str]]:
        return self._commands.get((_scope_key(scope), language_code), [])

    async def wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float = 10.0,  # noqa: ASYNC109 - a bounded poll, simpler to read than asyncio.timeout
        *,
        what: str = "",
    ) -> T:
        """Poll `predicate` until it returns something truthy (returned), else TimeoutError."""
        deadline = time.monotonic() + timeout
        while not (result := predicate()):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"not seen within {timeout} s: {what or predicate}")
            await asyncio.sleep(0.01)
        return result

    # Faults.

    def rate_limit(self, method: str, retry_after: int = 1, *, times: int = 1) -> FakeTelegram:
        """Answer the next `times` calls of `method` with 429 and this retry_after."""
        self._faults.setdefault(method.lower(), deque()).extend([retry_after] * times)
        return self

    def slow_down(self, method: str, seconds: float) -> FakeTelegram:
        """Answer every call of `method` `seconds` late, as a Bot API under load does."""
        self._delays[method.lower()] = seconds
        return self

    def flood_control(
        self, *, edits_per_second: float | None = None, sends_per_second: float | None = None
    ) -> FakeTelegram:
        """Refuse (429) edits or sends to one chat that come faster than this."""
        self._min_gap["edit"] = 1 / edits_per_second if edits_per_second else 0.0
        self._min_gap["send"] = 1 / sends_per_second if sends_per_second else 0.0
        return self

    def refuse_drafts(
        self, *, chat_id: int | None = None, as_unknown_method: bool = False
    ) -> FakeTelegram:
        """Refuse sendMessageDraft from now on, to `chat_id` or to every chat: 400
        `TEXTDRAFT_PEER_INVALID` once its parameters are checked, as Telegram refuses a bot it
        does not allow drafts; or, with `as_unknown_method`, 404 for every chat, as a Bot API
        server that does not know the method."""
        if as_unknown_method:
            if chat_id is not None:
                raise ValueError("an unknown method is unknown for every chat")
            self._unknown_methods.add("sendmessagedraft")
        elif chat_id is None:
            self._drafts_refused_in = None
        elif self._drafts_refused_in is not None:
            self._drafts_refused_in.add(chat_id)
        return self

    def make_admin(self, user_id: int, *, chat_id: int = DEFAULT_GROUP_ID) -> FakeTelegram:
        """`user_id` administers group `chat_id` (getChatMember says so)."""
        self._admins.setdefault(chat_id, set()).add(user_id)
        return self

    # Users act: each builder queues an Update for getUpdates and returns its JSON.

    def user_says(
        self,
        text: str,
        *,
        user_id: int = DEFAULT_USER_ID,
        chat_id: int | None = None,
        chat_type: str = "private",
        username: str = "alice",
        language_code: str = "en",
        reply_to_message_id: int | None = None,
        entities: list[dict[str, Any]] | None = None,
        thread_id: int | None = None,
    ) -> dict[str, Any]:
        """A text message; commands and mentions carry the entities Telegram adds. With
        `thread_id`, written in that topic of a forum (`open_topic`), `chat_id` the forum's."""
        return self._post(
            text, {}, user_id=user_id, chat_id=chat_id, chat_type=chat_type, username=username,
            language_code=language_code, reply_to_message_id=reply_to_message_id,
            entities=entities, thread_id=thread_id,
        )  # fmt: skip

    def _post(
        self,
        text: str,
        extra: dict[str, Any],
        *,
        user_id: int = DEFAULT_USER_ID,
        chat_id: int | None = None,
        chat_type: str = "private",
        username: str = "alice",
        language_code: str = "en",
        reply_to_message_id: int | None = None,
        entities: list[dict[str, Any]] | None = None,
        thread_id: int | None = None,
    ) -> dict[str, Any]:
        """A user's message (`text` is a caption when `extra` holds a file), queued."""
        user = _user(user_id, username, language_code)
        if thread_id is not None:
            chat_id = DEFAULT_FORUM_ID if chat_id is None else chat_id
            if thread_id not in self._topics.get(chat_id, set()):
                raise ValueError(f"chat {chat_id} has no topic {thread_id}: open_topic first")
            chat_type = "supergroup"
        chat_id = self._see_chat(user, chat_id, chat_type)
        extra = dict(extra)
        if reply_to_message_id is not None:
            extra["reply_to_message"] = self.message_json(
                self._existing(chat_id, reply_to_message_id)
            )
        found = _entities_in(text) if entities is None else entities
        version = MessageVersion(text, None, text, found, None, time.monotonic())
        message = self.store_message(chat_id, user, version, extra, thread_id=thread_id)
        return self._queue("message", self.message_json(message))

    def open_topic(
        self, name: str, *, chat_id: int = DEFAULT_FORUM_ID, user_id: int = DEFAULT_USER_ID
    ) -> int:
        """A user opens a topic in the forum `chat_id` (made a forum supergroup if new); its
        thread id, which is the id of the "topic created" service message, as in Telegram."""
        user = _user(user_id, "alice", "en")
        topics = self._topics.setdefault(chat_id, set())
        self._see_chat(user, chat_id, "supergroup")
        version = MessageVersion("", None, "", [], None, time.monotonic())
        created = {"forum_topic_created": {"name": name, "icon_color": 7322096}}
        message = self.store_message(chat_id, user, version, created)
        message.thread_id = message.message_id
        topics.add(message.message_id)
        return message.message_id

    def user_taps(
        self,
        callback_data: str,
        *,
        message_id: int,
        user_id: int = DEFAULT_USER_ID,
        chat_id: int | None = None,
        username: str = "alice",
        language_code: str = "en",
    ) -> dict[str, Any]:
        """A tap on an inline button of the bot's message (which must show that button)."""
        chat_id = user_id if chat_id is None else chat_id
        message = self._existing(chat_id, message_id)
        if not any(b.get("callback_data") == callback_data for b in message.buttons()):
            raise ValueError(f"message {message_id} shows no button with {callback_data!r}")
        self._next_query_id += 1
        query_id = str(self._next_query_id)
        self._open_queries[query_id] = time.monotonic()
        query = {
            "id": query_id,
            "from": _user(user_id, username, language_code),
            "message": self.message_json(message),
            "chat_instance": str(abs(chat_id) * 7919 + 13),
            "data": callback_data,
        }
        return self._queue("callback_query", query)

    def user_sends_sticker(
        self, *, emoji: str = "👍", user_id: int = DEFAULT_USER_ID, chat_id: int | None = None
    ) -> dict[str, Any]:
        number = self._next_update_id
        sticker = {
            **_file(f"CAACAgIAAxkBAAI{number}", 512, 512),
            **{"type": "regular", "is_animated": False, "is_video": False, "emoji": emoji},
        }
        return self._user_sends(user_id, chat_id, {"sticker": sticker})

    def user_sends_photo(
        self,
        data: bytes,
        *,
        caption: str | None = None,
        media_group_id: str | None = None,
        is_size_known: bool = True,
        **where: Any,
    ) -> dict[str, Any]:
        """A photo (JPEG `data`) as Telegram delivers one: every size it made, smallest first.
        `where` as for `user_says` (user_id, chat_id, chat_type, thread_id, ...); items of one
        album share a `media_group_id`. `is_size_known=False`: no size is named, as the Bot API
        does for a file whose size it does not know."""
        photo = self.hosted.photo(data, is_size_known=is_size_known)
        return self._post_media({"photo": photo}, caption, media_group_id, where)

    def user_sends_document(
        self,
        data: bytes,
        file_name: str = "notes.pdf",
        *,
        mime_type: str | None = None,
        caption: str | None = None,
        media_group_id: str | None = None,
        is_size_known: bool = True,
        **where: Any,
    ) -> dict[str, Any]:
        """A file sent as a document: `mime_type` as the sender's app claims it (by default
        guessed from `file_name`, as the apps do), whatever the bytes are."""
        document = self.hosted.document(data, file_name, mime_type, is_size_known=is_size_known)
        return self._post_media({"document": document}, caption, media_group_id, where)

    def user_sends_voice(
        self,
        data: bytes,
        *,
        duration: int = 3,
        mime_type: str = "audio/ogg",
        caption: str | None = None,
        is_size_known: bool = True,
        **where: Any,
    ) -> dict[str, Any]:
        """A voice note recorded in the app: Ogg Opus, with its length in seconds."""
        voice = self.hosted.voice(data, duration, mime_type, is_size_known=is_size_known)
        return self._post_media({"voice": voice}, caption, None, where)

    def user_sends_audio(
        self,
        data: bytes,
        *,
        file_name: str | None = "song.mp3",
        mime_type: str | None = "audio/mpeg",
        duration: int = 3,
        performer: str | None = None,
        title: str | None = None,
        caption: str | None = None,
        media_group_id: str | None = None,
        **where: Any,
    ) -> dict[str, Any]:
        """A music file (Audio), with the tags the sender's app read from it."""
        audio = self.hosted.audio(
            data, duration, file_name=file_name, mime_type=mime_type, performer=performer,
            title=title,
        )  # fmt: skip
        return self._post_media({"audio": audio}, caption, media_group_id, where)

    def _post_media(
        self,
        extra: dict[str, Any],
        caption: str | None,
        media_group_id: str | None,
        where: dict[str, Any],
    ) -> dict[str, Any]:
        if caption is not None and utf16_length(caption) > MAX_CAPTION_LENGTH:
            raise ValueError(f"Telegram apps take captions of at most {MAX_CAPTION_LENGTH}")
        if media_group_id is not None:
            extra["media_group_id"] = media_group_id
        return self._post(caption or "", extra, **where)

    def _user_sends(
        self, user_id: int, chat_id: int | None, extra: dict[str, Any]
    ) -> dict[str, Any]:
        user = _user(user_id, "alice", "en")
        chat_id = self._see_chat(user, chat_id, "private" if chat_id is None else "group")
        version = MessageVersion("", None, "", [], None, time.monotonic())
        message = self.store_message(chat_id, user, version, extra)
        return self._queue("message", self.message_json(message))

    def _queue(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": self._next_update_id, kind: payload}
        self._next_update_id += 1
        self._pending.append(update)
        self._wake_pollers()
        return update

    def _see_chat(self, user: dict[str, Any], chat_id: int | None, chat_type: str) -> int:
        if chat_type == "private":
            chat_id = user["id"] if chat_id is None else chat_id
            chat = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
            chat["username"] = user["username"]
        else:
            chat_id = DEFAULT_GROUP_ID if chat_id is None else chat_id
            chat = {"id": chat_id, "type": chat_type, "title": "ChatBridge testers"}
            if chat_id in self._topics:
                chat.update(type="supergroup", is_forum=True)
        self.chats[chat_id] = chat
        self._members.setdefault(chat_id, {})[user["id"]] = user
        return chat_id

    # Messages as Telegram keeps them.

    def bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "ChatBridge Test",
            "username": self.bot_username,
        }

    def store_message(
        self,
        chat_id: int,
        sender: dict[str, Any],
        version: MessageVersion,
        extra: dict[str, Any] | None = None,
        *,
        thread_id: int | None = None,
    ) -> StoredMessage:
        in_chat = self._chat_messages.setdefault(chat_id, [])
        message_id = max((m.message_id for m in in_chat), default=0) + 1
        message = StoredMessage(
            chat_id, message_id, sender, int(time.time()), [version], dict(extra or {}),
            thread_id=thread_id,
        )  # fmt: skip
        in_chat.append(message)
        self._by_id[chat_id, message_id] = message
        if message.is_from_bot:
            self._shown_drafts.pop(chat_id, None)  # the bot's message replaces its draft
        return message

    def message_json(self, message: StoredMessage) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "message_id": message.message_id,
            "from": message.sender,
            "chat": self.chats[message.chat_id],
            "date": message.date,
        }
        is_media = not MEDIA_FIELDS.isdisjoint(message.extra)  # its text is a caption
        if message.visible_text:
            payload["caption" if is_media else "text"] = message.visible_text
        if message.current.entities:
            payload["caption_entities" if is_media else "entities"] = message.current.entities
        if message.reply_markup and "inline_keyboard" in message.reply_markup:
            payload["reply_markup"] = message.reply_markup
        if message.thread_id is not None:
            payload.update(message_thread_id=message.thread_id, is_topic_message=True)
        return {**payload, **message.extra}

    def _existing(self, chat_id: int, message_id: int) -> StoredMessage:
        message = self._message_in(chat_id, message_id)
        if message is None:
            raise ValueError(f"no message {message_id} in chat {chat_id}")
        return message

    # HTTP.

    async def _handle(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        if token != self.token:
            if WELL_FORMED_TOKEN.match(token):
                return _error(ApiError(401, "Unauthorized"))
            return _error(ApiError(404, "Not Found"))
        if method.lower() not in self._methods:  # Bot API method names are case-insensitive
            return _error(ApiError(404, "Not Found"))
        name, handler = self._methods[method.lower()]
        call = Call(name, {}, time.monotonic())
        self.calls.append(call)
        try:
            call.params = await _read_params(request)
            self._refuse_if_unknown(method.lower())
            if delay := self._delays.get(method.lower()):
                await asyncio.sleep(delay)
            self._take_fault(method.lower())
            result = handler(call.params)
            if asyncio.iscoroutine(result):
                result = await result
        except ApiError as refusal:
            call.status = refusal.status
            return _error(refusal)
        call.status = 200
        return web.json_response({"ok": True, "result": result})

    def _refuse_if_unknown(self, method: str) -> None:
        """A method this fake plays a Bot API server without (refuse_drafts): 404, as for any
        unknown method, but recorded with its parameters."""
        if method in self._unknown_methods:
            raise ApiError(404, "Not Found")

    def _take_fault(self, method: str) -> None:
        queued = self._faults.get(method)
        if queued:
            raise too_many_requests(queued.popleft())

    def _throttle(self, kind: str, chat_id: int) -> None:
        now, gap = time.monotonic(), self._min_gap[kind]
        last = self._last_at.get((kind, chat_id))
        if gap and last is not None and now - last < gap:
            raise too_many_requests(max(1, math.ceil(gap - (now - last))))
        self._last_at[kind, chat_id] = now

    # Methods: each takes the parameters and returns the result, or raises ApiError.

    def _get_me(self, _: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook is not None:
            raise ApiError(409, WEBHOOK_CONFLICT)
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake_pollers()  # an older poll still waiting is now terminated
        if params.get("allowed_updates") is not None:
            self._allowed_updates = set(params["allowed_updates"]) or None
        self._confirm(_int(params, "offset", 0))
        limit = min(max(_int(params, "limit", 100), 1), 100)
        deadline = time.monotonic() + max(_int(params, "timeout", 0), 0)
        while True:
            if generation != self._poll_generation:
                raise ApiError(409, POLLING_CONFLICT)
            pending = self._deliverable()
            remaining = deadline - time.monotonic()
            if pending or remaining <= 0:
                return pending[:limit]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)

    def _confirm(self, offset: int) -> None:
        if offset < 0:
            del self._pending[: max(len(self._pending) + offset, 0)]
        elif offset > 0:
            self._pending[:] = [u for u in self._pending if u["update_id"] >= offset]

    def _deliverable(self) -> list[dict[str, Any]]:
        allowed = self._allowed_updates
        if allowed is not None:
            self._pending[:] = [u for u in self._pending if _update_kind(u) in allowed]
        return list(self._pending)

    def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = str(params.get("url", ""))
        if not url:
            return self._delete_webhook(params)
        if not url.startswith("https://"):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook = Webhook(url, params.get("secret_token"), params.get("allowed_updates"))
        self._drop_pending_if_asked(params)
        self._wake_pollers()
        return True

    def _delete_webhook(self, params: dict[str, Any]) -> bool:
        self.webhook = None
        self._drop_pending_if_asked(params)
        return True

    def _drop_pending_if_asked(self, params: dict[str, Any]) -> None:
        if _bool(params, "drop_pending_updates"):
            self._pending.clear()

    def _get_webhook_info(self, _: dict[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.webhook.url if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if self.webhook and self.webhook.allowed_updates is not None:
            info["allowed_updates"] = self.webhook.allowed_updates
        return info

    def _set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise bad_request('parameter "commands" can\'t be parsed')
        checked = [_checked_command(command) for command in commands]
        self._commands[_commands_key(params)] = checked
        return True

    def _get_my_commands(self, params: dict[str, Any]) -> list[dict[str, str]]:
        return self._commands.get(_commands_key(params), [])

    def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._known_chat(params)
        version = self._version(params)
        thread_id = self._thread(chat_id, params)
        reply_to = self._reply_to(chat_id, params.get("reply_parameters"))
        self._throttle("send", chat_id)
        thread_id = _thread_of_reply(thread_id, reply_to)
        message = self.store_message(chat_id, self.bot_user(), version, thread_id=thread_id)
        if reply_to is not None:
            message.extra["reply_to_message"] = self.message_json(reply_to)
        return self.message_json(message)

    def _send_message_draft(self, params: dict[str, Any]) -> bool:
        """A draft of a message being written, in the order the Bot API checks: the text (as
        sendMessage's: parse errors, empty, too long), the chat, the topic; then Telegram's
        servers: drafts go to private chats only, under a non-zero draft_id.

        Bot API 10.0 also takes an empty text, shown as "Thinking…"; this fake refuses it, as
        9.3 did (1-4096 characters): chatbridge never sends one."""
        version = self._version(params)
        chat_id = self._known_chat(params)
        thread_id = self._thread(chat_id, params)
        if self.chats[chat_id]["type"] != "private":
            raise bad_request(DRAFT_PEER_INVALID)
        draft_id = _int(params, "draft_id", 0)
        if draft_id == 0:
            raise bad_request(DRAFT_ID_ZERO)
        if self._drafts_refused_in is None or chat_id in self._drafts_refused_in:
            raise bad_request(DRAFT_PEER_INVALID)
        draft = Draft(
            chat_id, draft_id, thread_id, version.text, version.parse_mode,
            version.visible_text, version.entities, self.draft_clock(),
        )  # fmt: skip
        self._drafts.setdefault(chat_id, []).append(draft)
        self._shown_drafts[chat_id] = draft
        return True

    def _send_document(self, params: dict[str, Any]) -> dict[str, Any]:
        """An uploaded file (or one sent before, by file_id) under an optional caption."""
        chat_id = self._known_chat(params)
        document = self._document(params.get("document"))
        version = self._version(params, field="caption")
        thread_id = self._thread(chat_id, params)
        reply_to = self._reply_to(chat_id, params.get("reply_parameters"))
        self._throttle("send", chat_id)
        thread_id = _thread_of_reply(thread_id, reply_to)
        message = self.store_message(
            chat_id, self.bot_user(), version, {"document": document}, thread_id=thread_id
        )
        if reply_to is not None:
            message.extra["reply_to_message"] = self.message_json(reply_to)
        return self.message_json(message)

    def _document(self, sent: Any) -> dict[str, Any]:
        if isinstance(sent, str) and sent:
            known = next((d for d in self._documents if d["file_id"] == sent), None)
            if known is None:
                raise bad_request("wrong file identifier/HTTP URL specified")
            return known
        if not isinstance(sent, Upload):
            raise bad_request("there is no document in the request")
        if not sent.content:
            raise bad_request("file must be non-empty")
        if len(sent.content) > MAX_UPLOAD_BYTES:
            raise ApiError(413, "Request Entity Too Large")
        number = len(self.files) + 1
        document = {
            "file_id": f"BQACAgIAAxkBAAI{number:08d}",
            "file_unique_id": f"AgAD{number:08d}",
            "file_name": sent.filename or "document",
            "mime_type": sent.content_type,
            "file_size": len(sent.content),
        }
        self.files[document["file_id"]] = sent.content
        self._documents.append(document)
        return document

    def _edit_message_text(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._message_to_edit(params)
        return self._edit(message, self._version(params))

    def _edit_message_reply_markup(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._message_to_edit(params)
        markup = _checked_markup(params.get("reply_markup"))
        old = message.current
        new = MessageVersion(
            old.text, old.parse_mode, old.visible_text, old.entities, markup, time.monotonic()
        )
        return self._edit(message, new)

    def _edit(self, message: StoredMessage, new: MessageVersion) -> dict[str, Any]:
        old = message.current
        if (old.visible_text, old.entities, old.reply_markup) == (
            new.visible_text,
            new.entities,
            new.reply_markup,
        ):
            raise bad_request(NOT_MODIFIED)
        self._throttle("edit", message.chat_id)
        message.versions.append(new)
        message.extra["edit_date"] = int(time.time())
        return self.message_json(message)

    def _delete_message(self, params: dict[str, Any]) -> bool:
        chat_id = self._known_chat(params)
        message = self._message_in(chat_id, _int(params, "message_id", 0))
        if message is None:
            raise bad_request("message to delete not found")
        message.is_deleted = True
        return True

    def _send_chat_action(self, params: dict[str, Any]) -> bool:
        chat_id = self._known_chat(params)
        action = params.get("action")
        if action not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        thread_id = self._thread(chat_id, params)
        self.chat_actions.append(ChatActionSent(chat_id, action, thread_id, time.monotonic()))
        return True

    def _answer_callback_query(self, params: dict[str, Any]) -> bool:
        """Once per query, and only until Telegram stops waiting: the user's client then shows
        its own failure, and a late answer is refused."""
        query_id = str(params.get("callback_query_id", ""))
        tapped_at = self._open_queries.pop(query_id, None)
        if tapped_at is None or time.monotonic() - tapped_at > self.callback_query_timeout:
            raise bad_request(QUERY_TOO_OLD)
        self.callback_answers[query_id] = params
        return True

    def _get_file(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.hosted.get_file(params)
        except FileRefused as refused:
            raise ApiError(refused.status, refused.description) from None

    def _get_chat_member(self, params: dict[str, Any]) -> dict[str, Any]:
        """A member as Bot API 9 describes one: "administrator" carries every right field
        (python-telegram-bot reads them all), "member" only the user; someone never seen in
        the chat is refused as Telegram refuses an unknown user."""
        chat_id = self._known_chat(params)
        user_id = _as_int(params.get("user_id"))
        user = self._members.get(chat_id, {}).get(user_id or 0)
        if user is None:
            raise bad_request("user not found")
        if self.chats[chat_id]["type"] == "private" or user_id not in self._admins.get(chat_id, ()):
            return {"status": "member", "user": user}
        rights = {**dict.fromkeys(ADMIN_RIGHTS, True), "is_anonymous": False}
        return {"status": "administrator", "user": user, "can_be_edited": False, **rights}

    # Shared checks.

    def _known_chat(self, params: dict[str, Any]) -> int:
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise bad_request("chat_id is empty")
        chat_id = _as_int(raw)
        if chat_id is None or chat_id not in self.chats:
            raise bad_request("chat not found")
        return chat_id

    def _message_to_edit(self, params: dict[str, Any]) -> StoredMessage:
        if params.get("inline_message_id") is not None:
            raise bad_request("MESSAGE_ID_INVALID")
        chat_id = self._known_chat(params)
        message = self._message_in(chat_id, _int(params, "message_id", 0))
        if message is None:
            raise bad_request("message to edit not found")
        if not message.is_from_bot:
            raise bad_request("message can't be edited")
        return message

    def _message_in(self, chat_id: int, message_id: int) -> StoredMessage | None:
        message = self._by_id.get((chat_id, message_id))
        return None if message is None or message.is_deleted else message

    def _thread(self, chat_id: int, params: dict[str, Any]) -> int | None:
        """The topic a message or action is sent to, which must be one of the chat's."""
        if params.get("message_thread_id") is None:
            return None
        thread_id = _int(params, "message_thread_id", 0)
        if thread_id not in self._topics.get(chat_id, set()):
            raise bad_request("message thread not found")
        return thread_id

    def _reply_to(self, chat_id: int, parameters: Any) -> StoredMessage | None:
        if not isinstance(parameters, dict) or "message_id" not in parameters:
            return None
        message = self._message_in(chat_id, _as_int(parameters["message_id"]) or 0)
        if message is None and not parameters.get("allow_sending_without_reply"):
            raise bad_request("message to be replied not found")
        return message

    def _version(self, params: dict[str, Any], *, field: str = "text") -> MessageVersion:
        """The text (or a media's caption: optional) as the user will see it, checked."""
        is_caption = field == "caption"
        limit = MAX_CAPTION_LENGTH if is_caption else MAX_TEXT_LENGTH  # read now: tests patch it
        text = str(params.get(field, ""))
        parse_mode = params.get("parse_mode") or None
        entities_field = "caption_entities" if is_caption else "entities"
        visible, entities = text.strip(), params.get(entities_field) or []
        if parse_mode is not None:
            if str(parse_mode).lower() != "html":
                raise bad_request("unsupported parse_mode (this fake parses HTML only)")
            try:
                parsed = parse_html(text, requires_escaping=self.requires_escaping)
            except HtmlParseError as error:
                raise bad_request(f"can't parse entities: {error.reason}") from None
            visible, entities = parsed.text, parsed.entities
        if not visible and not is_caption:
            raise bad_request("message text is empty")
        if utf16_length(visible) > limit:
            raise bad_request(
                "message caption is too long" if is_caption else "message is too long"
            )
        markup = _checked_markup(params.get("reply_markup"))
        return MessageVersion(text, parse_mode, visible, entities, markup, time.monotonic())

    def _wake_pollers(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()


def _thread_of_reply(thread_id: int | None, reply_to: StoredMessage | None) -> int | None:
    """Telegram puts a reply sent without a topic in the topic of the message it answers."""
    if thread_id is None and reply_to is not None:
        return reply_to.thread_id
    return thread_id


def _user(user_id: int, username: str, language_code: str) -> dict[str, Any]:
    return {
        "id": user_id,
        "is_bot": False,
        "first_name": username.capitalize(),
        "username": username,
        "language_code": language_code,
    }


def _file(file_id: str, width: int, height: int) -> dict[str, Any]:
    return {
        "file_id": file_id,
        "file_unique_id": f"AQAD{file_id[-8:]}",
        "width": width,
        "height": height,
        "file_size": width * height // 10,
    }


def _entities_in(text: str) -> list[dict[str, Any]]:
    """The bot_command and mention entities Telegram finds in a user's text."""
    return [
        {
            "type": "bot_command" if match.group().startswith("/") else "mention",
            "offset": utf16_length(text[: match.start()]),
            "length": utf16_length(match.group()),
        }
        for match in COMMAND_OR_MENTION.finditer(text)
    ]


def _checked_command(command: Any) -> dict[str, str]:
    if not isinstance(command, dict):
        raise bad_request("BOT_COMMAND_INVALID")
    name = str(command.get("command", "")).strip().removeprefix("/")
    description = str(command.get("description", "")).strip()
    if not name:
        raise bad_request("command must be non-empty")
    if len(name) > 32:
        raise bad_request("command length must not exceed 32")
    if not description:
        raise bad_request("command description must be non-empty")
    if len(description) > 256:
        raise bad_request("command description length must not exceed 256")
    if not COMMAND_NAME.match(name):
        raise bad_request("BOT_COMMAND_INVALID")
    return {"command": name, "description": description}


def _checked_markup(markup: Any) -> dict[str, Any] | None:
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" not in markup:
        return markup  # reply keyboards, keyboard removal, force reply: taken as they are
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array')
    for button in (button for row in rows for button in row):
        _check_button(button)
    return markup if any(rows) else None


def _check_button(button: Any) -> None:
    if not isinstance(button, dict) or not isinstance(button.get("text"), str):
        raise bad_request(
            'can\'t parse inline keyboard button: Field "text" must be of type String'
        )
    if not BUTTON_ACTIONS & button.keys():
        raise bad_request(
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        )
    if "callback_data" in button:
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
            raise bad_request("BUTTON_DATA_INVALID")


async def _read_params(request: web.Request) -> dict[str, Any]:
    """Parameters from the query string and a JSON, urlencoded or multipart body, typed.

    Form values arrive as strings, the ones that are objects or arrays JSON-encoded (PTB sends
    every call as a form); ids, offsets and flags become numbers and booleans here. A file part
    becomes an `Upload`.
    """
    params: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.body_exists:
        if request.content_type == "application/json":
            params.update(await _json_body(request))
        else:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    params[key] = value
                elif isinstance(value, web.FileField):
                    content = value.file.read()
                    params[key] = Upload(value.filename, value.content_type, content)
    return {key: _decoded(key, value) for key, value in params.items()}


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise bad_request("can't parse JSON object")
    return body


def _decoded(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if key in INT_PARAMETERS:
        number = _as_int(value)
        return value if number is None else number
    if key in BOOL_PARAMETERS and value in ("true", "false"):
        return value == "true"
    if key not in JSON_PARAMETERS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise bad_request(f'can\'t parse parameter "{key}" as JSON') from None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def _int(params: dict[str, Any], name: str, default: int) -> int:
    if name not in params:
        return default
    value = _as_int(params[name])
    if value is None:
        raise bad_request(f'parameter "{name}" must be a Number')
    return value


def _bool(params: dict[str, Any], name: str) -> bool:
    value = params.get(name, False)
    return value is True or str(value).lower() in ("true", "1")


def _scope_key(scope: Any) -> str:
    if not scope or scope == {"type": "default"}:
        return "default"
    return json.dumps(scope, sort_keys=True)


def _commands_key(params: dict[str, Any]) -> tuple[str, str]:
    return _scope_key(params.get("scope")), str(params.get("language_code") or "")


def _update_kind(update: dict[str, Any]) -> str:
    return next(key for key in update if key != "update_id")


def _error(refusal: ApiError) -> web.Response:
    body: dict[str, Any] = {
        "ok": False,
        "error_code": refusal.status,
        "description": refusal.description,
    }
    if refusal.retry_after is not None:
        body["parameters"] = {"retry_after": refusal.retry_after}
    return web.json_response(body, status=refusal.status)


@pytest.fixture
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    """A started FakeTelegram expecting FAKE_BOT_TOKEN, closed after the test."""
    fake = FakeTelegram()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
