"""The Discord front: discord.py in the service's own event loop.

Only translation lives here: who spoke (a `discord:<id>` user), where and in which language,
and how a core reply looks in Discord (slash commands, ephemeral answers, a select menu and
buttons, streamed edits). Slash commands are synced at startup when they changed. Plain chat:
every DM; in guild channels, mentions and replies to the bot, and every message of
DISCORD_CHANNEL_IDS. Without the Message Content intent the front reconnects without it and
keeps serving slash commands, DMs and mentions, which Discord delivers with content anyway.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Any, Protocol, cast

import aiohttp
import discord
import structlog
import yarl
from discord import app_commands
from discord.app_commands import locale_str
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bots.chatfront.access import AllowList, Platform
from bots.chatfront.pacing import ChatPacer, InOrder, RunningHandlers
from bots.chatfront.startup import StartFailures, start_when_reachable
from bots.chatfront.streaming import stream_turn
from bots.discord.stream import (
    ChannelSurface,
    InteractionSurface,
    ReplyStream,
    Surface,
    footer,
    send_file,
    send_text,
    until_delivered,
)
from bots.runtime import Services
from core.commands import CONFIRM, Choice, FileReply, Outcome, Reply, TurnReply
from core.errors import StoreError
from core.messages import (
    COMMAND_DESCRIPTIONS,
    ENGLISH,
    OPTION_DESCRIPTIONS,
    PORTUGUESE,
    normalize_locale,
    text,
)
from core.settings import Settings

log = structlog.get_logger(__name__)

Interaction = discord.Interaction[discord.Client]
# An interaction unanswered after 3 s is lost; past this, the answer is deferred first.
ANSWER_WITHIN_SECONDS = 2.0
AUTOCOMPLETE_LIMIT = 25  # Discord shows at most 25 choices, each at most 100 characters
CHOICE_NAME_LIMIT = 100
MENU_LIMIT = 25
LOCALES_REMEMBERED = 10_000
HANDLERS_FINISH_SECONDS = 5.0  # on stop, for handlers to deliver their last message
CONTENT_INTENT_HINT = (
    "enable 'Message Content Intent' in the Discord Developer Portal: Applications → your bot → "
    "Bot → Privileged Gateway Intents. Until then: slash commands, DMs and mentions only"
)
# Buttons and menus carry the command they run in their custom_id (at most 100 characters), so
# any replica can serve a click, also after a restart.
COMMAND_BUTTON = "cb:run:"
DISMISS_BUTTON = "cb:dismiss"
COMMAND_MENU = "cb:menu"
DISCORD = Platform("discord")
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
        self._allowed = AllowList(
            DISCORD, settings.discord_allowed_users, settings.discord_allowed_roles
        )
        self._channels = set(settings.discord_channel_ids)
        self._pacer = ChatPacer(settings.discord_edit_interval)
        self._order = InOrder()
        self._locales: OrderedDict[int, str] = OrderedDict()
        self._stopping = False
        self._handlers = RunningHandlers()
        self.client = self._build_client(message_content=True)

    # --- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect and serve until `stop()`; a bad token or a lasting refusal ends it, logged."""
        _point_discord_py_at(self._settings)
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
            self.client = self._build_client(message_content=self.client.intents.message_content)
        try:
            await self.client.start(self._token)
        except discord.PrivilegedIntentsRequired:
            log.error("discord.message_content_intent_missing", hint=CONTENT_INTENT_HINT)  # noqa: TRY400
            await self.client.close()
            self.client = self._build_client(message_content=False)
            if not self._stopping:
                await self.client.start(self._token)

    async def _close_client(self) -> None:
        await self.client.close()

    def _build_client(self, *, message_content: bool) -> discord.Client:
        intents = discord.Intents.none()
        intents.guilds = intents.guild_messages = intents.dm_messages = True
        intents.message_content = message_content
        options: dict[str, Any] = {
            "intents": intents,
            "allowed_mentions": discord.AllowedMentions.none(),
        }
        client: discord.Client
        if self._settings.discord_shard_count is not None:
            client = _ShardedClient(
                self,
                shard_count=self._settings.discord_shard_count,
                shard_ids=list(self._settings.discord_shard_ids) or None,
                **options,
            )
        else:
            client = _Client(self, **options)
        return client

    def _attach(self, client: discord.Client) -> app_commands.CommandTree[Any]:
        """The command tree and the components this front adds to a new client."""
        tree = app_commands.CommandTree(client)
        for command in SLASH_COMMANDS:
            tree.add_command(command)
        tree.on_error = self._on_command_error  # type: ignore[method-assign]
        client.add_dynamic_items(CommandButton, DismissButton, CommandMenu)
        return tree

    async def setup(self, client: discord.Client, tree: app_commands.CommandTree[Any]) -> None:
        """After login, before the gateway: the command lists, synced only where they changed.

        With DISCORD_GUILD_IDS the commands live in those guilds, and the global list is
        emptied: global copies left from an earlier run would show every command twice.
        """
        await tree.set_translator(_Translator())
        guilds = [discord.Object(guild_id) for guild_id in self._settings.discord_guild_ids]
        for guild in guilds:
            tree.copy_global_to(guild=guild)
        if guilds:
            tree.clear_commands(guild=None)
        for scope in [*guilds, None]:
            try:
                await _sync_if_changed(client, tree, scope)
            except discord.HTTPException as error:
                log.error(  # noqa: TRY400  (Discord's answer says it all)
                    "discord.commands_not_synced",
                    guild=scope and scope.id,
                    status=error.status,
                    reason=error.text,
                )

    def on_ready(self, client: discord.Client) -> None:
        user = client.user
        log.info(
            "discord.ready",
            bot=user.name if user else None,
            guilds=len(client.guilds),
            shards=client.shard_count,
            message_content=client.intents.message_content,
        )

    # --- chat messages -------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        client = self.client
        if message.author.bot or client.user is None or not self._is_for_us(message, client.user):
            return
        with self._handlers.track():
            await self._on_message_in_order(message, client.user)

    async def _on_message_in_order(self, message: discord.Message, me: discord.ClientUser) -> None:
        async with self._order.turn_of((message.channel.id, message.author.id)):
            self._bind(message.author, message.channel.id)
            locale = self._message_locale(message)
            surface = ChannelSurface(message.channel, message.channel.id, reply_to=message)
            try:
                await self._on_message(message, me, locale, surface)
            except Exception:
                log.exception("discord.handler_failed")
                await self._tell_unexpected(surface, locale)

    async def _on_message(
        self, message: discord.Message, me: discord.ClientUser, locale: str, surface: Surface
    ) -> None:
        if not self._may_talk(message.author):
            await send_text(surface, text(locale, "not_allowed"))
            return
        said = _without_mention(message.content, me.id)
        if not said:
            if message.attachments or message.stickers:
                await send_text(surface, text(locale, "not_text"))
                return
            said = "/help"  # a bare mention: say what we can do
        outcome = await self._services.commands.handle(
            _user_id(message.author), said, locale=locale
        )
        await self._deliver(outcome, surface, locale)

    def _is_for_us(self, message: discord.Message, me: discord.ClientUser) -> bool:
        """DMs always; in guilds, mentions, replies to us, and DISCORD_CHANNEL_IDS."""
        if message.guild is None:
            return True
        if any(user.id == me.id for user in message.mentions):
            return True
        channel = message.channel
        parent_id = getattr(channel, "parent_id", None)  # a thread counts as its channel
        if channel.id in self._channels or parent_id in self._channels:
            return bool(message.content or message.attachments or message.stickers)
        reference = message.reference
        replied = reference.resolved if reference is not None else None
        return isinstance(replied, discord.Message) and replied.author.id == me.id

    # --- slash commands and components ---------------------------------------------------------

    async def run_command(self, interaction: Interaction, command: str) -> None:
        """A slash command: answered in time, privately unless it is a chat answer."""
        await self._answer(interaction, command, replaces_message=False)

    async def run_choice(self, interaction: Interaction, command: str | None) -> None:
        """A button or menu pick: its command runs as if typed; the result replaces the menu."""
        if command is None:
            await interaction.response.edit_message(view=None)
            return
        await self._answer(interaction, command, replaces_message=True)

    async def _answer(
        self, interaction: Interaction, command: str, *, replaces_message: bool
    ) -> None:
        with self._handlers.track():
            await self._answer_tracked(interaction, command, replaces_message=replaces_message)

    async def _answer_tracked(
        self, interaction: Interaction, command: str, *, replaces_message: bool
    ) -> None:
        locale = self._interaction_locale(interaction)
        self._bind(interaction.user, interaction.channel_id)
        try:
            if not self._may_talk(interaction.user):
                await interaction.response.send_message(text(locale, "not_allowed"), ephemeral=True)
                return
            said = self._services.commands.handle(
                _user_id(interaction.user), command, locale=locale
            )
            outcome = await self._in_time(interaction, said, replaces_message=replaces_message)
            if isinstance(outcome, TurnReply):
                if not interaction.response.is_done():
                    await interaction.response.defer(thinking=True)
                await self._stream(outcome, InteractionSurface(interaction), locale)
            else:
                surface = InteractionSurface(
                    interaction, ephemeral=True, replaces_message=replaces_message
                )
                await _send_finished(outcome, surface)
        except Exception as error:
            await self._on_interaction_error(interaction, error)

    async def suggest_sessions(
        self, interaction: Interaction, typed: str
    ) -> list[app_commands.Choice[str]]:
        """Autocomplete: the user's conversations whose title contains what they typed."""
        if not self._may_talk(interaction.user):
            return []
        try:
            listing = await asyncio.wait_for(
                self._services.store.list_sessions(_user_id(interaction.user)),
                ANSWER_WITHIN_SECONDS,
            )
        except (StoreError, TimeoutError):
            return []  # nothing to suggest; the command itself will say what is wrong
        locale = self._interaction_locale(interaction)
        choices = []
        for number, session in enumerate(listing.sessions, start=1):
            title = session.title or text(locale, "untitled")
            if typed.strip().lower() not in title.lower() and typed.strip() != str(number):
                continue
            marker = "▶ " if session.id == listing.active_id else ""
            name = f"{marker}{number}. {title}"
            choices.append(
                app_commands.Choice(name=_shortened(name, CHOICE_NAME_LIMIT), value=session.id)
            )
        return choices[:AUTOCOMPLETE_LIMIT]

    async def _in_time(
        self, interaction: Interaction, work: Awaitable[Outcome], *, replaces_message: bool
    ) -> Outcome:
        """The outcome; if it takes long (a slow Redis), the interaction is deferred first.

        A click defers as an update of its message, which the answer then replaces.
        """
        task = asyncio.ensure_future(work)
        try:
            return await asyncio.wait_for(asyncio.shield(task), ANSWER_WITHIN_SECONDS)
        except TimeoutError:
            if replaces_message:
                await interaction.response.defer()
            else:
                await interaction.response.defer(ephemeral=True, thinking=True)
            return await task

    async def _on_command_error(
        self, interaction: Interaction, error: app_commands.AppCommandError
    ) -> None:
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        await self._on_interaction_error(interaction, cause)

    async def _on_interaction_error(self, interaction: Interaction, error: BaseException) -> None:
        """Log with the traceback; tell the user something went wrong, never leave them waiting."""
        log.error("discord.handler_failed", exc_info=error)
        locale = self._interaction_locale(interaction)
        try:
            if interaction.type is discord.InteractionType.autocomplete:
                if not interaction.response.is_done():
                    await interaction.response.autocomplete([])  # nothing to suggest
            elif interaction.response.is_done():
                await interaction.followup.send(text(locale, "unexpected"), ephemeral=True)
            else:
                await interaction.response.send_message(text(locale, "unexpected"), ephemeral=True)
        except discord.HTTPException:
            log.exception("discord.error_reply_failed")

    # --- replies -------------------------------------------------------------------------------

    async def _deliver(self, outcome: Outcome, surface: Surface, locale: str) -> None:
        if isinstance(outcome, TurnReply):
            await self._stream(outcome, surface, locale)
        else:
            await _send_finished(outcome, surface)

    async def _stream(self, reply: TurnReply, surface: Surface, locale: str) -> None:
        async with ReplyStream(surface, self._pacer) as stream:
            await stream_turn(reply, stream, locale, say=surface.send_private, footer=footer)

    async def _tell_unexpected(self, surface: Surface, locale: str) -> None:
        try:
            await until_delivered(lambda: surface.send(text(locale, "unexpected")))
        except discord.HTTPException:
            log.exception("discord.error_reply_failed")

    # --- who may talk, in which language -------------------------------------------------------

    def _may_talk(self, user: discord.User | discord.Member) -> bool:
        """Everyone, unless DISCORD_ALLOWED_USERS or DISCORD_ALLOWED_ROLES name who may.

        Roles are only known in a guild: in DMs, only DISCORD_ALLOWED_USERS lets a user in.
        """
        roles = user.roles if isinstance(user, discord.Member) else ()
        return self._allowed.admits(user.id, user.name, roles)

    def _interaction_locale(self, interaction: Interaction) -> str:
        """The user's client language; remembered for their plain messages, which carry none."""
        locale = normalize_locale(interaction.locale.value)
        self._locales[interaction.user.id] = locale
        self._locales.move_to_end(interaction.user.id)
        if len(self._locales) > LOCALES_REMEMBERED:
            self._locales.popitem(last=False)
        return locale

    def _message_locale(self, message: discord.Message) -> str:
        known = self._locales.get(message.author.id)
        if known is not None:
            return known
        if message.guild is not None:
            return normalize_locale(message.guild.preferred_locale.value)
        return ENGLISH

    @staticmethod
    def _bind(user: discord.abc.User, channel_id: int | None) -> None:
        DISCORD.bind(user.id, channel_id)


