"""A core outcome shown in Discord: a turn streamed into its surface, a finished reply as text
with its buttons or menu, a file as an attachment."""

from __future__ import annotations

import discord
import structlog

from bots.chatfront.pacing import ChatPacer
from bots.chatfront.streaming import stream_turn
from bots.discord.components import view_of
from bots.discord.stream import (
    ReplyStream,
    Surface,
    footer,
    send_file,
    send_text,
    until_delivered,
)
from core.commands import FileReply, Outcome, Reply, TurnReply
from core.messages import text

log = structlog.get_logger(__name__)


async def deliver(outcome: Outcome, surface: Surface, locale: str, pacer: ChatPacer) -> None:
    if isinstance(outcome, TurnReply):
        await stream_answer(outcome, surface, locale, pacer)
    else:
        await send_finished(outcome, surface)


async def stream_answer(reply: TurnReply, surface: Surface, locale: str, pacer: ChatPacer) -> None:
    async with ReplyStream(surface, pacer, stop_label=text(locale, "stop_button")) as stream:
        await stream_turn(reply, stream, locale, say=surface.send_private, footer=footer)


async def send_finished(outcome: Reply | FileReply, surface: Surface) -> None:
    if isinstance(outcome, FileReply):
        await send_file(
            surface, outcome.caption, filename=outcome.filename, content=outcome.content
        )
    else:
        await send_text(surface, outcome.text, view=view_of(outcome))


async def tell_unexpected(surface: Surface, locale: str) -> None:
    """Something failed: say so, rather than leave the user waiting."""
    try:
        await until_delivered(lambda: surface.send(text(locale, "unexpected")))
    except discord.HTTPException:
        log.exception("discord.error_reply_failed")
