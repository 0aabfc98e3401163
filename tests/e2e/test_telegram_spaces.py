"""Conversation spaces on Telegram, end to end (`python -m bots` on the fake Bot API): what is
said in a private chat never reaches a group's model request, a forum topic is a chat of its
own, and with GROUP_SESSIONS=shared a group has one conversation whose messages carry their
authors and whose sessions only their creator or an admin deletes."""

from __future__ import annotations

import json

from core.messages import ENGLISH, text
from tests.e2e import test_telegram
from tests.e2e.test_telegram import BOT_USERNAME, Person, StartBot
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.fakes.telegram_server import DEFAULT_GROUP_ID, FakeTelegram

BOB_ID = 2002


# The service on the fakes, as test_telegram.py starts it.
start_bot = test_telegram.start_bot


def prompt_of(fake_openrouter: FakeOpenRouter, index: int = -1) -> str:
    """All a model request was sent, as one text."""
    return json.dumps(fake_openrouter.requests[index].body["messages"], ensure_ascii=False)


def user_messages(fake_openrouter: FakeOpenRouter) -> list[str]:
    """The user messages of the last model request, oldest first."""
    sent = fake_openrouter.requests[-1].body["messages"]
    return [message["content"] for message in sent if message["role"] == "user"]


async def test_a_private_chats_words_never_appear_in_a_groups_model_request(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    alone = Person(fake_telegram)
    in_group = Person(fake_telegram, chat_type="group")

    await alone.asks_model("my secret is pineapple")
    await in_group.asks_model(f"@{BOT_USERNAME} what is my secret?", "echo: what is my secret?")
    assert "pineapple" not in prompt_of(fake_openrouter)
    assert user_messages(fake_openrouter) == ["what is my secret?"]

    # And back in the private chat, the conversation is where it was.
    await alone.asks_model("and now?")
    assert user_messages(fake_openrouter) == ["my secret is pineapple", "and now?"]


async def test_each_forum_topic_and_general_keep_their_own_conversations(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    tides = fake_telegram.open_topic("Tides")
    winds = fake_telegram.open_topic("Winds")
    in_tides = Person(fake_telegram, chat_type="supergroup", topic=tides)
    in_winds = Person(fake_telegram, chat_type="supergroup", topic=winds)

    await in_tides.asks_model(f"@{BOT_USERNAME} spring tides", "echo: spring tides")
    await in_winds.asks_model(f"@{BOT_USERNAME} trade winds", "echo: trade winds")
    assert user_messages(fake_openrouter) == ["trade winds"]
    await in_tides.asks_model(f"@{BOT_USERNAME} neap tides", "echo: neap tides")
    assert user_messages(fake_openrouter) == ["spring tides", "neap tides"]
    tides_sessions = await in_tides.asks("/sessions")
    assert "spring tides" in tides_sessions.visible_text
    assert "trade winds" not in tides_sessions.visible_text


async def test_in_shared_mode_a_group_has_one_conversation_with_its_authors_named(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot(GROUP_SESSIONS="shared")
    alice = Person(fake_telegram, chat_type="group")
    bob = Person(fake_telegram, user_id=BOB_ID, username="bob", chat_type="group")

    await alice.asks_model(f"@{BOT_USERNAME} I like tea", "echo: Alice: I like tea")
    await bob.asks_model(f"@{BOT_USERNAME} I prefer coffee", "echo: Bob: I prefer coffee")
    assert user_messages(fake_openrouter) == ["Alice: I like tea", "Bob: I prefer coffee"]

    listing = await bob.asks("/sessions")
    assert "Alice: I like tea" in listing.visible_text  # the session Alice's message opened
    # Alice's private chat is her own still.
    await Person(fake_telegram).asks_model("just me")
    assert user_messages(fake_openrouter) == ["just me"]


async def test_in_shared_mode_only_the_creator_or_an_admin_deletes_a_session(
    start_bot: StartBot, fake_telegram: FakeTelegram
) -> None:
    await start_bot(GROUP_SESSIONS="shared")
    alice = Person(fake_telegram, chat_type="group")
    bob = Person(fake_telegram, user_id=BOB_ID, username="bob", chat_type="group")
    await alice.asks("/new Alice's plan")

    refused = await bob.asks("/delete")
    assert refused.visible_text == text(ENGLISH, "not_session_creator")
    assert not refused.buttons()

    fake_telegram.make_admin(BOB_ID, chat_id=DEFAULT_GROUP_ID)
    confirm = await bob.asks("/delete")
    deleted = await bob.taps(confirm, "Delete")
    assert "Alice's plan" in deleted.visible_text
    assert "Alice's plan" not in (await alice.asks("/sessions")).visible_text


async def test_rename_titles_the_active_session_and_in_shared_mode_only_its_creator_or_an_admin(
    start_bot: StartBot, fake_telegram: FakeTelegram
) -> None:
    await start_bot(GROUP_SESSIONS="shared")
    alice = Person(fake_telegram, chat_type="group")
    bob = Person(fake_telegram, user_id=BOB_ID, username="bob", chat_type="group")
    await alice.asks("/new Alice's plan")

    renamed = await alice.asks(f"/rename@{BOT_USERNAME} Our trip")
    assert renamed.visible_text == "This conversation is now Our trip."
    refused = await bob.asks("/rename Bob's trip")
    assert refused.visible_text == text(ENGLISH, "not_session_creator")

    fake_telegram.make_admin(BOB_ID, chat_id=DEFAULT_GROUP_ID)  # asked of the Bot API per /rename
    await bob.asks("/rename Lisbon in May")
    listing = (await alice.asks("/sessions")).visible_text
    assert "Lisbon in May" in listing
    assert "Our trip" not in listing