# --- discord.py's client, commands and components ------------------------------------------------


class _FrontClient:
    """What both client classes add: the front they serve, and its event handlers."""

    front: DiscordFront
    tree: app_commands.CommandTree[Any]

    async def setup_hook(self) -> None:
        await self.front.setup(cast(discord.Client, self), self.tree)

    async def on_ready(self) -> None:
        self.front.on_ready(cast(discord.Client, self))

    async def on_message(self, message: discord.Message) -> None:
        await self.front.on_message(message)


class _Client(_FrontClient, discord.Client):
    def __init__(self, front: DiscordFront, **options: Any) -> None:
        super().__init__(**options)
        self.front = front
        self.tree = front._attach(self)


class _ShardedClient(_FrontClient, discord.AutoShardedClient):
    def __init__(self, front: DiscordFront, **options: Any) -> None:
        super().__init__(**options)
        self.front = front
        self.tree = front._attach(self)


class _HasFront(Protocol):
    front: DiscordFront


def _front(interaction: Interaction) -> DiscordFront:
    return cast(_HasFront, interaction.client).front


def _describe(key: str) -> locale_str:
    return locale_str(OPTION_DESCRIPTIONS[ENGLISH][key], key=key)


def _about(name: str) -> locale_str:
    return locale_str(COMMAND_DESCRIPTIONS[ENGLISH][name], key=name)


