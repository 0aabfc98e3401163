"""Answering slash commands, button and menu clicks, and autocomplete within Discord's window.

An interaction unanswered after 3 s is lost: past ANSWER_WITHIN_SECONDS (a slow Redis), the
answer is deferred first and sent when ready. A chat answer is public and streamed; every other
answer is private (ephemeral), and a click's answer replaces the message clicked. Whatever
fails is logged with its traceback and the user is told; nobody is left waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import discord
import structlog
from discord import app_commands

from bots.chatfront.access import AllowList
from bots.chatfront.pacing import ChatPacer, RunningHandlers
from bots.discord.answerer import Interaction
from bots.discord.components import shortened
from bots.discord.replies import send_finished, stream_answer
from bots.discord.stream import InteractionSurface
from bots.discord.users import DISCORD, Locales, may_talk, speaker_in
from bots.runtime import Services
from core.commands import Outcome, TurnReply
from core.errors import ChatbridgeError, SessionNotFound, StoreError
from core.messages import describe, text
from core.sessions.store import SessionList
from core.spaces import GroupSessions, Speaker

log = structlog.get_logger(__name__)

ANSWER_WITHIN_SECONDS = 2.0
AUTOCOMPLETE_LIMIT = 25  # Discord shows at most 25 choices, each at most 100 characters
CHOICE_NAME_LIMIT = 100


class InteractionAnswers:
    """The front's answers to interactions: the `Answerer` its commands and components call."""

    def __init__(
        self,
        services: Services,
        allowed: AllowList,
        locales: Locales,
        pacer: ChatPacer,
        handlers: RunningHandlers,
        *,
        group_sessions: GroupSessions = GroupSessions.PER_USER,
    ) -> None:
        self._services = services
        self._group_sessions = group_sessions
        self._allowed = allowed
        self._locales = locales
        self._pacer = pacer
        self._handlers = handlers

    async def run_command(self, interaction: Interaction, command: str) -> None:
        """A slash command: answered in time, privately unless it is a chat answer."""
        await self._answer(interaction, command, replaces_message=False)

    async def run_choice(self, interaction: Interaction, command: str | None) -> None:
        """A button or menu pick: its command runs as if typed; the result replaces the menu."""
        if command is None:
            await interaction.response.edit_message(view=None)
            return
        await self._answer(interaction, command, replaces_message=True)

    async def stop_answer(self, interaction: Interaction, session_id: str) -> None:
        """⏹: acknowledged first (the answer's own message shows it stopped), then stopped."""
        with self._handlers.track():
            try:
                if not may_talk(self._allowed, interaction.user):
                    locale = self._locales.of_interaction(interaction)
                    await interaction.response.send_message(
                        text(locale, "not_allowed"), ephemeral=True
                    )
                    return
                await interaction.response.defer()
                space = self._speaker(interaction).space
                await self._services.chat.stop_answer(session_id, owner=space)
            except SessionNotFound:  # someone else's answer (or long gone)
                locale = self._locales.of_interaction(interaction)
                await interaction.followup.send(text(locale, "not_your_buttons"), ephemeral=True)
            except ChatbridgeError as error:
                locale = self._locales.of_interaction(interaction)
                await interaction.followup.send(describe(error, locale), ephemeral=True)
            except Exception as error:
                await self._on_error(interaction, error)

    async def suggest_sessions(
        self, interaction: Interaction, typed: str
    ) -> list[app_commands.Choice[str]]:
        """Autocomplete: the user's conversations whose title contains what they typed."""
        if not may_talk(self._allowed, interaction.user):
            return []
        try:
            listing = await asyncio.wait_for(
                self._services.store.list_sessions(self._speaker(interaction).space),
                ANSWER_WITHIN_SECONDS,
            )
        except (StoreError, TimeoutError):
            return []  # nothing to suggest; the command itself will say what is wrong
        locale = self._locales.of_interaction(interaction)
        return _session_choices(listing, typed, locale)

    async def on_command_error(
        self, interaction: Interaction, error: app_commands.AppCommandError
    ) -> None:
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        await self._on_error(interaction, cause)

    async def _answer(
        self, interaction: Interaction, command: str, *, replaces_message: bool
    ) -> None:
        with self._handlers.track():
            await self._answer_tracked(interaction, command, replaces_message=replaces_message)

    async def _answer_tracked(
        self, interaction: Interaction, command: str, *, replaces_message: bool
    ) -> None:
        locale = self._locales.of_interaction(interaction)
        DISCORD.bind(interaction.user.id, interaction.channel_id)
        try:
            if not may_talk(self._allowed, interaction.user):
                await interaction.response.send_message(text(locale, "not_allowed"), ephemeral=True)
                return
            said = self._services.commands.handle(
                self._speaker(interaction), command, locale=locale
            )
            outcome = await _in_time(interaction, said, replaces_message=replaces_message)
            if isinstance(outcome, TurnReply):
                if not interaction.response.is_done():
                    await interaction.response.defer(thinking=True)
                await stream_answer(outcome, InteractionSurface(interaction), locale, self._pacer)
            else:
                surface = InteractionSurface(
                    interaction, ephemeral=True, replaces_message=replaces_message
                )
                await send_finished(outcome, surface)
        except Exception as error:
            await self._on_error(interaction, error)

    def _speaker(self, interaction: Interaction) -> Speaker:
        return speaker_in(
            interaction.user, interaction.channel_id or 0,
            in_guild=interaction.guild_id is not None,
            may_moderate=interaction.permissions.manage_messages, mode=self._group_sessions,
        )  # fmt: skip

    async def _on_error(self, interaction: Interaction, error: BaseException) -> None:
        """Log with the traceback; tell the user something went wrong, never leave them waiting."""
        log.error("discord.handler_failed", exc_info=error)
        locale = self._locales.of_interaction(interaction)
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


async def _in_time(
    interaction: Interaction, work: Awaitable[Outcome], *, replaces_message: bool
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


def _session_choices(
    listing: SessionList, typed: str, locale: str
) -> list[app_commands.Choice[str]]:
    """The sessions whose title contains `typed`, or whose number it is; the active one marked."""
    choices = []
    for number, session in enumerate(listing.sessions, start=1):
        title = session.title or text(locale, "untitled")
        if typed.strip().lower() not in title.lower() and typed.strip() != str(number):
            continue
        marker = "▶ " if session.id == listing.active_id else ""
        name = f"{marker}{number}. {title}"
        choices.append(
            app_commands.Choice(name=shortened(name, CHOICE_NAME_LIMIT), value=session.id)
        )
    return choices[:AUTOCOMPLETE_LIMIT]
