"""Showing a growing answer in Discord: one message at the first text, then paced edits.

Where the answer goes is a `Surface`: a channel (a reply to the user's message) or an
interaction (its deferred "thinking…" response, then follow-ups). Edits are paced per channel
(DISCORD_EDIT_INTERVAL; Discord allows about five per five seconds). discord.py waits out
429s itself; a preview it still fails to deliver is skipped, the final text is retried until
it lands. Past 2000 characters the answer continues in further messages, split at paragraph or
code-block boundaries; a small footer line under the last one names the model and the usage.

An interaction's token serves its response and follow-ups for 15 minutes only: a public answer
still streaming then goes on through the channel (its messages edited, new parts sent there).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

import discord
import structlog

from bots.chatfront import reply_stream
from bots.chatfront.pacing import ChatPacer
from bots.chatfront.reply_stream import PREVIEW_ROOM, RetryPolicy
from bots.chatfront.text_split import split_message
from bots.discord.components import StopButton
from core.conversation import Message

log = structlog.get_logger(__name__)

MESSAGE_LIMIT = 2000
PART_LIMIT = MESSAGE_LIMIT - PREVIEW_ROOM
TYPING_EVERY_SECONDS = 8.0  # Discord shows "typing" for 10 s
FINAL_ATTEMPTS = 5
FINAL_RETRY_SECONDS = 2.0
# Never ping anyone because a model or a user wrote "@everyone" or "<@id>"; a reply may notify
# the user it answers.
NO_PINGS = discord.AllowedMentions(everyone=False, users=False, roles=False, replied_user=True)
# An interaction's token lives 15 minutes (Discord's `expires_at`); it is given up a little
# earlier, so that no request is sent on a token about to lapse.
TOKEN_MARGIN = dt.timedelta(seconds=30)
INVALID_WEBHOOK_TOKEN = 50027  # 401: the token has expired
UNKNOWN_WEBHOOK = 10015  # 404: the token is not (or no longer) known

T = TypeVar("T")
Sent = discord.Message  # InteractionMessage and WebhookMessage are Messages too


class Surface(Protocol):
    """Where an answer's messages go."""

    @property
    def pace_key(self) -> int:
        """What edit pacing is counted per: the channel."""
        ...

    async def send(
        self, content: str, *, view: discord.ui.View | None = None, file: discord.File | None = None
    ) -> Sent: ...

    async def edit(self, message: Sent, content: str, *, view: discord.ui.View | None) -> None:
        """Show `content` in `message`, with `view`'s components (None: none)."""
        ...

    async def send_private(self, content: str) -> None:
        """A notice only the user should see, where the platform allows it."""
        ...

    async def show_typing(self) -> None: ...


@dataclass
class ChannelSurface:
    """Messages in a channel, the first replying to the user's message."""

    channel: discord.abc.Messageable
    channel_id: int
    reply_to: discord.Message | None = None
    _has_sent: bool = False

    @property
    def pace_key(self) -> int:
        return self.channel_id

    async def send(
        self, content: str, *, view: discord.ui.View | None = None, file: discord.File | None = None
    ) -> Sent:
        reference: Any = None  # not a reply
        if self.reply_to is not None and not self._has_sent:
            reference = self.reply_to.to_reference(fail_if_not_exists=False)
        sent: Sent = await self.channel.send(
            content,
            reference=reference,
            allowed_mentions=NO_PINGS,
            view=_view_or_missing(view),
            file=_or_missing(file),
        )
        self._has_sent = True
        return sent

    async def edit(self, message: Sent, content: str, *, view: discord.ui.View | None) -> None:
        await message.edit(content=content, view=view)

    async def send_private(self, content: str) -> None:
        await send_text(self, content)  # a channel has no private messages

    async def show_typing(self) -> None:
        await self.channel.typing()


