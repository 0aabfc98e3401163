"""The fake Discord's files as discord.py reads them: users' attachments and voice messages in
Discord's shapes, served at their signed `url` and `proxy_url` (`tests/fakes/discord_cdn.py`)
and refused the way Discord's CDN refuses a link that is not one it gave."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
import yarl

from tests.attachment_files import image_file, ogg_opus
from tests.fakes.discord_cdn import CDN, GONE, MEDIA
from tests.fakes.discord_payloads import IS_VOICE_MESSAGE
from tests.fakes.discord_server import (
    DEFAULT_CHANNEL_ID,
    DEFAULT_GUILD_ID,
    DEFAULT_USER_ID,
    FakeDiscord,
)
from tests.integration.discord_client import new_client, running

GUILD, CHANNEL, USER = DEFAULT_GUILD_ID, DEFAULT_CHANNEL_ID, DEFAULT_USER_ID
PNG = image_file("PNG", size=(12, 7))
NOTES = b"high tide at 6\n"


@pytest.fixture
async def client(fake_discord: FakeDiscord) -> AsyncIterator[discord.Client]:
    """A real discord.Client, ready, in one guild with one text channel and one user."""
    fake_discord.add_guild(GUILD, channels=[CHANNEL], members=[{"id": USER, "username": "alice"}])
    async with running(new_client(), fake_discord) as ready:
        yield ready


async def received(client: discord.Client, post: Any) -> discord.Message:
    """The message `post()` sends, as the client gets it."""
    arriving = asyncio.create_task(client.wait_for("message", timeout=5))
    await asyncio.sleep(0)  # the waiter is registered before the event is sent
    post()
    message: discord.Message = await arriving
    return message


async def get(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(yarl.URL(url, encoded=True)) as got:
        return got.status, await got.read()


def with_query(url: str, **changes: str | None) -> str:
    """`url` with query parameters changed (None: left out)."""
    parsed = yarl.URL(url, encoded=True)
    query = {k: v for k, v in ({**parsed.query, **changes}).items() if v is not None}
    return str(parsed.with_query(query))


async def test_a_users_files_are_discords_attachment_objects_read_from_url_and_proxy_url(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    files = [("tide chart.png", PNG, "image/png"), ("notes.txt", NOTES, "text/plain")]

    payload: dict[str, Any] = {}

    def post() -> None:
        payload.update(fake_discord.user_posts("look", channel_id=CHANNEL, guild_id=GUILD,
                                               attachments=files))  # fmt: skip

    message = await received(client, post)
    picture, notes = message.attachments

    first = payload["attachments"][0]
    assert set(first) == {"id", "filename", "size", "url", "proxy_url", "content_type", "width",
                          "height"}  # fmt: skip
    assert (picture.filename, picture.size, picture.content_type) == (
        "tide_chart.png", len(PNG), "image/png",
    )  # fmt: skip
    assert (picture.width, picture.height) == (12, 7)
    assert "width" not in payload["attachments"][1]
    assert notes.content_type == "text/plain"
    assert picture.url.startswith(f"{fake_discord.cdn.cdn_base_url}/attachments/{CHANNEL}/")
    assert picture.proxy_url.startswith(f"{fake_discord.cdn.media_base_url}/attachments/")
    assert yarl.URL(picture.url).path.endswith(f"/{picture.id}/tide_chart.png")
    assert set(yarl.URL(picture.url).query) == {"ex", "is", "hm"}
    assert message.flags.value == 0
    assert not picture.is_voice_message()

    assert await picture.read() == PNG
    assert await notes.read(use_cached=True) == NOTES
    assert [(d.host, d.attachment_id, d.status) for d in fake_discord.cdn.downloads] == [
        (CDN, picture.id, 200),
        (MEDIA, notes.id, 200),
    ]


async def test_a_voice_message_has_the_flag_no_text_and_one_ogg_with_duration_and_waveform(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    audio, waveform = ogg_opus(), bytes([0, 40, 255, 12])

    payload: dict[str, Any] = {}

    def post() -> None:
        payload.update(fake_discord.user_sends_voice_message(
            audio, channel_id=CHANNEL, guild_id=GUILD, duration_secs=2.25, waveform=waveform
        ))  # fmt: skip

    message = await received(client, post)

    assert payload["flags"] == IS_VOICE_MESSAGE
    [attachment] = payload["attachments"]
    assert attachment["waveform"] == base64.b64encode(waveform).decode()
    assert message.content == ""
    assert message.flags.voice
    [voice] = message.attachments
    assert voice.is_voice_message()
    assert (voice.filename, voice.content_type, voice.size) == (
        "voice-message.ogg", "audio/ogg", len(audio),
    )  # fmt: skip
    assert (voice.duration, voice.waveform) == (2.25, waveform)
    assert await voice.read() == audio
    with pytest.raises(ValueError, match="256"):
        fake_discord.user_sends_voice_message(audio, waveform=bytes(257))


async def test_a_link_not_as_given_is_gone_and_so_is_an_unknown_or_expired_file(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    message = await received(
        client,
        lambda: fake_discord.user_posts("", channel_id=CHANNEL, guild_id=GUILD,
                                        attachments=[("a.png", PNG, "image/png")]),
    )  # fmt: skip
    url = message.attachments[0].url
    path = yarl.URL(url, encoded=True)

    assert await get(url) == (200, PNG)
    for refused in (
        str(path.with_query(None)),  # unsigned, as links were before December 2023
        with_query(url, hm="0" * 64),
        with_query(url, ex="ffffffff"),  # a later expiry than the signature covers
        with_query(url, hm=None),
        str(path.with_name("b.png").with_query(path.query)),  # signed for another path
        url.replace(f"/{message.attachments[0].id}/", "/1/"),
    ):
        assert await get(refused) == (404, GONE.encode()), refused

    fake_discord.cdn.link_lifetime = 0  # links given from now on are already past their expiry
    expired = await received(
        client,
        lambda: fake_discord.user_posts("", channel_id=CHANNEL, guild_id=GUILD,
                                        attachments=[("c.png", PNG, "image/png")]),
    )  # fmt: skip
    with pytest.raises(discord.NotFound):
        await expired.attachments[0].read()


async def test_a_failing_or_held_cdn_answers_only_its_own_host(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    message = await received(
        client,
        lambda: fake_discord.user_posts("", channel_id=CHANNEL, guild_id=GUILD,
                                        attachments=[("a.png", PNG, "image/png")]),
    )  # fmt: skip
    [picture] = message.attachments
    fake_discord.cdn.fail(503, host=CDN)

    with pytest.raises(discord.HTTPException) as failed:
        await picture.read()
    assert failed.value.status == 503
    assert await picture.read(use_cached=True) == PNG
    assert await picture.read() == PNG  # the fault was used up

    fake_discord.cdn.hold(host=CDN)
    reading = asyncio.create_task(picture.read())
    await fake_discord.wait_for(lambda: len(fake_discord.cdn.downloads) == 4, 5)
    assert not reading.done()
    assert await picture.read(use_cached=True) == PNG
    fake_discord.cdn.release()
    assert await reading == PNG
    statuses = [(d.host, d.status) for d in fake_discord.cdn.downloads]
    assert statuses == [(CDN, 503), (MEDIA, 200), (CDN, 200), (CDN, 200), (MEDIA, 200)]


async def test_the_bots_own_uploads_are_served_too(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    channel = client.get_channel(CHANNEL)
    assert isinstance(channel, discord.TextChannel)

    sent = await channel.send("here", file=discord.File(io.BytesIO(NOTES), "n.txt"))

    assert await sent.attachments[0].read() == NOTES


async def test_a_replaced_file_is_served_whatever_its_announced_size(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    message = await received(
        client,
        lambda: fake_discord.user_posts("", channel_id=CHANNEL, guild_id=GUILD,
                                        attachments=[("a.txt", NOTES, "text/plain")]),
    )  # fmt: skip
    [notes] = message.attachments

    fake_discord.cdn.replace(notes.id, NOTES * 2)

    assert await notes.read() == NOTES * 2
    assert notes.size == len(NOTES)
    with pytest.raises(ValueError, match="no attachment"):
        fake_discord.cdn.replace(1, b"x")
