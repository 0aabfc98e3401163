"""What slash commands, buttons and menus call to be answered: the `Answerer` port.

Commands and components are module-level objects that discord.py finds again from any
interaction, after a restart too. They reach the front's answers through the client the
interaction came to, which carries an `Answerer`: they never import the front.
"""

from __future__ import annotations

from typing import Protocol, cast

import discord
from discord import app_commands

Interaction = discord.Interaction[discord.Client]


class Answerer(Protocol):
    async def run_command(self, interaction: Interaction, command: str) -> None:
        """A slash command, as the command line it stands for."""
        ...

    async def run_choice(self, interaction: Interaction, command: str | None) -> None:
        """A button or menu pick: its command, or None for a button that only closes."""
        ...

    async def stop_answer(self, interaction: Interaction, session_id: str) -> None:
        """⏹ under an answer being written: acknowledged at once, the answer stopped."""
        ...

    async def suggest_sessions(
        self, interaction: Interaction, typed: str
    ) -> list[app_commands.Choice[str]]: ...

    async def on_command_error(
        self, interaction: Interaction, error: app_commands.AppCommandError
    ) -> None:
        """What a slash command raised: logged, and the user told."""
        ...


class _CarriesAnswerer(Protocol):
    answerer: Answerer


def answerer_of(interaction: Interaction) -> Answerer:
    """The answerer of the client this interaction came to."""
    return cast(_CarriesAnswerer, interaction.client).answerer