@dataclass
class InteractionSurface:
    """An interaction's response, then follow-ups.

    The first text answers the interaction; if it was deferred, it replaces "thinking…"; with
    `replaces_message` (a click), it replaces the message that was clicked, buttons and all.
    """

    interaction: discord.Interaction[discord.Client]
    ephemeral: bool = False
    replaces_message: bool = False
    _has_sent: bool = False
    _is_token_refused: bool = field(default=False, repr=False)

    @property
    def pace_key(self) -> int:
        return self.interaction.channel_id or self.interaction.id

    async def send(
        self, content: str, *, view: discord.ui.View | None = None, file: discord.File | None = None
    ) -> Sent:
        if not self.interaction.response.is_done():
            return await self._respond(content, view, file)
        if self._is_token_over():
            return await self._send_in_channel(content, view, file)
        try:
            return await self._send_with_token(content, view, file)
        except discord.HTTPException as error:
            if not self._gives_up_token(error):
                raise
            return await self._send_in_channel(content, view, file)

    async def _send_with_token(
        self, content: str, view: discord.ui.View | None, file: discord.File | None
    ) -> Sent:
        if not self._has_sent:
            self._has_sent = True
            return await self.interaction.edit_original_response(
                content=content, allowed_mentions=NO_PINGS, view=view,
                attachments=[file] if file is not None else discord.utils.MISSING,
            )  # fmt: skip
        followup: Sent = await self.interaction.followup.send(
            content,
            ephemeral=self.ephemeral,
            wait=True,
            allowed_mentions=NO_PINGS,
            view=_view_or_missing(view),
            file=_or_missing(file),
        )
        return followup

    async def _respond(
        self, content: str, view: discord.ui.View | None, file: discord.File | None
    ) -> Sent:
        response = self.interaction.response
        if self.replaces_message:
            callback = await response.edit_message(
                content=content, view=view, allowed_mentions=NO_PINGS,
                attachments=[file] if file is not None else discord.utils.MISSING,
            )  # fmt: skip
        else:
            callback = await response.send_message(
                content,
                ephemeral=self.ephemeral,
                allowed_mentions=NO_PINGS,
                view=_view_or_missing(view),
                file=_or_missing(file),
            )
        self._has_sent = True
        if callback is not None and isinstance(callback.resource, discord.InteractionMessage):
            return callback.resource
        return await self.interaction.original_response()

    async def edit(self, message: Sent, content: str, *, view: discord.ui.View | None) -> None:
        if self._is_token_over():
            await self._edit_in_channel(message, content, view)
            return
        try:
            await message.edit(content=content, view=view)
        except discord.HTTPException as error:
            if not self._gives_up_token(error):
                raise
            await self._edit_in_channel(message, content, view)

    # --- past the token's life: a public answer goes on through the channel -------------------

    def _is_token_over(self) -> bool:
        """Whether the token is known dead or about to be (a private answer has no way around)."""
        if self.ephemeral:
            return False
        lapses = self.interaction.expires_at - TOKEN_MARGIN
        return self._is_token_refused or discord.utils.utcnow() >= lapses

    def _gives_up_token(self, error: discord.HTTPException) -> bool:
        """Whether `error` is Discord refusing the expired token, for a public answer."""
        refused = (error.status == 401 and error.code == INVALID_WEBHOOK_TOKEN) or (
            error.status == 404 and error.code == UNKNOWN_WEBHOOK
        )
        if refused and not self.ephemeral:
            log.warning("discord.interaction_token_expired", status=error.status, code=error.code)
            self._is_token_refused = True
            return True
        return False

    def _channel(self) -> discord.PartialMessageable:
        channel_id = self.interaction.channel_id
        if channel_id is None:  # an interaction from a channel we can't address
            raise discord.ClientException("the interaction's token expired and it has no channel")
        guild_id = self.interaction.guild_id
        return self.interaction.client.get_partial_messageable(channel_id, guild_id=guild_id)

    async def _send_in_channel(
        self, content: str, view: discord.ui.View | None, file: discord.File | None
    ) -> Sent:
        if file is not None:
            file.reset()  # a failed attempt through the token may have read it
        sent: Sent = await self._channel().send(
            content, allowed_mentions=NO_PINGS, view=_view_or_missing(view), file=_or_missing(file)
        )
        self._has_sent = True
        return sent

    async def _edit_in_channel(
        self, message: Sent, content: str, view: discord.ui.View | None
    ) -> None:
        """A public response is a message of the bot: the channel's endpoint edits it too."""
        await self._channel().get_partial_message(message.id).edit(content=content, view=view)

    async def send_private(self, content: str) -> None:
        """A public "thinking…" that ends in an error is taken back; the error goes privately.

        Past the token's life nothing can be said privately any more: it is said in the channel.
        """
        if self._is_token_over():
            await send_text(self, content)
            return
        if self.ephemeral or self._has_sent or not self.interaction.response.is_done():
            await send_text(replace(self, ephemeral=True), content)
            return
        with contextlib.suppress(discord.NotFound):
            await self.interaction.delete_original_response()
        self._has_sent = True  # what follows are follow-ups
        await send_text(replace(self, ephemeral=True), content)

    async def show_typing(self) -> None:
        return None  # a deferred interaction already shows "thinking…"


