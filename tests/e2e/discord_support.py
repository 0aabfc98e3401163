"""What the Discord end-to-end suites share: the people who talk to the bot, and how to wait
for what they would see. The fake Discord (`tests/fakes/discord_server.py`) plays Discord."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tests.e2e.conftest import Service
from tests.fakes.discord_payloads import StoredMessage
from tests.fakes.discord_server import (
    DEFAULT_CHANNEL_ID,
    DEFAULT_GUILD_ID,
    DEFAULT_USER_ID,
    FakeDiscord,
    InteractionRecord,
)

GUILD = DEFAULT_GUILD_ID
CHANNEL = DEFAULT_CHANNEL_ID
FOOTER_MARK = "\n-# "  # the small line under a finished answer: model and usage
WAIT_SECONDS = 10.0

StartBot = Callable[..., Awaitable[Service]]


@dataclass
class Person:
    """One Discord user: in their DMs with the bot, or in a guild channel (`guild_id` set)."""

    fake: FakeDiscord
    user_id: int = DEFAULT_USER_ID
    username: str = "alice"
    locale: str = "en-US"
    guild_id: int | None = None
    channel_id: int | None = None

    @property
    def where(self) -> int:
        """The channel they talk in (their DM channel is opened by their first message)."""
        if self.guild_id is not None:
            return self.channel_id or CHANNEL
        channel = self.fake.dm_channel_of(self.user_id)
        if channel is None:
            raise AssertionError(f"{self.username} has no DM channel yet")
        return channel

    def posts(self, content: str, **options: Any) -> dict[str, Any]:
        return self.fake.user_posts(
            content,
            author_id=self.user_id,
            channel_id=self.channel_id,
            guild_id=self.guild_id,
            username=self.username,
            **options,
        )

    def sends_voice_message(self, audio: bytes, **options: Any) -> dict[str, Any]:
        return self.fake.user_sends_voice_message(
            audio,
            author_id=self.user_id,
            channel_id=self.channel_id,
            guild_id=self.guild_id,
            username=self.username,
            **options,
        )

    def runs(self, command: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.fake.user_runs(
            command,
            options,
            user_id=self.user_id,
            channel_id=self.channel_id,
            guild_id=self.guild_id,
            locale=self.locale,
            username=self.username,
        )

    async def answer_to(self, interaction: dict[str, Any]) -> StoredMessage:
        """The message that answers an interaction, once it holds text (not "thinking…")."""
        record = self.fake.responses(interaction["id"])
        return await self.fake.wait_for(
            lambda: _answered(record), WAIT_SECONDS, what=f"an answer to {interaction['id']}"
        )

    async def command(self, command: str, options: dict[str, Any] | None = None) -> StoredMessage:
        """Run a slash command and return the bot's answer to it."""
        return await self.answer_to(self.runs(command, options))

    async def finished_answer(self, after: int = 0) -> list[StoredMessage]:
        """The bot's messages in their channel from the `after`-th on, once the footer shows."""

        def done() -> list[StoredMessage] | None:
            shown = self.fake.messages(self.where)[after:]
            return shown if shown and FOOTER_MARK in shown[-1].content else None

        return await self.fake.wait_for(done, WAIT_SECONDS, what="a finished answer")


def _answered(record: InteractionRecord) -> StoredMessage | None:
    """The response once it holds text; a follow-up when the response was taken back."""
    if record.callback_type == 7:  # a click that replaced its message
        return record.original
    for message in [record.original, *record.followups]:
        if message is not None and not message.is_deleted and not message.is_loading:
            return message if message.content else None
    return None


def answer_text(messages: list[StoredMessage]) -> str:
    """The answer as the user reads it: every part joined, the footer left out."""
    joined = "\n".join(m.content for m in messages)
    return joined.split(FOOTER_MARK)[0]
