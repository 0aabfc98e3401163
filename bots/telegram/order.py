"""Which Telegram update waits for which: spaces (a chat, or a forum topic of one) are served
concurrently, each space's messages in the order they were sent; button taps and /stop at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from telegram import Message, Update
from telegram.ext import BaseUpdateProcessor

from bots.chatfront.pacing import InOrder
from core.commands import is_command

CONCURRENT_UPDATES = 64  # messages handled at once, across spaces (taps not counted)
# Updates taken, those waiting for their space included: a bound on memory only. PTB holds one
# of these slots while an update waits, so this bound must not be the one that makes taps wait.
UPDATES_IN_FLIGHT = 4096

Space = tuple[int, int | None]  # (chat id, forum topic's thread id or None)


class InOrderPerSpace(BaseUpdateProcessor):
    """Spaces (chats, and each forum topic apart) in parallel, each space's messages one after
    the other; button taps and /stop at once.

    A tap is answered within a second or Telegram expires it and the user sees an error, so it
    waits neither behind a space's turn (the one it may act on) nor for a free slot.
    """

    def __init__(self, max_concurrent_updates: int) -> None:
        super().__init__(UPDATES_IN_FLIGHT)
        self._order = InOrder()
        self._running = asyncio.Semaphore(max_concurrent_updates)

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        if isinstance(update, Update) and (update.callback_query is not None or _is_stop(update)):
            await coroutine  # a /stop, like a tap, must not wait for the answer it stops
            return
        space = space_of(update)
        if space is None:
            async with self._running:
                await coroutine
            return
        async with self._order.turn_of(space), self._running:
            await coroutine

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None


def space_of(update: object) -> Space | None:
    """Where an update was said: its chat, and the forum topic within it."""
    if not isinstance(update, Update) or update.effective_chat is None:
        return None
    return update.effective_chat.id, topic_of(update.effective_message)


def topic_of(message: Message | None) -> int | None:
    """The forum topic `message` is in, None outside one. Only a topic message's thread id names
    a topic: in "General" or a group's reply thread, Telegram sets one that sending to refuses."""
    if message is None or not message.is_topic_message:
        return None
    return message.message_thread_id


def _is_stop(update: Update) -> bool:
    message = update.effective_message
    typed = None if message is None else message.text or message.caption
    return typed is not None and is_command(typed, "stop")
