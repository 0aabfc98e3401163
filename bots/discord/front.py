"""The Discord front: discord.py in the service's own event loop.

Only translation lives in this package: who spoke (a `discord:<id>` user), where and in which
language, and how a core reply looks in Discord (slash commands, ephemeral answers, a select
menu and buttons, streamed edits). This module runs the connection and the plain chat; the
client, the slash commands, the components and the interaction answers have modules of their
own. Slash commands are synced at startup when they changed. Plain chat: every DM; in guild
channels, mentions and replies to the bot, and every message of DISCORD_CHANNEL_IDS. A message's
files (pictures, documents, voice messages) go to the core with its text (files.py). Without
the Message Content intent the front reconnects without it and keeps serving slash commands,
DMs and mentions, which Discord delivers with content anyway; a reply to the bot without a ping
arrives blank, and its author is told once (per channel) why it can't be answered.
"""

from __future__ import annotations

import contextlib
import re
from collections import OrderedDict
from collections.abc import Sequence

import aiohttp
import discord
import structlog

from bots.chatfront.pacing import ChatPacer, InOrder, RunningHandlers
from bots.chatfront.startup import StartFailures, start_when_reachable
from bots.discord.client import FrontHooks, build_client, point_discord_py_at
from bots.discord.files import DownloadFailed, downloaded, refusal_before_download
from bots.discord.interactions import InteractionAnswers
from bots.discord.replies import deliver, tell_unexpected
from bots.discord.stream import ChannelSurface, Surface, send_text
from bots.discord.users import DISCORD, Locales, allow_list, may_talk, speaker_in
from bots.runtime import Services
from core.commands import Outcome, Reply
from core.messages import describe, text
from core.observability.metrics import front_of
from core.settings import Settings
from core.spaces import Speaker

log = structlog.get_logger(__name__)

HANDLERS_FINISH_SECONDS = 5.0  # on stop, for handlers to deliver their last message
HIDDEN_NOTICES_REMEMBERED = 10_000  # (user, channel) pairs told that their text was hidden
CONTENT_INTENT_HINT = (
    "enable 'Message Content Intent' in the Discord Developer Portal: Applications → your bot → "
    "Bot → Privileged Gateway Intents. Until then: slash commands, DMs and mentions only"
)
START_FAILURES = StartFailures(
    platform=DISCORD.name,
    refusal_hint="check DISCORD_BOT_TOKEN",
    token_refused=(discord.LoginFailure,),
    unreachable=(aiohttp.ClientError, OSError, discord.DiscordServerError),
)


