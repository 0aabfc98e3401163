"""The slash commands, described in English and Brazilian Portuguese, and published to Discord
only when they changed.

Each command stands for the command line it would be typed as (`/switch 2`), which the core
runs like any other message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import discord
import structlog
from discord import app_commands
from discord.app_commands import locale_str
from discord.http import Route

from bots.discord.answerer import Interaction, answerer_of
from core.messages import (
    COMMAND_DESCRIPTIONS,
    ENGLISH,
    OPTION_DESCRIPTIONS,
    PORTUGUESE,
    normalize_locale,
)
from core.sessions.limits import MAX_SYSTEM_PROMPT_LENGTH

log = structlog.get_logger(__name__)

SlashCommand = app_commands.Command[Any, ..., None]


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


# --- the commands --------------------------------------------------------------------------------


def _without_options(name: str) -> SlashCommand:
    """A command that takes nothing: it runs `/<name>`."""

    async def run(interaction: Interaction) -> None:
        await answerer_of(interaction).run_command(interaction, f"/{name}")

    return app_commands.command(name=name, description=_about(name))(run)


@app_commands.command(name="new", description=_about("new"))
@app_commands.describe(title=_describe("new.title"))
async def _new(
    interaction: Interaction, title: app_commands.Range[str, 1, 100] | None = None
) -> None:
    await answerer_of(interaction).run_command(interaction, _typed("new", title))


@app_commands.command(name="switch", description=_about("switch"))
@app_commands.describe(session=_describe("switch.session"))
async def _switch(interaction: Interaction, session: app_commands.Range[str, 1, 100]) -> None:
    await answerer_of(interaction).run_command(interaction, _typed("switch", session))


@app_commands.command(name="history", description=_about("history"))
@app_commands.describe(n=_describe("history.n"))
async def _history(
    interaction: Interaction, n: app_commands.Range[int, 1, 50] | None = None
) -> None:
    typed = _typed("history", None if n is None else str(n))
    await answerer_of(interaction).run_command(interaction, typed)


@app_commands.command(name="delete", description=_about("delete"))
@app_commands.describe(session=_describe("delete.session"))
async def _delete(
    interaction: Interaction, session: app_commands.Range[str, 1, 100] | None = None
) -> None:
    await answerer_of(interaction).run_command(interaction, _typed("delete", session))


@app_commands.command(name="rename", description=_about("rename"))
@app_commands.describe(title=_describe("rename.title"))
async def _rename(interaction: Interaction, title: app_commands.Range[str, 1, 100]) -> None:
    await answerer_of(interaction).run_command(interaction, _typed("rename", title))


@app_commands.command(name="model", description=_about("model"))
@app_commands.rename(model_id="id")
@app_commands.describe(model_id=_describe("model.id"))
async def _model(
    interaction: Interaction, model_id: app_commands.Range[str, 1, 100] | None = None
) -> None:
    await answerer_of(interaction).run_command(interaction, _typed("model", model_id))


@app_commands.command(name="persona", description=_about("persona"))
@app_commands.describe(persona=_describe("persona.persona"))
async def _persona(
    interaction: Interaction,
    persona: app_commands.Range[str, 1, MAX_SYSTEM_PROMPT_LENGTH] | None = None,
) -> None:
    await answerer_of(interaction).run_command(interaction, _typed("persona", persona))


async def _suggest(interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
    return await answerer_of(interaction).suggest_sessions(interaction, current)


_switch.autocomplete("session")(_suggest)
_delete.autocomplete("session")(_suggest)
SLASH_COMMANDS: tuple[SlashCommand, ...] = (
    _new, _without_options("sessions"), _switch, _history, _without_options("export"), _delete,
    _rename, _model, _persona, _without_options("retry"), _without_options("stop"),
    _without_options("usage"), _without_options("help"),
)  # fmt: skip


def _typed(name: str, argument: str | None) -> str:
    """The command as if typed; line breaks cannot smuggle anything past the parser."""
    return f"/{name} {' '.join(argument.split())}".rstrip() if argument else f"/{name}"


# --- publishing them -----------------------------------------------------------------------------


async def publish_commands(
    client: discord.Client, tree: app_commands.CommandTree[Any], guild_ids: Iterable[int]
) -> None:
    """After login, before the gateway: the command lists, synced only where they changed.

    With DISCORD_GUILD_IDS the commands live in those guilds, and the global list is
    emptied: global copies left from an earlier run would show every command twice.
    """
    await tree.set_translator(_Translator())
    guilds = [discord.Object(guild_id) for guild_id in guild_ids]
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