def _view_or_missing(view: discord.ui.View | None) -> Any:
    """discord.py's "leave as is": `view=None` would remove a message's components."""
    return view if view is not None else discord.utils.MISSING


def _or_missing(file: discord.File | None) -> Any:
    return file if file is not None else discord.utils.MISSING


def discord_parts(markdown: str) -> list[str]:
    """Parts of at most PART_LIMIT characters (Discord counts code points, as `len` does)."""
    return [part for part in split_message(markdown, PART_LIMIT) if part.strip()]


def footer(reply: Message | None) -> str:
    """`-# model · 12 → 345 tokens`: Discord's small text, under the answer."""
    if reply is None or reply.model is None:
        return ""
    line = f"-# {reply.model}"
    if reply.usage is not None:
        line += f" · {reply.usage.prompt_tokens} → {reply.usage.completion_tokens} tokens"
    return line


async def send_file(surface: Surface, caption: str, *, filename: str, content: bytes) -> Sent:
    """A document as an attachment under its caption, retried like a final text."""

    def attempt() -> Awaitable[Sent]:
        # A File is read as it is sent: every attempt needs a new one.
        return surface.send(caption, file=discord.File(io.BytesIO(content), filename=filename))

    return await until_delivered(attempt)


async def send_text(
    surface: Surface, markdown: str, *, view: discord.ui.View | None = None
) -> list[Sent]:
    """A finished reply, split past the limit; `view` (buttons, a menu) under the last part."""
    parts = discord_parts(markdown) or ["…"]
    sent = []
    for index, part in enumerate(parts):
        part_view = view if index == len(parts) - 1 else None
        sent.append(await until_delivered(lambda p=part, v=part_view: surface.send(p, view=v)))  # type: ignore[misc]
    return sent


class DiscordRetries(RetryPolicy[discord.HTTPException]):
    """What discord.py gave up on after its own retries: rate limits and Discord's own failures
    are tried again, later each time; a refused message would be refused again."""

    error_type = discord.HTTPException
    attempts = FINAL_ATTEMPTS

    def is_retryable(self, error: discord.HTTPException) -> bool:
        return error.status == 429 or error.status >= 500

    def seconds_before_retry(self, error: discord.HTTPException, attempt: int) -> float:
        return FINAL_RETRY_SECONDS * attempt

    def note_retry(self, error: discord.HTTPException, attempt: int, seconds: float) -> None:
        log.warning("discord.final_retry", status=error.status, attempt=attempt)


RETRIES = DiscordRetries()


async def until_delivered(attempt: Callable[[], Awaitable[T]]) -> T:
    """A final text must not be lost: retry what discord.py gave up on after its own retries."""
    return await reply_stream.until_delivered(attempt, RETRIES)


class ReplyStream(reply_stream.ReplyStream[Sent, discord.HTTPException]):
    """`async with ReplyStream(surface, pacer) as s: await s.add(d) ...; await s.finish()`."""

    def __init__(self, surface: Surface, pacer: ChatPacer, *, stop_label: str = "⏹") -> None:
        self.surface = surface
        self._stop_label = stop_label
        super().__init__(pacer, typing_every=TYPING_EVERY_SECONDS, retries=RETRIES)

    @property
    def _pace_key(self) -> Hashable:
        return self.surface.pace_key

    def _parts_of(self, text: str) -> list[str]:
        return discord_parts(text)

    async def _send(self, text: str, *, is_preview: bool) -> Sent:
        return await self.surface.send(text, view=self._stop_button(is_preview))

    async def _edit(self, handle: Sent, text: str, *, is_preview: bool) -> None:
        await self.surface.edit(handle, text, view=self._stop_button(is_preview))

    def _stop_button(self, is_preview: bool) -> discord.ui.View | None:
        if not is_preview or not self.stoppable:
            return None
        view = discord.ui.View(timeout=None)
        view.add_item(StopButton(self._stop_label, self.stoppable))
        return view

    async def _show_typing(self) -> None:
        await self.surface.show_typing()

    def _part_failed(self, error: discord.HTTPException, *, is_final: bool) -> None:
        if not is_final:
            log.warning("discord.preview_skipped", status=error.status)