class _Translator(app_commands.Translator):
    """Command and option descriptions in Brazilian Portuguese for Portuguese clients."""

    async def translate(
        self,
        string: locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        if normalize_locale(locale.value) != PORTUGUESE or "key" not in string.extras:
            return None
        key = string.extras["key"]
        return COMMAND_DESCRIPTIONS[PORTUGUESE].get(key) or OPTION_DESCRIPTIONS[PORTUGUESE].get(key)


@app_commands.command(name="new", description=_about("new"))
@app_commands.describe(title=_describe("new.title"))
async def _new(
    interaction: Interaction, title: app_commands.Range[str, 1, 100] | None = None
) -> None:
    await _front(interaction).run_command(interaction, _typed("new", title))


@app_commands.command(name="sessions", description=_about("sessions"))
async def _sessions(interaction: Interaction) -> None:
    await _front(interaction).run_command(interaction, "/sessions")


@app_commands.command(name="switch", description=_about("switch"))
@app_commands.describe(session=_describe("switch.session"))
async def _switch(interaction: Interaction, session: app_commands.Range[str, 1, 100]) -> None:
    await _front(interaction).run_command(interaction, _typed("switch", session))


@app_commands.command(name="history", description=_about("history"))
@app_commands.describe(n=_describe("history.n"))
async def _history(
    interaction: Interaction, n: app_commands.Range[int, 1, 50] | None = None
) -> None:
    await _front(interaction).run_command(
        interaction, _typed("history", None if n is None else str(n))
    )


@app_commands.command(name="export", description=_about("export"))
async def _export(interaction: Interaction) -> None:
    await _front(interaction).run_command(interaction, "/export")


@app_commands.command(name="delete", description=_about("delete"))
@app_commands.describe(session=_describe("delete.session"))
async def _delete(
    interaction: Interaction, session: app_commands.Range[str, 1, 100] | None = None
) -> None:
    await _front(interaction).run_command(interaction, _typed("delete", session))


@app_commands.command(name="model", description=_about("model"))
@app_commands.rename(model_id="id")
@app_commands.describe(model_id=_describe("model.id"))
async def _model(
    interaction: Interaction, model_id: app_commands.Range[str, 1, 100] | None = None
) -> None:
    await _front(interaction).run_command(interaction, _typed("model", model_id))


@app_commands.command(name="retry", description=_about("retry"))
async def _retry(interaction: Interaction) -> None:
    await _front(interaction).run_command(interaction, "/retry")


@app_commands.command(name="help", description=_about("help"))
async def _help(interaction: Interaction) -> None:
    await _front(interaction).run_command(interaction, "/help")


async def _suggest(interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
    return await _front(interaction).suggest_sessions(interaction, current)


_switch.autocomplete("session")(_suggest)
_delete.autocomplete("session")(_suggest)
SLASH_COMMANDS: tuple[app_commands.Command[Any, ..., None], ...] = (
    _new, _sessions, _switch, _history, _export, _delete, _model, _retry, _help,
)  # fmt: skip


class CommandButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"cb:run:(?P<command>/.+)"
):
    def __init__(self, label: str, command: str) -> None:
        style = (
            discord.ButtonStyle.danger
            if command.endswith(" " + CONFIRM)
            else discord.ButtonStyle.primary
        )
        super().__init__(
            discord.ui.Button(
                label=_shortened(label, 80), style=style, custom_id=COMMAND_BUTTON + command
            )
        )
        self.command = command

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> CommandButton:
        return cls(getattr(item, "label", None) or "", match["command"])

    async def callback(self, interaction: Interaction) -> None:
        await _front(interaction).run_choice(interaction, self.command)


class DismissButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"cb:dismiss"):
    def __init__(self, label: str) -> None:
        button = discord.ui.Button[Any](
            label=_shortened(label, 80),
            style=discord.ButtonStyle.secondary,
            custom_id=DISMISS_BUTTON,
        )
        super().__init__(button)

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> DismissButton:
        return cls(getattr(item, "label", None) or "")

    async def callback(self, interaction: Interaction) -> None:
        await _front(interaction).run_choice(interaction, None)


