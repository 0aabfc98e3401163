"""Conversation spaces on Discord, end to end (`python -m bots` on the fake Discord): what is
said in a DM never reaches a guild channel's model request, each channel is a chat of its own,
and with GROUP_SESSIONS=shared a channel has one conversation whose messages carry their
authors and whose sessions only their creator or a member with Manage Messages deletes."""

from __future__ import annotations

import json

import pytest

from core.messages import ENGLISH, text
from tests.e2e import test_discord_chat
from tests.e2e.discord_support import CHANNEL, GUILD, Person, StartBot, answer_text
from tests.e2e.test_discord_chat import asks
from tests.fakes.discord_server import DEFAULT_USER_ID, FakeDiscord
from tests.fakes.openrouter_server import FakeOpenRouter

BOB_ID = DEFAULT_USER_ID + 1
CAROL_ID = DEFAULT_USER_ID + 3
DAVE_ID = DEFAULT_USER_ID + 4
MODS_ROLE = 1_300_000_000_000_009_001
MANAGE_MESSAGES = 1 << 13
OTHER_CHANNEL = 1_300_000_000_000_002_003


# The service on the fakes, as test_discord_chat.py starts it.
start_bot = test_discord_chat.start_bot


@pytest.fixture
def guild(fake_discord: FakeDiscord) -> None:
    """Alice owns the guild; Bob and Dave are members; Carol moderates (Manage Messages)."""
    fake_discord.add_guild(
        GUILD,
        channels=[CHANNEL, OTHER_CHANNEL],
        roles=[{"id": MODS_ROLE, "name": "mods", "permissions": str(MANAGE_MESSAGES)}],
        members=[
            DEFAULT_USER_ID,
            {"id": BOB_ID, "username": "bob"},
            {"id": CAROL_ID, "username": "carol", "roles": [MODS_ROLE]},
            {"id": DAVE_ID, "username": "dave"},
        ],
    )


def in_channel(fake: FakeDiscord, user_id: int, username: str, channel: int = CHANNEL) -> Person:
    return Person(fake, user_id=user_id, username=username, guild_id=GUILD, channel_id=channel)


def prompt_of(fake_openrouter: FakeOpenRouter) -> str:
    return json.dumps(fake_openrouter.requests[-1].body["messages"], ensure_ascii=False)


def user_messages(fake_openrouter: FakeOpenRouter) -> list[str]:
    sent = fake_openrouter.requests[-1].body["messages"]
    return [message["content"] for message in sent if message["role"] == "user"]


async def test_a_dms_words_never_appear_in_a_channels_model_request_nor_one_channels_in_another(
    start_bot: StartBot, fake_discord: FakeDiscord, fake_openrouter: FakeOpenRouter, guild: None
) -> None:
    await start_bot()
    alice_alone = Person(fake_discord)
    alice_here = in_channel(fake_discord, DEFAULT_USER_ID, "alice")
    alice_there = in_channel(fake_discord, DEFAULT_USER_ID, "alice", OTHER_CHANNEL)

    await asks(alice_alone, "my secret is pineapple")
    answer = await asks(alice_here, "what is my secret?", mentions_bot=True)
    assert answer_text(answer) == "echo: what is my secret?"
    assert "pineapple" not in prompt_of(fake_openrouter)

    await asks(alice_there, "anything said here?", mentions_bot=True)
    assert user_messages(fake_openrouter) == ["anything said here?"]

    await asks(alice_alone, "and at home?")
    assert user_messages(fake_openrouter) == ["my secret is pineapple", "and at home?"]


async def test_in_shared_mode_a_channel_has_one_conversation_with_its_authors_named(
    start_bot: StartBot, fake_discord: FakeDiscord, fake_openrouter: FakeOpenRouter, guild: None
) -> None:
    await start_bot(GROUP_SESSIONS="shared")
    alice = in_channel(fake_discord, DEFAULT_USER_ID, "alice")
    bob = in_channel(fake_discord, BOB_ID, "bob")

    await asks(alice, "I like tea", mentions_bot=True)
    answer = await asks(bob, "I prefer coffee", mentions_bot=True)
    assert answer_text(answer) == "echo: Bob: I prefer coffee"
    assert user_messages(fake_openrouter) == ["Alice: I like tea", "Bob: I prefer coffee"]

    listing = await bob.command("sessions")
    assert "Alice: I like tea" in listing.content


async def test_in_shared_mode_only_the_creator_or_a_moderator_deletes_a_session(
    start_bot: StartBot, fake_discord: FakeDiscord, guild: None
) -> None:
    await start_bot(GROUP_SESSIONS="shared")
    bob = in_channel(fake_discord, BOB_ID, "bob")
    await bob.command("new", {"title": "Bob's plan"})

    alice_refused = in_channel(fake_discord, DEFAULT_USER_ID, "alice", OTHER_CHANNEL)
    assert "Bob's plan" not in (await alice_refused.command("sessions")).content  # another chat

    dave = in_channel(fake_discord, DAVE_ID, "dave")
    refused = await dave.command("delete")
    assert refused.content == text(ENGLISH, "not_session_creator")
    assert not refused.components

    carol = in_channel(fake_discord, CAROL_ID, "carol")
    question = await carol.command("delete")
    assert "Bob's plan" in question.content
