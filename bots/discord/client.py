"""discord.py's client as the front uses it: sharded or not, with or without the Message
Content intent, its commands and components attached, pointed at DISCORD_API_BASE_URL and
DISCORD_GATEWAY_URL when they are set (the tests' fake Discord)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import discord
import structlog
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bots.discord.answerer import Answerer
from bots.discord.commands import SLASH_COMMANDS, publish_commands
from bots.discord.components import PERSISTENT_COMPONENTS
from core.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class FrontHooks:
    """Where a client sends what arrives: messages to the front, interactions to the answerer."""

    on_message: Callable[[discord.Message], Awaitable[None]]
    answerer: Answerer


def build_client(settings: Settings, hooks: FrontHooks, *, message_content: bool) -> discord.Client:
    """A new client (a discord.py client starts only once): guilds, guild and direct messages."""
    intents = discord.Intents.none()
    intents.guilds = intents.guild_messages = intents.dm_messages = True
    intents.message_content = message_content
    options: dict[str, Any] = {
        "intents": intents,
        "allowed_mentions": discord.AllowedMentions.none(),
    }
    if settings.discord_shard_count is None:
        return _Client(hooks, settings.discord_guild_ids, **options)
    return _ShardedClient(
        hooks,
        settings.discord_guild_ids,
        shard_count=settings.discord_shard_count,
        shard_ids=list(settings.discord_shard_ids) or None,
        **options,
    )


def point_discord_py_at(settings: Settings) -> None:
    """DISCORD_API_BASE_URL / DISCORD_GATEWAY_URL: discord.py has no option, only these globals."""
    if settings.discord_api_base_url is not None:
        Route.BASE = settings.discord_api_base_url
    if settings.discord_gateway_url is not None:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


class _FrontClient:
    """What both client classes add: the command tree, the answerer that commands and
    components find through `answerer_of`, and the front's message handler."""

    answerer: Answerer
    tree: app_commands.CommandTree[Any]
    _front_hooks: FrontHooks
    _guild_ids: tuple[int, ...]

    def _serve(self, hooks: FrontHooks, guild_ids: Iterable[int]) -> None:
        client = cast(discord.Client, self)
        self.answerer = hooks.answerer
        self._front_hooks = hooks
        self._guild_ids = tuple(guild_ids)
        self.tree = app_commands.CommandTree(client)
        for command in SLASH_COMMANDS:
            self.tree.add_command(command)
        self.tree.on_error = hooks.answerer.on_command_error  # type: ignore[method-assign]
        client.add_dynamic_items(*PERSISTENT_COMPONENTS)

    async def setup_hook(self) -> None:
        await publish_commands(cast(discord.Client, self), self.tree, self._guild_ids)

    async def on_ready(self) -> None:
        client = cast(discord.Client, self)
        user = client.user
        log.info(
            "discord.ready",
            bot=user.name if user else None,
            guilds=len(client.guilds),
            shards=client.shard_count,
            message_content=client.intents.message_content,
        )

    async def on_message(self, message: discord.Message) -> None:
        await self._front_hooks.on_message(message)


class _Client(_FrontClient, discord.Client):
    def __init__(self, hooks: FrontHooks, guild_ids: Iterable[int], **options: Any) -> None:
        super().__init__(**options)
        self._serve(hooks, guild_ids)


class _ShardedClient(_FrontClient, discord.AutoShardedClient):
    def __init__(self, hooks: FrontHooks, guild_ids: Iterable[int], **options: Any) -> None:
        super().__init__(**options)
        self._serve(hooks, guild_ids)
