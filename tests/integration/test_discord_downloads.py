"""The Discord front's file fetching (bots/discord/files.py) on real discord.py attachments from
the fake Discord: its limits by what Discord announces, and the media proxy when the CDN fails
or stalls. End to end, with the core: tests/e2e/test_discord_files.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import discord
import pytest

from bots.discord import files
from bots.discord.files import DownloadFailed, downloaded, refusal_before_download
from core.attachments.intake import MAX_FILES_PER_MESSAGE, IncomingFile
from core.errors import FileTooLarge, TooManyAttachments
from tests.fakes.discord_cdn import CDN, MEDIA
from tests.fakes.discord_server import (
    DEFAULT_CHANNEL_ID,
    DEFAULT_GUILD_ID,
    DEFAULT_USER_ID,
    FakeDiscord,
)
from tests.integration.discord_client import new_client, running

GUILD, CHANNEL, USER = DEFAULT_GUILD_ID, DEFAULT_CHANNEL_ID, DEFAULT_USER_ID
LIMIT = 100


@pytest.fixture
async def client(fake_discord: FakeDiscord) -> AsyncIterator[discord.Client]:
    fake_discord.add_guild(GUILD, channels=[CHANNEL], members=[{"id": USER, "username": "alice"}])
    async with running(new_client(), fake_discord) as ready:
        yield ready


async def attachments_of(
    client: discord.Client, fake: FakeDiscord, sizes: Sequence[int]
) -> list[discord.Attachment]:
    """The attachments of a user's message with text files of these sizes, as discord.py has
    them."""
    arriving = asyncio.create_task(client.wait_for("message", timeout=5))
    await asyncio.sleep(0)
    posted = [(f"{n}.txt", b"t" * size, "text/plain") for n, size in enumerate(sizes)]
    fake.user_posts("", channel_id=CHANNEL, guild_id=GUILD, attachments=posted)
    message: discord.Message = await arriving
    return message.attachments


@pytest.mark.parametrize("count", [1, MAX_FILES_PER_MESSAGE - 1, MAX_FILES_PER_MESSAGE])
async def test_up_to_the_most_files_a_message_brings_are_fetched(
    client: discord.Client, fake_discord: FakeDiscord, count: int
) -> None:
    attachments = await attachments_of(client, fake_discord, [10] * count)

    assert refusal_before_download(attachments, max_file_bytes=LIMIT) is None
    got = await downloaded(attachments)

    assert got == [IncomingFile(b"t" * 10, f"{n}.txt") for n in range(count)]


async def test_one_file_more_than_a_message_brings_is_refused_as_the_core_would(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    attachments = await attachments_of(client, fake_discord, [10] * (MAX_FILES_PER_MESSAGE + 1))

    refused = refusal_before_download(attachments, max_file_bytes=LIMIT)

    assert isinstance(refused, TooManyAttachments)
    assert refused.params == {"count": MAX_FILES_PER_MESSAGE + 1, "limit": MAX_FILES_PER_MESSAGE}


@pytest.mark.parametrize(
    ("size", "is_refused"), [(LIMIT - 1, False), (LIMIT, False), (LIMIT + 1, True)]
)
async def test_a_file_is_refused_by_its_announced_size_only_past_the_limit(
    client: discord.Client, fake_discord: FakeDiscord, size: int, is_refused: bool
) -> None:
    attachments = await attachments_of(client, fake_discord, [1, size])

    refused = refusal_before_download(attachments, max_file_bytes=LIMIT)

    if is_refused:
        assert isinstance(refused, FileTooLarge)
        assert (refused.size, refused.limit) == (size, LIMIT)
    else:
        assert refused is None


async def test_a_stalled_cdn_is_given_up_for_the_media_proxy(
    client: discord.Client, fake_discord: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "DOWNLOAD_SECONDS", 0.2)
    attachments = await attachments_of(client, fake_discord, [10])
    fake_discord.cdn.hold(host=CDN)

    got = await downloaded(attachments)

    assert got == [IncomingFile(b"t" * 10, "0.txt")]
    assert [(d.host, d.status) for d in fake_discord.cdn.downloads] == [(CDN, 0), (MEDIA, 200)]


async def test_a_file_neither_host_gives_fails_the_whole_message(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    attachments = await attachments_of(client, fake_discord, [10, 20])
    fake_discord.cdn.fail(500, host=CDN, times=2)
    fake_discord.cdn.fail(404, host=MEDIA)

    with pytest.raises(DownloadFailed):
        await downloaded(attachments)

    statuses = sorted((d.host, d.status) for d in fake_discord.cdn.downloads)
    assert statuses == [(CDN, 500), (CDN, 500), (MEDIA, 200), (MEDIA, 404)]
