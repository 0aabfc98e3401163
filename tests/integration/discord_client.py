"""A real discord.py client on the fake Discord, for the tests that drive the fake (and the
front's pieces) in-process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import discord

from tests.fakes.discord_server import FakeDiscord, pointing_discord_py_at


def intents(*, message_content: bool = True) -> discord.Intents:
    chosen = discord.Intents.default()
    chosen.message_content = message_content
    return chosen


def new_client(*, message_content: bool = True) -> discord.Client:
    # on_ready waits guild_ready_timeout (2 s by default) after the last GUILD_CREATE.
    return discord.Client(
        intents=intents(message_content=message_content), guild_ready_timeout=0.05
    )


@contextlib.asynccontextmanager
async def running(client: discord.Client, fake: FakeDiscord) -> AsyncIterator[discord.Client]:
    """`client.start()` against the fake until on_ready; closed (and awaited) on exit."""
    with pointing_discord_py_at(fake):
        async with client:
            started = asyncio.create_task(client.start(fake.token))
            ready = asyncio.create_task(client.wait_until_ready())
            await asyncio.wait({started, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():
                ready.cancel()
                await client.close()
                await started  # raises the reason it stopped, if it stopped on an error
                raise TimeoutError("the client did not get ready")
            try:
                yield client
            finally:
                await client.close()
                await started
