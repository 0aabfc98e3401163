"""The fake Discord, driven by the real discord.py client, behaves like Discord.

No mocks: a real `discord.Client` logs in over REST and holds a gateway websocket to
`FakeDiscord` on 127.0.0.1; the tests play the users and read what the fake recorded.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

# isort: off
import discord
from discord import app_commands

# isort: on
from tests.fakes.discord_server import (
    DEFAULT_BOT_ID,
    DEFAULT_CHANNEL_ID,
    DEFAULT_GUILD_ID,
    DEFAULT_USER_ID,
    FakeDiscord,
    pointing_discord_py_at,
)
from tests.integration.discord_client import intents as _intents
from tests.integration.discord_client import new_client as _client
from tests.integration.discord_client import running

# The fixture lives with the fake (tests/conftest.py may load that module as a plugin instead).

GUILD, CHANNEL, USER = DEFAULT_GUILD_ID, DEFAULT_CHANNEL_ID, DEFAULT_USER_ID
MESSAGES = r"/channels/\d+/messages"


@pytest.fixture
async def client(fake_discord: FakeDiscord) -> AsyncIterator[discord.Client]:
    """A real discord.Client, ready, in one guild with one text channel and one user."""
    fake_discord.add_guild(GUILD, channels=[CHANNEL], members=[{"id": USER, "username": "alice"}])
    async with running(_client(), fake_discord) as ready:
        yield ready


@pytest.fixture
def tree(client: discord.Client) -> app_commands.CommandTree[discord.Client]:
    return app_commands.CommandTree(client)


def _next_event(client: discord.Client, event: str, **check: Any) -> asyncio.Task[Any]:
    """Start waiting for an event now (before it is sent), with attribute checks."""

    def matches(*args: Any) -> bool:
        return all(getattr(args[0], key) == value for key, value in check.items())

    return asyncio.create_task(client.wait_for(event, check=matches, timeout=5))


async def _channel(client: discord.Client) -> discord.TextChannel:
    channel = client.get_channel(CHANNEL)
    assert isinstance(channel, discord.TextChannel)
    return channel


# Login and the gateway.


async def test_login_identifies_with_the_token_and_intents_and_on_ready_sees_the_guild(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    identify = fake_discord.identifies[0]
    assert identify["token"] == fake_discord.token
    assert identify["intents"] == _intents().value
    assert client.user is not None
    assert (client.user.id, client.user.name, client.user.bot) == (
        DEFAULT_BOT_ID,
        "chatbridge-test",
        True,
    )
    assert client.application_id == fake_discord.application_id
    guild = client.get_guild(GUILD)
    assert guild is not None
    assert [channel.id for channel in guild.text_channels] == [CHANNEL]
    assert fake_discord.calls_to("GET", "/users/@me")
    assert fake_discord.calls_to("GET", "/oauth2/applications/@me")
    assert not fake_discord.calls_to("GET", "/gateway(/bot)?")  # a plain Client never asks
    assert fake_discord.sessions[0].connection is not None
    # zstd-stream when zstandard is importable (the bench extra brings it), else zlib-stream.
    expected = discord.utils._ActiveDecompressionContext.COMPRESSION_TYPE
    assert fake_discord.sessions[0].connection.compression == expected


async def test_heartbeats_are_acknowledged_and_give_a_latency(fake_discord: FakeDiscord) -> None:
    fake_discord.heartbeat_interval_ms = 50

    async with running(_client(), fake_discord) as client:
        await fake_discord.wait_for(lambda: len(fake_discord.heartbeats) >= 3)

        assert fake_discord.heartbeats[0].sequence is None  # sent right after HELLO
        assert fake_discord.heartbeats[-1].sequence == fake_discord.sessions[0].sequence
        assert fake_discord.gateway.heartbeat_acks >= 3
        assert client.latency < 1


async def test_a_wrong_token_fails_the_login(fake_discord: FakeDiscord) -> None:
    with pointing_discord_py_at(fake_discord):
        client = _client()
        async with client:
            with pytest.raises(discord.LoginFailure):
                await client.start("not-the-token")

    assert fake_discord.calls_to("GET", "/users/@me")[0].status == 401


async def test_the_gateway_closes_4004_on_a_wrong_token(fake_discord: FakeDiscord) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(fake_discord.gateway_url + "?v=10&encoding=json") as ws,
    ):
        hello = await ws.receive_json()
        await ws.send_json({"op": 2, "d": {"token": "wrong", "intents": 513, "properties": {}}})
        closing = await ws.receive()

    assert hello["op"] == 10
    assert closing.type is aiohttp.WSMsgType.CLOSE
    assert closing.data == 4004


async def test_a_privileged_intent_off_in_the_portal_stops_the_client(
    fake_discord: FakeDiscord,
) -> None:
    fake_discord.set_privileged_intents(message_content=False)

    with pointing_discord_py_at(fake_discord), pytest.raises(discord.PrivilegedIntentsRequired):
        async with _client() as client:
            await asyncio.wait_for(client.start(fake_discord.token), 10)

    assert fake_discord.gateway.close_codes == [4014]


async def test_a_dropped_connection_is_resumed_and_missed_events_are_replayed(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    resumed = asyncio.create_task(client.wait_for("resumed", timeout=5))
    arrived = _next_event(client, "message", content="while you were away")

    await fake_discord.drop_gateway()
    fake_discord.user_posts("while you were away", channel_id=CHANNEL, guild_id=GUILD)
    await resumed
    await arrived

    assert fake_discord.gateway.resumes[0]["session_id"] == fake_discord.sessions[0].session_id
    assert len(fake_discord.identifies) == 1


# Messages.


async def test_a_users_message_reaches_on_message_with_content_and_author(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    arrived = _next_event(client, "message", channel=await _channel(client))

    fake_discord.user_posts("hello bot", channel_id=CHANNEL, guild_id=GUILD)
    message = await arrived

    assert message.content == "hello bot"
    assert (message.author.id, message.author.name) == (USER, "alice")
    assert isinstance(message.author, discord.Member)
    assert message.guild is not None
    assert message.guild.id == GUILD


async def test_the_bot_has_its_managed_role_in_a_guild_and_a_mention_of_it_is_a_role_mention(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    guild = client.get_guild(GUILD)
    assert guild is not None
    arrived = _next_event(client, "message", channel=await _channel(client))

    fake_discord.user_posts("hello", channel_id=CHANNEL, guild_id=GUILD, mentions_bot_role=True)
    message = await arrived

    own = guild.self_role
    assert own is not None
    assert own.id == fake_discord.bot_role_id(GUILD)
    assert own.managed
    assert own.is_bot_managed()
    assert guild.me.get_role(own.id) == own
    assert message.content == f"<@&{own.id}> hello"
    assert message.raw_role_mentions == [own.id]
    assert message.role_mentions == [own]
    assert message.mentions == []


async def test_a_user_may_post_files_with_or_without_text(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    channel = await _channel(client)
    with_text = _next_event(client, "message", channel=channel, content="look")

    picture = ("a.png", b"png", "image/png")
    fake_discord.user_posts("look", channel_id=CHANNEL, guild_id=GUILD, attachments=[picture])
    message = await with_text
    alone = _next_event(client, "message", channel=channel, content="")
    text_file = ("b.txt", b"text", "text/plain; charset=utf-8")
    fake_discord.user_posts("", channel_id=CHANNEL, guild_id=GUILD, attachments=[text_file])
    file_only = await alone

    assert [a.filename for a in message.attachments] == ["a.png"]
    assert [a.filename for a in file_only.attachments] == ["b.txt"]
    assert fake_discord.files[file_only.attachments[0].id] == b"text"
    with pytest.raises(ValueError, match="empty"):
        fake_discord.user_posts("", channel_id=CHANNEL, guild_id=GUILD)


async def test_a_dm_reaches_on_message_and_user_send_opens_the_dm_channel(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    arrived = _next_event(client, "message", content="psst")

    fake_discord.user_posts("psst", author_id=USER)
    message = await arrived
    await message.channel.send("hi in private")
    user = await client.fetch_user(USER)
    await user.send("opened by the bot")

    assert isinstance(message.channel, discord.DMChannel)
    dm = fake_discord.dm_channel_of(USER)
    assert dm == message.channel.id
    assert [m.content for m in fake_discord.messages(dm)] == ["hi in private", "opened by the bot"]
    assert fake_discord.calls_to("POST", "/users/@me/channels")[0].body == {"recipient_id": USER}


async def test_without_the_message_content_intent_guild_text_arrives_only_when_it_mentions_the_bot(
    fake_discord: FakeDiscord,
) -> None:
    fake_discord.add_guild(GUILD, channels=[CHANNEL])
    async with running(_client(message_content=False), fake_discord) as client:
        seen: list[discord.Message] = []
        client.event(_collector(seen))

        fake_discord.user_posts("secret", channel_id=CHANNEL, guild_id=GUILD)
        fake_discord.user_posts("hey you", channel_id=CHANNEL, guild_id=GUILD, mentions_bot=True)
        fake_discord.user_posts("in a DM")
        await fake_discord.wait_for(lambda: len(seen) == 3)

    assert [m.content for m in seen] == ["", f"<@{DEFAULT_BOT_ID}> hey you", "in a DM"]


def _collector(seen: list[discord.Message]) -> Any:
    async def on_message(message: discord.Message) -> None:
        seen.append(message)

    return on_message


async def test_channel_send_is_recorded_and_echoed_like_discord_does(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    echoed = _next_event(client, "message", content="Hello!")

    sent = await (await _channel(client)).send("Hello!")
    echo = await echoed

    shown = fake_discord.messages(CHANNEL)
    assert [(m.id, m.content) for m in shown] == [(sent.id, "Hello!")]
    assert client.user is not None
    assert sent.author.id == echo.author.id == client.user.id
    assert fake_discord.calls_to("POST", MESSAGES)[0].body["content"] == "Hello!"


async def test_a_reply_and_typing_are_recorded_and_a_users_reply_mentions_the_bot(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    asked = _next_event(client, "message", content="question")
    fake_discord.user_posts("question", channel_id=CHANNEL, guild_id=GUILD)
    question = await asked

    async with question.channel.typing():
        answer = await question.reply("answer")
    replied = _next_event(client, "message", content="thanks")
    fake_discord.user_posts("thanks", channel_id=CHANNEL, guild_id=GUILD, reply_to=answer.id)
    thanks = await replied

    assert fake_discord.calls_to("POST", r"/channels/\d+/typing")[0].status == 204
    stored = fake_discord.message(answer.id)
    assert stored.reference is not None
    assert stored.reference.id == question.id
    assert thanks.reference is not None
    assert thanks.reference.message_id == answer.id
    assert client.user in thanks.mentions  # a reply pings its author, as on Discord


async def test_content_over_2000_characters_is_refused_as_an_invalid_form_body(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    channel = await _channel(client)

    with pytest.raises(discord.HTTPException) as refused:
        await channel.send("x" * 2001)
    await channel.send("x" * 2000)

    assert (refused.value.status, refused.value.code) == (400, 50035)
    error = fake_discord.calls_to("POST", MESSAGES)[0]
    assert error.status == 400
    assert [len(m.content) for m in fake_discord.messages(CHANNEL)] == [2000]


async def test_an_empty_message_is_refused(client: discord.Client) -> None:
    with pytest.raises(discord.HTTPException) as refused:
        await (await _channel(client)).send("   ")

    assert (refused.value.status, refused.value.code) == (400, 50006)


async def test_message_edit_records_each_version(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    sent = await (await _channel(client)).send("Thinking…")

    await sent.edit(content="Hello")
    await sent.edit(content="Hello, world")

    stored = fake_discord.message(sent.id)
    assert stored.history == ["Thinking…", "Hello", "Hello, world"]
    assert stored.edited_timestamp is not None


async def test_editing_an_unknown_message_is_404_unknown_message(client: discord.Client) -> None:
    ghost = (await _channel(client)).get_partial_message(1_300_000_000_000_999_999)

    with pytest.raises(discord.NotFound) as refused:
        await ghost.edit(content="boo")

    assert refused.value.code == 10008


async def test_a_429_is_retried_by_discord_py_after_retry_after(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    fake_discord.rate_limit("POST", MESSAGES, retry_after=0.3)

    await (await _channel(client)).send("eventually")

    calls = fake_discord.calls_to("POST", MESSAGES)
    assert [call.status for call in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 0.3
    assert [m.content for m in fake_discord.messages(CHANNEL)] == ["eventually"]


async def test_discord_py_waits_out_a_spent_bucket_instead_of_hitting_429(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    fake_discord.limit_route("POST", MESSAGES, limit=2, per=0.4)
    channel = await _channel(client)

    for number in range(3):
        await channel.send(f"message {number}")

    calls = fake_discord.calls_to("POST", MESSAGES)
    assert [call.status for call in calls] == [200, 200, 200]
    assert calls[2].at - calls[0].at >= 0.39


# Application commands.


async def test_a_channel_takes_5_messages_per_5_seconds_and_the_6th_gets_discords_429(
    fake_discord: FakeDiscord,
) -> None:
    other = CHANNEL + 1
    fake_discord.add_guild(GUILD, channels=[CHANNEL, other])
    url = f"{fake_discord.api_base_url}/channels/{{}}/messages"
    auth = {"Authorization": f"Bot {fake_discord.token}"}

    async with aiohttp.ClientSession(headers=auth) as session:
        answers = []
        for number in range(6):  # a client that ignores X-RateLimit-Remaining: 0
            async with session.post(url.format(CHANNEL), json={"content": f"m{number}"}) as answer:
                answers.append((answer.status, dict(answer.headers), await answer.json()))
        async with session.post(url.format(other), json={"content": "elsewhere"}) as answer:
            other_status = answer.status

    assert [status for status, _, _ in answers] == [200] * 5 + [429]
    assert [headers["X-RateLimit-Remaining"] for _, headers, _ in answers[:5]] == [
        "4", "3", "2", "1", "0"
    ]  # fmt: skip
    _, headers, body = answers[5]
    assert set(body) == {"message", "retry_after", "global"}
    assert body["global"] is False
    assert 0 < body["retry_after"] <= 5
    assert headers["X-RateLimit-Limit"] == "5"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert float(headers["X-RateLimit-Reset-After"]) == body["retry_after"]
    assert headers["X-RateLimit-Scope"] == "user"
    assert "X-RateLimit-Bucket" in headers
    assert int(headers["Retry-After"]) >= body["retry_after"]
    assert other_status == 200  # the bucket is the channel's
    assert len(fake_discord.messages(CHANNEL)) == 5


async def test_discord_py_sends_a_7th_message_in_a_channel_by_waiting_not_by_a_429(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    channel = await _channel(client)

    for number in range(7):
        await channel.send(f"message {number}")

    calls = fake_discord.calls_to("POST", MESSAGES)
    assert [call.status for call in calls] == [200] * 7
    assert len(fake_discord.messages(CHANNEL)) == 7


async def test_an_interactions_token_serves_followups_and_edits_for_its_lifetime_only(
    tree: app_commands.CommandTree[discord.Client], fake_discord: FakeDiscord
) -> None:
    assert fake_discord.interaction_token_ttl == 15 * 60  # Discord's, unless a test shortens it
    fake_discord.interaction_token_ttl = 0.5
    refusals: list[discord.HTTPException] = []

    @tree.command(name="long", description="Answers late")
    async def long(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        first = await interaction.followup.send("in time", wait=True)
        await asyncio.sleep(0.6)
        for late in (
            lambda: interaction.followup.send("too late"),
            lambda: interaction.edit_original_response(content="too late"),
            lambda: first.edit(content="too late"),
        ):
            try:
                await late()
            except discord.HTTPException as error:
                refusals.append(error)
        channel = interaction.channel
        assert isinstance(channel, discord.TextChannel)
        await channel.get_partial_message(first.id).edit(content="edited through the channel")

    await tree.sync()
    fake_discord.user_runs("long", guild_id=GUILD)
    await fake_discord.wait_for(
        lambda: any(
            m.content == "edited through the channel" for m in fake_discord.messages(CHANNEL)
        )
    )

    assert [(e.status, e.code, e.text) for e in refusals] == [
        (401, 50027, "Invalid Webhook Token")
    ] * 3


async def test_tree_sync_records_global_and_guild_commands(
    tree: app_commands.CommandTree[discord.Client], fake_discord: FakeDiscord
) -> None:
    @tree.command(name="new", description="Start a new session")
    async def new(interaction: discord.Interaction, title: str | None = None) -> None: ...

    @tree.command(name="help", description="Show help", guild=discord.Object(GUILD))
    async def help_(interaction: discord.Interaction) -> None: ...

    synced = await tree.sync()
    synced_in_guild = await tree.sync(guild=discord.Object(GUILD))

    assert [c.name for c in synced] == ["new"]
    assert [c.name for c in synced_in_guild] == ["help"]
    stored = fake_discord.commands()[0]
    assert stored["options"] == [
        {"type": 3, "name": "title", "description": "…", "required": False}
    ]
    assert [c["name"] for c in fake_discord.commands(GUILD)] == ["help"]
    assert fake_discord.calls_to("PUT", rf"/applications/{DEFAULT_BOT_ID}/guilds/{GUILD}/commands")
    resynced = await tree.sync()
    assert resynced[0].id == synced[0].id  # same name, same id, as Discord keeps it


async def test_an_invalid_command_name_is_refused_by_sync(
    tree: app_commands.CommandTree[discord.Client], fake_discord: FakeDiscord
) -> None:
    @tree.command(name="sessions", description="List sessions")
    async def sessions(interaction: discord.Interaction) -> None: ...

    sessions.name = "My Sessions"  # past discord.py's own check, as a renamed command could be

    with pytest.raises(app_commands.CommandSyncFailure) as refused:
        await tree.sync()

    assert (refused.value.status, refused.value.code) == (400, 50035)
    assert "In command 'My Sessions'" in str(refused.value)
    assert "name: Command name is invalid" in str(refused.value)
    assert fake_discord.commands() == []


async def test_a_slash_command_reaches_its_callback_and_an_ephemeral_reply_is_type_4_flags_64(
    tree: app_commands.CommandTree[discord.Client], fake_discord: FakeDiscord
) -> None:
    seen: list[tuple[int, str | None]] = []

    @tree.command(name="new", description="Start a new session")
    async def new(interaction: discord.Interaction, title: str | None = None) -> None:
        seen.append((interaction.user.id, title))
        await interaction.response.send_message(f"Created {title}", ephemeral=True)

    await tree.sync()
    interaction = fake_discord.user_runs(
        "new", {"title": "Trip"}, channel_id=CHANNEL, guild_id=GUILD
    )
    record = fake_discord.responses(interaction["id"])
    await fake_discord.wait_for(lambda: record.callback_type)

    assert seen == [(USER, "Trip")]
    assert record.callback_type == 4
    assert record.callback_data["flags"] == 64
    assert record.original is not None
    assert (record.original.content, record.is_ephemeral) == ("Created Trip", True)
    assert not fake_discord.events("MESSAGE_CREATE")  # ephemeral replies are not broadcast


async def test_a_deferred_answer_then_a_followup_fills_the_thinking_message(
    tree: app_commands.CommandTree[discord.Client], fake_discord: FakeDiscord
) -> None:
    @tree.command(name="retry", description="Answer again")
    async def retry(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send("Here it is")
        await interaction.followup.send("And one more")

    await tree.sync()
    interaction = fake_discord.user_runs("retry", guild_id=GUILD, channel_id=CHANNEL)
    record = fake_discord.responses(interaction["id"])
    await fake_discord.wait_for(lambda: len(record.followups) == 2)

    assert record.callback_type == 5
    assert record.original is record.followups[0]
    assert record.original.history == ["", "Here it is"]
    assert [m.content for m in fake_discord.messages(CHANNEL)] == ["Here it is", "And one more"]


async def test_edits_of_a_deferred_ephemeral_answer_stay_ephemeral_and_are_recorded(
    tree: app_commands.CommandTree[discord.Client], fake_discord: FakeDiscord
) -> None:
    @tree.command(name="history", description="Show history")
    async def history(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.edit_original_response(content="Loading…")
        await interaction.edit_original_response(content="1. Trip")

    await tree.sync()
    interaction = fake_discord.user_runs("history", guild_id=GUILD)
    record = fake_discord.responses(interaction["id"])
    await fake_discord.wait_for(lambda: len(record.edits) == 2)

    assert (record.callback_type, record.callback_data) == (5, {"flags": 64})
    assert record.original is not None
    assert record.original.history == ["", "Loading…", "1. Trip"]
    assert record.is_ephemeral
    assert not record.original.is_loading


async def test_answering_after_the_deadline_gets_unknown_interaction(
    tree: app_commands.CommandTree[discord.Client], fake_discord: FakeDiscord
) -> None:
    fake_discord.interaction_deadline = 0.2
    errors: list[discord.HTTPException] = []

    @tree.command(name="slow", description="Too slow")
    async def slow(interaction: discord.Interaction) -> None:
        await asyncio.sleep(0.3)
        try:
            await interaction.response.send_message("late")
        except discord.NotFound as error:
            errors.append(error)

    await tree.sync()
    fake_discord.user_runs("slow", guild_id=GUILD)
    await fake_discord.wait_for(lambda: errors)

    assert errors[0].code == 10062
    assert fake_discord.messages(CHANNEL) == []


async def test_answering_twice_is_refused_with_already_acknowledged(
    tree: app_commands.CommandTree[discord.Client], fake_discord: FakeDiscord
) -> None:
    outcomes: list[Any] = []

    @tree.command(name="twice", description="Answers twice")
    async def twice(interaction: discord.Interaction) -> None:
        # Concurrent answers both pass discord.py's own InteractionResponded check.
        answers = interaction.response.send_message("one"), interaction.response.send_message("two")
        outcomes.extend(await asyncio.gather(*answers, return_exceptions=True))

    await tree.sync()
    interaction = fake_discord.user_runs("twice", guild_id=GUILD)
    await fake_discord.wait_for(lambda: len(outcomes) == 2)

    refused = [o for o in outcomes if isinstance(o, discord.HTTPException)]
    assert [(r.status, r.code) for r in refused] == [(400, 40060)]
    assert fake_discord.responses(interaction["id"]).callback_type == 4


async def test_autocomplete_reaches_its_callback_and_the_choices_are_recorded(
    tree: app_commands.CommandTree[discord.Client], fake_discord: FakeDiscord
) -> None:
    typed: list[str] = []

    @tree.command(name="switch", description="Switch session")
    async def switch(interaction: discord.Interaction, session: str) -> None: ...

    @switch.autocomplete("session")
    async def complete(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        typed.append(current)
        return [app_commands.Choice(name=f"{current}ip to Rio", value="s-1")]

    await tree.sync()
    interaction = fake_discord.user_autocompletes("switch", "session", "Tr", guild_id=GUILD)
    record = fake_discord.responses(interaction["id"])
    await fake_discord.wait_for(lambda: record.callback_type)

    assert typed == ["Tr"]
    assert record.callback_type == 8
    assert record.choices == [{"name": "Trip to Rio", "value": "s-1"}]


async def test_a_button_click_reaches_the_view_and_update_message_edits_it(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    clicked: list[int] = []

    class Confirm(discord.ui.View):
        @discord.ui.button(label="Delete", style=discord.ButtonStyle.danger, custom_id="confirm")
        async def confirm(
            self, interaction: discord.Interaction, button: discord.ui.Button[Any]
        ) -> None:
            clicked.append(interaction.user.id)
            await interaction.response.edit_message(content="Deleted.", view=None)

    sent = await (await _channel(client)).send("Delete “Trip”?", view=Confirm())
    interaction = fake_discord.user_clicks("confirm", sent.id)
    record = fake_discord.responses(interaction["id"])
    await fake_discord.wait_for(lambda: record.callback_type)

    assert clicked == [USER]
    assert record.callback_type == 7
    stored = fake_discord.message(sent.id)
    assert stored.history == ["Delete “Trip”?", "Deleted."]
    assert stored.components == []
    with pytest.raises(ValueError, match="no component"):
        fake_discord.user_clicks("confirm", sent.id)  # the button is gone


async def test_a_select_reaches_the_view_with_the_picked_values(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    picked: list[list[str]] = []

    class Sessions(discord.ui.View):
        @discord.ui.select(
            custom_id="pick",
            options=[discord.SelectOption(label=f"Session {n}", value=f"s-{n}") for n in (1, 2)],
        )
        async def pick(
            self, interaction: discord.Interaction, select: discord.ui.Select[Any]
        ) -> None:
            picked.append(select.values)
            await interaction.response.defer()

    sent = await (await _channel(client)).send("Your sessions", view=Sessions())
    interaction = fake_discord.user_selects("pick", ["s-2"], message_id=sent.id)
    record = fake_discord.responses(interaction["id"])
    await fake_discord.wait_for(lambda: record.callback_type)

    assert picked == [["s-2"]]
    assert record.callback_type == 6
    with pytest.raises(ValueError, match="cannot pick"):
        fake_discord.user_selects("pick", ["s-9"], message_id=sent.id)


# Attachments.


async def test_a_file_sent_to_a_channel_is_an_attachment_with_its_bytes(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    channel = await _channel(client)

    sent = await channel.send("Your notes", file=discord.File(io.BytesIO(b"# hi\n"), "notes.md"))

    assert [(a.filename, a.size) for a in sent.attachments] == [("notes.md", 5)]
    assert sent.attachments[0].content_type == "text/markdown; charset=utf-8"
    stored = fake_discord.messages(CHANNEL)[-1]
    assert stored.content == "Your notes"
    assert fake_discord.files[int(stored.attachments[0]["id"])] == b"# hi\n"


async def test_a_file_alone_is_a_message_and_an_empty_file_is_refused(
    client: discord.Client, fake_discord: FakeDiscord
) -> None:
    channel = await _channel(client)

    alone = await channel.send(file=discord.File(io.BytesIO(b"x"), "x.txt"))
    with pytest.raises(discord.HTTPException) as refused:
        await channel.send(file=discord.File(io.BytesIO(b""), "empty.txt"))

    assert alone.content == ""
    assert [a.filename for a in alone.attachments] == ["x.txt"]
    assert refused.value.status == 400


async def test_an_interaction_answers_privately_with_a_file(
    tree: app_commands.CommandTree[discord.Client], fake_discord: FakeDiscord
) -> None:
    @tree.command(name="export", description="Export")
    async def export(interaction: discord.Interaction) -> None:
        file = discord.File(io.BytesIO(b"# Trip\n"), "trip.md")
        await interaction.response.send_message("Trip", file=file, ephemeral=True)

    await tree.sync()
    interaction = fake_discord.user_runs("export", guild_id=GUILD, channel_id=CHANNEL)
    record = fake_discord.responses(interaction["id"])
    await fake_discord.wait_for(lambda: record.original)

    assert record.original is not None
    assert record.is_ephemeral
    attachment = record.original.attachments[0]
    assert (attachment["filename"], attachment["ephemeral"]) == ("trip.md", True)
    assert fake_discord.files[int(attachment["id"])] == b"# Trip\n"


async def test_a_deferred_answer_gets_its_file_by_an_edit_or_a_followup(
    tree: app_commands.CommandTree[discord.Client], fake_discord: FakeDiscord
) -> None:
    @tree.command(name="export", description="Export")
    async def export(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        first = discord.File(io.BytesIO(b"one"), "one.md")
        await interaction.edit_original_response(content="One", attachments=[first])
        await interaction.followup.send(
            "Two", file=discord.File(io.BytesIO(b"two"), "two.md"), ephemeral=True
        )

    await tree.sync()
    interaction = fake_discord.user_runs("export", guild_id=GUILD, channel_id=CHANNEL)
    record = fake_discord.responses(interaction["id"])
    await fake_discord.wait_for(lambda: record.followups)

    assert record.original is not None
    assert record.original.content == "One"
    shown = [record.original, *record.followups]
    assert [[a["filename"] for a in m.attachments] for m in shown] == [["one.md"], ["two.md"]]
    assert [fake_discord.files[int(m.attachments[0]["id"])] for m in shown] == [b"one", b"two"]