class DiscordFront:
    def __init__(self, services: Services, settings: Settings) -> None:
        if settings.discord_bot_token is None:
            raise ValueError("the Discord front needs DISCORD_BOT_TOKEN")
        self._services = services
        self._settings = settings
        self._token = settings.discord_bot_token.get_secret_value()
        self._allowed = allow_list(settings)
        self._channels = set(settings.discord_channel_ids)
        self._pacer = ChatPacer(settings.discord_edit_interval)
        self._order = InOrder()
        self._locales = Locales()
        self._told_hidden: OrderedDict[tuple[int, int], None] = OrderedDict()
        self._stopping = False
        self._handlers = RunningHandlers()
        answers = InteractionAnswers(
            services, self._allowed, self._locales, self._pacer, self._handlers,
            group_sessions=settings.group_sessions,
        )  # fmt: skip
        self._hooks = FrontHooks(on_message=self.on_message, answerer=answers)
        self.client = self._new_client(message_content=True)

    # --- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect and serve until `stop()`; a bad token or a lasting refusal ends it, logged."""
        point_discord_py_at(self._settings)
        await start_when_reachable(
            self._connect,
            START_FAILURES,
            after_unreachable=self._close_client,
            is_stopping=lambda: self._stopping,
        )

    async def stop(self) -> None:
        """Let handlers at work finish (the core has stopped their turns), then disconnect."""
        self._stopping = True
        await self._handlers.finish_within(HANDLERS_FINISH_SECONDS)
        await self.client.close()

    async def _connect(self) -> None:
        """Serve on a client until it closes; refused the Message Content intent, at once again
        on one without it."""
        if self.client.is_closed():  # by a failed attempt: a discord.py client starts only once
            self.client = self._new_client(message_content=self.client.intents.message_content)
        try:
            await self.client.start(self._token)
        except discord.PrivilegedIntentsRequired:
            log.error("discord.message_content_intent_missing", hint=CONTENT_INTENT_HINT)  # noqa: TRY400
            await self.client.close()
            self.client = self._new_client(message_content=False)
            if not self._stopping:
                await self.client.start(self._token)

    async def _close_client(self) -> None:
        await self.client.close()

    def _new_client(self, *, message_content: bool) -> discord.Client:
        return build_client(self._settings, self._hooks, message_content=message_content)

    # --- chat messages -------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        client = self.client
        if message.author.bot or client.user is None or not self._is_for_us(message, client.user):
            return
        with self._handlers.track():
            await self._on_message_in_order(message, client.user)

    async def _on_message_in_order(self, message: discord.Message, me: discord.ClientUser) -> None:
        async with self._order.turn_of((message.channel.id, message.author.id)):
            DISCORD.bind(message.author.id, message.channel.id)
            locale = self._locales.of_message(message)
            surface = ChannelSurface(message.channel, message.channel.id, reply_to=message)
            try:
                await self._on_message(message, me, locale, surface)
            except Exception:
                log.exception("discord.handler_failed")
                await tell_unexpected(surface, locale)

    async def _on_message(
        self, message: discord.Message, me: discord.ClientUser, locale: str, surface: Surface
    ) -> None:
        if not may_talk(self._allowed, message.author):
            await send_text(surface, text(locale, "not_allowed"))
            return
        said = _without_mention(message.content, me.id, _own_role_id(message))
        if not said and not message.attachments:
            if message.stickers:
                await send_text(surface, text(locale, "not_text"))
                return
            if self._is_hidden_from_us(message):
                await self._tell_hidden_once(message, surface, locale)
                return
            said = "/help"  # a bare mention: say what we can do
        speaker = self._speaker_of(message)
        if message.attachments:  # the text may be empty: a picture alone, a voice message
            outcome = await self._with_files(speaker, said, message.attachments, locale, surface)
        else:
            outcome = await self._services.commands.handle(speaker, said, locale=locale)
        await deliver(outcome, surface, locale, self._pacer)

    async def _with_files(
        self,
        speaker: Speaker,
        said: str,
        attachments: Sequence[discord.Attachment],
        locale: str,
        surface: Surface,
    ) -> Outcome:
        """The message with its files, fetched unless the core would refuse them anyway."""
        refused = refusal_before_download(
            attachments, max_file_bytes=self._settings.max_attachment_bytes
        )
        commands = self._services.commands
        if refused is not None:
            commands.metrics.command_failed(front_of(speaker.person), refused)
            return Reply(describe(refused, locale), is_error=True)
        with contextlib.suppress(discord.HTTPException):
            await surface.show_typing()  # fetching, reading and transcribing take a while
        try:
            files = await downloaded(attachments)
        except DownloadFailed:
            return Reply(text(locale, "attachment_download_failed"), is_error=True)
        return await commands.handle(speaker, said, locale=locale, files=files)

    def _speaker_of(self, message: discord.Message) -> Speaker:
        author = message.author
        may_moderate = isinstance(author, discord.Member) and _may_manage_messages(message, author)
        return speaker_in(
            author, message.channel.id, in_guild=message.guild is not None,
            may_moderate=may_moderate, mode=self._settings.group_sessions,
        )  # fmt: skip

    def _is_hidden_from_us(self, message: discord.Message) -> bool:
        """An empty guild message while we lack the Message Content intent: Discord blanked it
        (a reply without ping, say), so nothing the user wrote can be answered, not even /help."""
        return (
            not self.client.intents.message_content
            and message.guild is not None
            and not message.content
        )

    async def _tell_hidden_once(
        self, message: discord.Message, surface: Surface, locale: str
    ) -> None:
        """Say once per user and channel why we can't answer; then stay quiet, not nag."""
        key = (message.author.id, message.channel.id)
        if key in self._told_hidden:
            return
        self._told_hidden[key] = None
        if len(self._told_hidden) > HIDDEN_NOTICES_REMEMBERED:
            self._told_hidden.popitem(last=False)
        log.info("discord.message_content_hidden", hint=CONTENT_INTENT_HINT)
        await send_text(surface, text(locale, "content_hidden"))

    def _is_for_us(self, message: discord.Message, me: discord.ClientUser) -> bool:
        """DMs always; in guilds, mentions, replies to us, and DISCORD_CHANNEL_IDS."""
        if message.guild is None:
            return True
        if any(user.id == me.id for user in message.mentions):
            return True
        own_role = _own_role_id(message)
        if own_role is not None and own_role in message.raw_role_mentions:
            return True  # "@ChatBridge" picked from the list is often the bot's role, not the bot
        channel = message.channel
        parent_id = getattr(channel, "parent_id", None)  # a thread counts as its channel
        if channel.id in self._channels or parent_id in self._channels:
            return bool(message.content or message.attachments or message.stickers)
        reference = message.reference
        replied = reference.resolved if reference is not None else None
        return isinstance(replied, discord.Message) and replied.author.id == me.id


def _may_manage_messages(message: discord.Message, member: discord.Member) -> bool:
    channel = message.channel
    if isinstance(channel, discord.DMChannel | discord.GroupChannel | discord.PartialMessageable):
        return False
    return channel.permissions_for(member).manage_messages


def _own_role_id(message: discord.Message) -> int | None:
    """The managed role Discord gives the bot in the message's guild (tagged with the bot's id)."""
    role = message.guild.self_role if message.guild is not None else None
    return role.id if role is not None else None


def _without_mention(content: str, bot_id: int, role_id: int | None = None) -> str:
    """The text without the mentions that addressed the bot: its user, or its role."""
    content = re.sub(rf"<@!?{bot_id}>", "", content)
    if role_id is not None:
        content = re.sub(rf"<@&{role_id}>", "", content)
    return content.strip()
