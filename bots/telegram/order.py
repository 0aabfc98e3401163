"""Which Telegram update waits for which: spaces (a chat, or a forum topic of one) are served
concurrently, each space's messages in the order they were sent; button taps and /stop at once.
An album's items are gathered into one message.

Albums. Telegram delivers an album (photos or documents sent together, at most 10) as one
update per item, each with the album's `media_group_id`, nearly at once. Answering each item
on its own would ask the model about one picture at a time, each answer unaware of the others;
so the items are gathered: the processor notes each item as it takes the update, before the
item waits for its space; the first item's handler, its space's turn come, waits until no item
has come for ALBUM_QUIET_SECONDS (or all 10 are in) and takes every item noted, which become
one message; the later items' handlers find themselves taken. An item arriving after its album
was taken is a message of its own. The cost: an album is answered ALBUM_QUIET_SECONDS later,
and its space waits that long behind it. With several replicas (webhook mode behind a load
balancer), an album's items may reach different replicas: each gathers its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from telegram import Message, Update
from telegram.ext import BaseUpdateProcessor

from bots.chatfront.pacing import InOrder
from bots.telegram.files import is_file_message
from core.commands import is_command

# Messages handled at once, across spaces (taps not counted). A turn holds its slot for its
# whole answer (seconds of streaming), so this is how many answers one process streams at once:
# past it, the next chats wait for a whole answer to end before theirs begins. Each costs about
# 50 KiB while it streams (docs/benchmarks.md).
CONCURRENT_UPDATES = 1024
# Updates taken, those waiting for their space included: a bound on memory only. PTB holds one
# of these slots while an update waits, so this bound must not be the one that makes taps wait.
UPDATES_IN_FLIGHT = 4096

# Telegram sends an album's items at once; a client's upload is complete before any is sent.
ALBUM_QUIET_SECONDS = 0.5
ALBUM_MAX_ITEMS = 10  # the most items an album has (sendMediaGroup: 2-10)

Space = tuple[int, int | None]  # (chat id, forum topic's thread id or None)
AlbumKey = tuple[int, str]  # (chat id, media_group_id)
ItemKey = tuple[int, int]  # (chat id, message id)


@dataclass
class _Album:
    items: dict[int, Message] = field(default_factory=dict)  # by message id, noted, not taken
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class Albums:
    """The items of albums, noted as they arrive and gathered by the first item's handler."""

    def __init__(self, quiet_seconds: float = ALBUM_QUIET_SECONDS) -> None:
        self._quiet = quiet_seconds
        self._albums: dict[AlbumKey, _Album] = {}
        self._taken: set[ItemKey] = set()  # items gathered by an earlier one, until handled

    def note(self, update: object) -> None:
        """An update taken: an album's item is noted at once, before it waits for its space."""
        message = update.message if isinstance(update, Update) else None
        if message is None or message.media_group_id is None or not is_file_message(message):
            return
        album = self._albums.setdefault((message.chat_id, message.media_group_id), _Album())
        album.items[message.message_id] = message
        album.arrived.set()

    async def gather(self, message: Message) -> list[Message]:
        """`message` with the rest of its album, oldest first; [] when an earlier item of the
        album took it. A message of no album (or never noted) is alone."""
        if message.media_group_id is None:
            return [message]
        item = (message.chat_id, message.message_id)
        if item in self._taken:
            self._taken.discard(item)
            return []
        key = (message.chat_id, message.media_group_id)
        album = self._albums.get(key)
        if album is None or message.message_id not in album.items:
            return [message]
        await self._until_quiet(album)
        del self._albums[key]
        items = sorted(album.items.values(), key=lambda noted: noted.message_id)
        self._taken.update((m.chat_id, m.message_id) for m in items if m is not message)
        return items

    async def _until_quiet(self, album: _Album) -> None:
        while len(album.items) < ALBUM_MAX_ITEMS:
            album.arrived.clear()
            try:
                async with asyncio.timeout(self._quiet):
                    await album.arrived.wait()
            except TimeoutError:
                return


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
        self.albums = Albums()  # what the handlers gather an album's items from

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        self.albums.note(update)  # first: later items must be noted while the first waits
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
    """A typed /stop (a caption is words said with files, never a command)."""
    message = update.effective_message
    return message is not None and message.text is not None and is_command(message.text, "stop")