class CommandMenu(discord.ui.DynamicItem[discord.ui.Select[Any]], template=r"cb:menu"):
    """A menu whose options' values are the commands they run."""

    def __init__(self, choices: tuple[Choice, ...] = ()) -> None:
        options = [
            discord.SelectOption(label=_shortened(choice.label, 100), value=choice.command or "")
            for choice in choices[:MENU_LIMIT]
        ]
        super().__init__(
            discord.ui.Select(
                custom_id=COMMAND_MENU, options=options or [discord.SelectOption(label="-")]
            )
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> CommandMenu:
        return cls()

    async def callback(self, interaction: Interaction) -> None:
        data: Any = interaction.data or {}
        values = data.get("values") or []
        command = str(values[0]) if values else None
        await _front(interaction).run_choice(interaction, command or None)


async def _send_finished(outcome: Reply | FileReply, surface: Surface) -> None:
    if isinstance(outcome, FileReply):
        await send_file(
            surface, outcome.caption, filename=outcome.filename, content=outcome.content
        )
    else:
        await send_text(surface, outcome.text, view=_view_of(outcome))


def _view_of(reply: Reply) -> discord.ui.View | None:
    """Choices that each run a command are a menu; a question with a way out is buttons."""
    if not reply.choices:
        return None
    view = discord.ui.View(timeout=None)
    if all(choice.command for choice in reply.choices):
        view.add_item(CommandMenu(reply.choices))
        return view
    for choice in reply.choices:
        view.add_item(
            CommandButton(choice.label, choice.command)
            if choice.command
            else DismissButton(choice.label)
        )
    return view


# --- helpers -----------------------------------------------------------------------------------


def _point_discord_py_at(settings: Settings) -> None:
    """DISCORD_API_BASE_URL / DISCORD_GATEWAY_URL: discord.py has no option, only these globals."""
    if settings.discord_api_base_url is not None:
        Route.BASE = settings.discord_api_base_url
    if settings.discord_gateway_url is not None:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


async def _sync_if_changed(
    client: discord.Client, tree: app_commands.CommandTree[Any], guild: discord.Object | None
) -> None:
    """PUT the command list only when Discord's differs: every PUT counts against a daily limit."""
    application_id = client.application_id
    if application_id is None:
        raise discord.ClientException("no application id after login")
    translator = tree.translator
    wanted = [
        await command.get_translated_payload(tree, translator)
        if translator
        else command.to_dict(tree)
        for command in tree.get_commands(guild=guild)
    ]
    route = (
        Route("GET", "/applications/{application_id}/commands", application_id=application_id)
        if guild is None
        else Route("GET", "/applications/{application_id}/guilds/{guild_id}/commands",
                   application_id=application_id, guild_id=guild.id)
    )  # fmt: skip
    current = await client.http.request(route, params={"with_localizations": "true"})
    scope = {"guild": guild.id} if guild is not None else {}
    if _signature(wanted) == _signature(current):
        log.info("discord.commands_unchanged", **scope)
        return
    await tree.sync(guild=guild)
    log.info("discord.commands_synced", commands=len(wanted), **scope)


_COMPARED_KEYS = (
    "name", "description", "type", "options", "required", "autocomplete", "choices", "value",
    "min_value", "max_value", "min_length", "max_length", "name_localizations",
    "description_localizations", "nsfw",
)  # fmt: skip


def _signature(commands: Any) -> Any:
    """What we define of a command list, in one comparable shape; Discord's extras are ignored."""
    if isinstance(commands, list):
        items = [_signature(item) for item in commands]
        return sorted(items, key=repr) if all(isinstance(i, dict) for i in items) else items
    if isinstance(commands, dict):
        kept = {key: _signature(commands.get(key)) for key in _COMPARED_KEYS}
        return {key: value for key, value in kept.items() if value not in (None, False, [], {})}
    return commands


def _typed(name: str, argument: str | None) -> str:
    """The command as if typed; line breaks cannot smuggle anything past the parser."""
    return f"/{name} {' '.join(argument.split())}".rstrip() if argument else f"/{name}"


def _without_mention(content: str, bot_id: int) -> str:
    return re.sub(rf"<@!?{bot_id}>", "", content).strip()


def _shortened(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _user_id(user: discord.abc.User) -> str:
    return DISCORD.user_id(user.id)
