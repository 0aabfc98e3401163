"""Buttons and menus under a reply: the choices a core reply offers, clickable.

They are persistent: each carries the command it runs in its custom_id (at most 100
characters), so any replica can serve a click, also after a restart.
"""

from __future__ import annotations

import re
from typing import Any

import discord

from bots.discord.answerer import Interaction, answerer_of
from core.commands import CONFIRM, Choice, Reply

MENU_LIMIT = 25  # Discord shows at most 25 options in a menu
MENU_LABEL_LIMIT = 100
BUTTON_LABEL_LIMIT = 80
COMMAND_BUTTON = "cb:run:"
DISMISS_BUTTON = "cb:dismiss"
COMMAND_MENU = "cb:menu"
STOP_BUTTON = "cb:stop:"


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
                label=shortened(label, BUTTON_LABEL_LIMIT),
                style=style,
                custom_id=COMMAND_BUTTON + command,
            )
        )
        self.command = command

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> CommandButton:
        return cls(getattr(item, "label", None) or "", match["command"])

    async def callback(self, interaction: Interaction) -> None:
        await answerer_of(interaction).run_choice(interaction, self.command)


class DismissButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"cb:dismiss"):
    def __init__(self, label: str) -> None:
        button = discord.ui.Button[Any](
            label=shortened(label, BUTTON_LABEL_LIMIT),
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
        await answerer_of(interaction).run_choice(interaction, None)


class CommandMenu(discord.ui.DynamicItem[discord.ui.Select[Any]], template=r"cb:menu"):
    """A menu whose options' values are the commands they run."""

    def __init__(self, choices: tuple[Choice, ...] = ()) -> None:
        options = [
            discord.SelectOption(
                label=shortened(choice.label, MENU_LABEL_LIMIT), value=choice.command or ""
            )
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
        await answerer_of(interaction).run_choice(interaction, command or None)


class StopButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"cb:stop:(?P<session>[0-9a-f]{32})"
):
    """⏹ under an answer being written: stops it, on whichever replica writes it."""

    def __init__(self, label: str, session_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label=shortened(label, BUTTON_LABEL_LIMIT),
                style=discord.ButtonStyle.secondary,
                custom_id=STOP_BUTTON + session_id,
            )
        )
        self.session_id = session_id

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> StopButton:
        return cls(getattr(item, "label", None) or "", match["session"])

    async def callback(self, interaction: Interaction) -> None:
        await answerer_of(interaction).stop_answer(interaction, self.session_id)


PERSISTENT_COMPONENTS = (CommandButton, DismissButton, CommandMenu, StopButton)


def view_of(reply: Reply) -> discord.ui.View | None:
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


def shortened(label: str, limit: int) -> str:
    """At most `limit` characters, an ellipsis saying where it was cut."""
    return label if len(label) <= limit else label[: limit - 1] + "…"
