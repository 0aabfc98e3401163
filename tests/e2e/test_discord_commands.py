"""The Discord front's slash commands, components and access rules, end to end: `python -m bots`
as a child process on the strict fake Discord (REST and gateway), answering with the fake
OpenRouter, sessions in a real Redis.

The tests play Discord users (`Person`) who run slash commands, type into autocomplete, pick
from menus and click buttons, and read what those users would see: the interaction's response
(ephemeral or not), its components, the registered command list. Every expected sentence
comes from the core's catalogue (`text`, `describe`, `help_text`, `COMMAND_DESCRIPTIONS`).
Nothing waits on the wall clock: `wait_for` polls with a bound; a slow Redis is a real one
paused (`CLIENT PAUSE`), and every pause is over before its test ends. Restarts run a second
service on the same fake Discord, which keeps the registered commands. Plain chat, streaming
and splitting are in `test_discord_chat.py`.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from core.commands import CONFIRM, MODEL_EXAMPLE, TITLE_MAX_CHARS, CommandHandler
from core.errors import NothingToRetry, SessionNotFound
from core.messages import (
    COMMAND_DESCRIPTIONS,
    ENGLISH,
    OPTION_DESCRIPTIONS,
    PORTUGUESE,
    describe,
    help_text,
    text,
)
from core.sessions.keys import session_key
from core.sessions.store import SessionStore
from tests.e2e.conftest import Service
from tests.e2e.discord_support import (
    CHANNEL,
    FOOTER_MARK,
    GUILD,
    WAIT_SECONDS,
    Person,
    StartBot,
    answer_text,
)
from tests.fakes.discord_payloads import StoredMessage, walk_components
from tests.fakes.discord_server import DEFAULT_USER_ID, FakeDiscord, InteractionRecord
from tests.fakes.openrouter_server import FakeOpenRouter

DEFAULT_MODEL = "test/default-model"
BOB_ID = 1_300_000_000_000_000_202
CAROL_ID = 1_300_000_000_000_000_303
TESTERS_ROLE = 1_300_000_000_000_003_001
STAFF_ROLE = 1_300_000_000_000_003_002
COMMAND_NAMES = {"new", "sessions", "switch", "history", "export", "delete", "model", "retry"}
COMMAND_NAMES |= {"stop", "help", "rename", "usage", "persona"}
COMMANDS_ROUTE = r"/applications/\d+(/guilds/\d+)?/commands"
CALLBACK_ROUTE = r"/interactions/\d+/[^/]+/callback"
DEFERRED = 5  # callback type: "thinking…", filled in later
DEFERRED_UPDATE = 6  # callback type: the clicked message will be edited
DANGER = 4  # button style
NOT_FOUND = describe(SessionNotFound(), ENGLISH)


# --- the people and what they see --------------------------------------------------------------


@pytest.fixture
def alice(fake_discord: FakeDiscord) -> Person:
    return Person(fake_discord)


@pytest.fixture
def bob(fake_discord: FakeDiscord) -> Person:
    return Person(fake_discord, user_id=BOB_ID, username="bob")


@pytest.fixture
def start_bot(start_discord_service: StartBot) -> StartBot:
    """Start the service on the fakes; keyword arguments are extra environment variables."""

    async def start(**variables: str) -> Service:
        defaults = {"DEFAULT_MODEL": DEFAULT_MODEL, "DISCORD_EDIT_INTERVAL": "0.2"}
        return await start_discord_service(**(defaults | variables))

    return start


async def content_of(person: Person, command: str, options: dict[str, Any] | None = None) -> str:
    return (await person.command(command, options)).content


async def chat_answer(person: Person, said: str) -> list[StoredMessage]:
    """A plain DM to the bot; the bot's messages answering it, once finished."""
    channel = person.fake.dm_channel_of(person.user_id)
    before = len(person.fake.messages(channel)) if channel is not None else 0
    person.posts(said)
    return await person.finished_answer(after=before)


async def chats(person: Person, said: str) -> str:
    """A plain DM to the bot; the finished answer as the user reads it (footer left out)."""
    return answer_text(await chat_answer(person, said))


async def clicks(person: Person, message: StoredMessage, custom_id: str) -> StoredMessage:
    """Click a button of the bot's message; the message once the click is answered."""
    interaction = person.fake.user_clicks(
        custom_id, message.id, user_id=person.user_id, locale=person.locale,
        username=person.username,
    )  # fmt: skip
    return await person.answer_to(interaction)


async def picks(person: Person, message: StoredMessage, value: str) -> StoredMessage:
    """Pick an option of the bot's select menu; the message once the pick is answered."""
    interaction = person.fake.user_selects(
        "cb:menu", [value], message_id=message.id, user_id=person.user_id,
        locale=person.locale, username=person.username,
    )  # fmt: skip
    return await person.answer_to(interaction)


async def suggestions(person: Person, command: str, typed: str) -> list[dict[str, Any]]:
    """What Discord shows under the `session` option of `command` while the user types."""
    interaction = person.fake.user_autocompletes(
        command, "session", typed, user_id=person.user_id, guild_id=person.guild_id,
        channel_id=person.channel_id, locale=person.locale, username=person.username,
    )  # fmt: skip
    record = person.fake.responses(interaction["id"])
    await person.fake.wait_for(
        lambda: record.callback_type == 8, WAIT_SECONDS, what="autocomplete choices"
    )
    return record.choices


def components(message: StoredMessage, kind: int) -> list[dict[str, Any]]:
    return [c for c in walk_components(message.components) if c.get("type") == kind]


def menu_options(message: StoredMessage) -> dict[str, str]:
    """The select menu's options: label -> value."""
    (menu,) = components(message, 3)
    assert menu["custom_id"] == "cb:menu"
    return {option["label"]: option["value"] for option in menu["options"]}


async def session_ids(person: Person) -> dict[str, str]:
    """The person's sessions, title -> id, read from their /sessions menu."""
    options = menu_options(await person.command("sessions"))
    return {
        label.split(". ", 1)[1]: value.removeprefix("/switch ") for label, value in options.items()
    }


def record_of(person: Person, interaction: dict[str, Any]) -> InteractionRecord:
    return person.fake.responses(interaction["id"])


# --- 1. the command list -----------------------------------------------------------------------


async def test_commands_are_registered_globally_in_english_with_portuguese_localizations(
    start_bot: StartBot, fake_discord: FakeDiscord
) -> None:
    await start_bot()

    registered = {command["name"]: command for command in fake_discord.commands()}
    assert set(registered) == COMMAND_NAMES
    for name, command in registered.items():
        assert command["description"] == COMMAND_DESCRIPTIONS[ENGLISH][name]
        assert command["description_localizations"] == {
            PORTUGUESE: COMMAND_DESCRIPTIONS[PORTUGUESE][name]
        }
    options = {
        (name, option["name"]): option
        for name, command in registered.items()
        for option in command.get("options") or []
    }
    assert set(options) == {
        ("new", "title"), ("switch", "session"), ("history", "n"), ("delete", "session"),
        ("model", "id"), ("rename", "title"), ("persona", "persona"),
    }  # fmt: skip
    for (name, option_name), option in options.items():
        key = f"{name}.{option_name}"
        assert option["description"] == OPTION_DESCRIPTIONS[ENGLISH][key]
        assert option["description_localizations"] == {
            PORTUGUESE: OPTION_DESCRIPTIONS[PORTUGUESE][key]
        }
    assert options[("switch", "session")]["autocomplete"] is True
    assert options[("switch", "session")]["required"] is True
    assert options[("delete", "session")]["autocomplete"] is True
    assert not options[("delete", "session")].get("required")
    assert (options[("history", "n")]["type"], options[("history", "n")]["min_value"]) == (4, 1)
    assert options[("history", "n")]["max_value"] == 50
    assert options[("rename", "title")]["required"] is True
    assert options[("rename", "title")]["max_length"] == TITLE_MAX_CHARS
    assert not options[("persona", "persona")].get("required")
    assert options[("persona", "persona")]["max_length"] == 4000  # MAX_SYSTEM_PROMPT_LENGTH


async def test_with_guild_ids_the_commands_are_registered_in_that_guild_and_none_globally(
    start_bot: StartBot, fake_discord: FakeDiscord
) -> None:
    fake_discord.add_guild(GUILD, channels=[CHANNEL])
    await start_bot(DISCORD_GUILD_IDS=str(GUILD))

    assert {command["name"] for command in fake_discord.commands(GUILD)} == COMMAND_NAMES
    assert fake_discord.commands() == []
    alice = Person(fake_discord, guild_id=GUILD)
    assert await content_of(alice, "help") == help_text(ENGLISH)


async def test_moving_to_guild_commands_removes_the_global_ones_left_from_before(
    start_bot: StartBot, fake_discord: FakeDiscord
) -> None:
    fake_discord.add_guild(GUILD, channels=[CHANNEL])
    first = await start_bot()
    assert {command["name"] for command in fake_discord.commands()} == COMMAND_NAMES
    await first.stop()

    await start_bot(DISCORD_GUILD_IDS=str(GUILD))

    assert {command["name"] for command in fake_discord.commands(GUILD)} == COMMAND_NAMES
    # Left behind, every command would show twice in the guild, the global copy unanswered.
    assert fake_discord.commands() == []


async def test_a_restart_registers_the_commands_again_only_when_discord_holds_a_different_set(
    start_bot: StartBot, fake_discord: FakeDiscord
) -> None:
    first = await start_bot()
    await first.wait_for_event("discord.commands_synced")
    await first.stop()

    unchanged = await start_bot()
    await unchanged.stop()

    assert len(fake_discord.calls_to("PUT", COMMANDS_ROUTE)) == 1
    assert unchanged.events("discord.commands_unchanged")
    assert not unchanged.events("discord.commands_synced")

    # Someone (an older release, another tool) overwrote the list: one stale command left.
    stale = [{"name": "help", "type": 1, "description": "An outdated description"}]
    async with aiohttp.ClientSession() as http:
        url = f"{fake_discord.api_base_url}/applications/{fake_discord.application_id}/commands"
        headers = {"Authorization": f"Bot {fake_discord.token}"}
        async with http.put(url, json=stale, headers=headers) as response:
            assert response.status == 200
    assert [command["name"] for command in fake_discord.commands()] == ["help"]

    changed = await start_bot()

    synced = await changed.wait_for_event("discord.commands_synced")
    assert synced["commands"] == len(COMMAND_NAMES)
    assert len(fake_discord.calls_to("PUT", COMMANDS_ROUTE)) == 3  # first start, stale, restart
    registered = {command["name"]: command for command in fake_discord.commands()}
    assert set(registered) == COMMAND_NAMES
    assert registered["help"]["description"] == COMMAND_DESCRIPTIONS[ENGLISH]["help"]


# --- 2. sessions: /new, /sessions and its menu ---------------------------------------------------


async def test_new_answers_privately_with_the_untitled_or_given_title(
    start_bot: StartBot, alice: Person
) -> None:
    await start_bot()

    untitled = await alice.command("new")
    titled = await alice.command("new", {"title": "Trip to Rome"})

    assert untitled.content == text(ENGLISH, "session_created", title=text(ENGLISH, "untitled"))
    assert titled.content == text(ENGLISH, "session_created", title="Trip to Rome")
    assert untitled.is_ephemeral
    assert titled.is_ephemeral
    assert list((await session_ids(alice)).keys()) == ["Trip to Rome", text(ENGLISH, "untitled")]


async def test_rename_answers_privately_and_the_active_session_carries_the_new_title(
    start_bot: StartBot, alice: Person
) -> None:
    await start_bot()
    await alice.command("new", {"title": "Trip to Rome"})
    await alice.command("new", {"title": "Groceries"})

    renamed = await alice.command("rename", {"title": "Trip to Lisbon"})

    assert renamed.content == text(ENGLISH, "renamed", title="Trip to Lisbon")
    assert renamed.is_ephemeral
    assert list((await session_ids(alice)).keys()) == ["Trip to Lisbon", "Trip to Rome"]


async def test_sessions_lists_them_privately_with_a_menu_that_switches_and_the_next_message_follows(
    start_bot: StartBot, alice: Person
) -> None:
    await start_bot()
    await alice.command("new", {"title": "Alpha"})
    await alice.command("new", {"title": "Beta"})

    listing = await alice.command("sessions")

    assert listing.is_ephemeral
    assert listing.content.splitlines() == [  # the most recent first, ▶ the current one
        text(ENGLISH, "sessions_header"),
        text(ENGLISH, "session_line", marker="▶ ", number=1, title="Beta", count=0,
             model=DEFAULT_MODEL),
        text(ENGLISH, "session_line", marker="", number=2, title="Alpha", count=0,
             model=DEFAULT_MODEL),
    ]  # fmt: skip
    options = menu_options(listing)
    assert list(options) == ["1. Beta", "2. Alpha"]
    assert all(re.fullmatch(r"/switch [0-9a-f]{32}", value) for value in options.values())

    switched = await picks(alice, listing, options["2. Alpha"])

    assert switched.id == listing.id  # the menu's message itself now says where the user is
    assert switched.content == text(ENGLISH, "switched", title="Alpha", count=0)
    assert switched.components == []
    assert await chats(alice, "hello alpha") == "echo: hello alpha"
    history = await content_of(alice, "history")
    assert history.startswith(text(ENGLISH, "history_header", title="Alpha", shown=2, total=2))


# --- 3. /switch and its autocomplete -------------------------------------------------------------


async def test_switch_autocomplete_offers_the_users_own_sessions_whose_title_contains_the_text(
    start_bot: StartBot, alice: Person, bob: Person
) -> None:
    await start_bot()
    for title in ("Trip to Rome", "Work notes", "Roman history"):
        await alice.command("new", {"title": title})
    await bob.command("new", {"title": "Rome for Bob"})
    ids = await session_ids(alice)

    typed = await suggestions(alice, "switch", "ROM")
    everything = await suggestions(alice, "switch", "")
    on_delete = await suggestions(alice, "delete", "work")
    by_number = await suggestions(alice, "switch", "3")
    bobs = await suggestions(bob, "switch", "rom")

    def offered(choices: list[dict[str, Any]]) -> dict[str, str]:
        return {choice["value"]: choice["name"].split(". ", 1)[1] for choice in choices}

    assert offered(typed) == {
        ids["Trip to Rome"]: "Trip to Rome",
        ids["Roman history"]: "Roman history",
    }
    assert offered(everything) == {value: title for title, value in ids.items()}
    assert [c["name"] for c in everything if c["name"].startswith("▶ ")] == ["▶ 1. Roman history"]
    assert offered(on_delete) == {ids["Work notes"]: "Work notes"}
    assert [c["name"] for c in by_number] == ["3. Trip to Rome"]  # its number in /sessions
    assert list(offered(bobs).values()) == ["Rome for Bob"]
    assert not set(offered(bobs)) & set(ids.values())


async def test_switch_by_the_chosen_id_or_by_number_and_an_unknown_id_is_not_found(
    start_bot: StartBot, alice: Person
) -> None:
    await start_bot()
    await alice.command("new", {"title": "Alpha"})
    await alice.command("new", {"title": "Beta"})  # the current one, listed first

    by_number = await alice.command("switch", {"session": "2"})
    (chosen,) = await suggestions(alice, "switch", "bet")
    by_id = await content_of(alice, "switch", {"session": chosen["value"]})
    unknown = await alice.command("switch", {"session": "0123456789abcdef0123456789abcdef"})

    assert by_number.content == text(ENGLISH, "switched", title="Alpha", count=0)
    assert by_number.is_ephemeral
    assert by_id == text(ENGLISH, "switched", title="Beta", count=0)
    assert unknown.content == NOT_FOUND
    assert unknown.is_ephemeral


# --- 4. /history ---------------------------------------------------------------------------------


async def test_history_shows_the_last_messages_and_n_shows_fewer(
    start_bot: StartBot, alice: Person
) -> None:
    await start_bot()
    await alice.command("new", {"title": "Notes"})
    for said in ("one", "two", "three"):
        assert await chats(alice, said) == f"echo: {said}"

    everything = await alice.command("history")
    last_two = await content_of(alice, "history", {"n": 2})

    you, assistant = text(ENGLISH, "you"), text(ENGLISH, "assistant")
    turns = [
        line
        for said in ("one", "two", "three")
        for line in (f"*{you}:* {said}", f"*{assistant}:* echo: {said}")
    ]
    header = text(ENGLISH, "history_header", title="Notes", shown=6, total=6)
    assert everything.content == "\n\n".join([header, *turns])
    assert everything.is_ephemeral
    header = text(ENGLISH, "history_header", title="Notes", shown=2, total=6)
    assert last_two == "\n\n".join([header, *turns[-2:]])


# --- 5. /delete and its buttons ------------------------------------------------------------------


async def test_delete_asks_with_a_danger_button_and_clicking_it_deletes_the_session(
    start_bot: StartBot, alice: Person, redis_client: aioredis.Redis
) -> None:
    await start_bot()
    await alice.command("new", {"title": "Keep"})
    await alice.command("new", {"title": "Doomed"})
    ids = await session_ids(alice)

    question = await alice.command("delete", {"session": ids["Doomed"]})

    assert question.is_ephemeral
    assert question.content == text(ENGLISH, "delete_confirm", title="Doomed", count=0)
    yes, no = components(question, 2)
    assert yes["custom_id"] == f"cb:run:/delete {ids['Doomed']} {CONFIRM}"
    assert (yes["label"], yes["style"]) == (text(ENGLISH, "delete_yes"), DANGER)
    assert (no["custom_id"], no["label"]) == ("cb:dismiss", text(ENGLISH, "delete_no"))

    done = await clicks(alice, question, yes["custom_id"])

    assert done.id == question.id
    assert done.content == text(ENGLISH, "deleted", title="Doomed")
    assert done.components == []
    assert not await redis_client.exists(session_key(ids["Doomed"]))
    assert list(await session_ids(alice)) == ["Keep"]


async def test_new_past_the_session_limit_offers_a_menu_of_sessions_to_delete(
    start_bot: StartBot, alice: Person
) -> None:
    await start_bot(MAX_SESSIONS_PER_USER="2")
    await alice.command("new", {"title": "Alpha"})
    await alice.command("new", {"title": "Beta"})
    ids = await session_ids(alice)

    refused = await alice.command("new", {"title": "Gamma"})

    assert refused.is_ephemeral
    assert refused.content == "\n".join(
        [text(ENGLISH, "session_limit_reached", limit=2), text(ENGLISH, "session_limit_pick")]
    )
    assert menu_options(refused) == {
        "🗑 1. Beta": f"/delete {ids['Beta']}",
        "🗑 2. Alpha": f"/delete {ids['Alpha']}",
    }
    question = await picks(alice, refused, f"/delete {ids['Alpha']}")
    assert question.content == text(ENGLISH, "delete_confirm", title="Alpha", count=0)
    yes, _ = components(question, 2)
    await clicks(alice, question, yes["custom_id"])
    created = await alice.command("new", {"title": "Gamma"})
    assert created.content == text(ENGLISH, "session_created", title="Gamma")


async def test_cancel_removes_the_buttons_and_keeps_the_current_session_a_bare_delete_asked_about(
    start_bot: StartBot, alice: Person, redis_client: aioredis.Redis
) -> None:
    await start_bot()
    await alice.command("new", {"title": "Older"})
    await alice.command("new", {"title": "Current"})
    assert await chats(alice, "keep me") == "echo: keep me"
    ids = await session_ids(alice)

    question = await alice.command("delete")
    asked = question.content
    cancelled = await clicks(alice, question, "cb:dismiss")

    assert asked == text(ENGLISH, "delete_confirm", title="Current", count=2)
    assert cancelled.id == question.id
    assert cancelled.content == asked
    assert cancelled.components == []
    assert await redis_client.exists(session_key(ids["Current"]))
    history = await content_of(alice, "history")
    assert history.startswith(text(ENGLISH, "history_header", title="Current", shown=2, total=2))


# --- 6. /model -----------------------------------------------------------------------------------


async def test_model_shows_the_current_one_sets_one_for_the_next_message_and_refuses_a_bad_id(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter, commands: CommandHandler
) -> None:
    await start_bot()

    current = await alice.command("model")
    chosen = await content_of(alice, "model", {"id": "test/other-model"})
    answer = await chat_answer(alice, "who answers?")
    refused = await alice.command("model", {"id": "not a model!"})

    assert current.content == text(
        ENGLISH, "model_current", model=DEFAULT_MODEL, example=MODEL_EXAMPLE
    )
    assert current.is_ephemeral
    assert chosen == text(ENGLISH, "model_set", model="test/other-model")
    assert fake_openrouter.requests[-1].body["model"] == "test/other-model"
    assert answer_text(answer) == "echo: who answers?"
    assert f"{FOOTER_MARK}test/other-model · " in answer[-1].content
    expected = await commands.handle("discord:someone-else", "/model not a model!")
    assert expected.is_error
    assert refused.content == expected.text
    assert refused.is_ephemeral


async def test_usage_answers_privately_with_the_tokens_the_model_reported(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    assert await chats(alice, "hello there") == "echo: hello there"
    (reported,) = fake_openrouter.reported_usages
    prompt, completion = reported["prompt_tokens"], reported["completion_tokens"]

    shown = await alice.command("usage")

    assert shown.is_ephemeral
    assert f"{prompt + completion} tokens ({prompt} prompt + {completion} answer)" in shown.content
    assert shown.content.endswith(text(ENGLISH, "usage_no_budget"))


# --- 7. /retry -----------------------------------------------------------------------------------


async def test_retry_answers_again_publicly_in_the_interaction_response_streamed_with_a_footer(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    await alice.command("new", {"title": "Greetings"})
    assert await chats(alice, "hello again") == "echo: hello again"

    # Slow enough for a preview (the first one comes FIRST_PREVIEW_AFTER_SECONDS = 0.5 s in).
    fake_openrouter.stall(after_deltas=1, seconds=1.0)
    interaction = alice.runs("retry")
    record = record_of(alice, interaction)
    answer = await alice.fake.wait_for(
        lambda: record.original if FOOTER_MARK in getattr(record.original, "content", "") else None,
        WAIT_SECONDS,
        what="the retried answer",
    )

    assert record.callback_type == DEFERRED  # "thinking…", then the answer grows in place
    assert not record.is_ephemeral
    assert answer_text([answer]) == "echo: hello again"
    first, *shown, final = answer.history
    assert first == ""  # the "thinking…" placeholder
    assert shown
    assert all(preview.endswith(" …") for preview in shown)
    footer = final.split(FOOTER_MARK)[1]
    assert re.fullmatch(rf"{re.escape(DEFAULT_MODEL)} · \d+ → \d+ tokens", footer)
    assert len(fake_openrouter.requests) == 2
    history = await content_of(alice, "history")  # the answer was replaced, not added
    assert history.startswith(text(ENGLISH, "history_header", title="Greetings", shown=2, total=2))


async def test_a_retry_still_streaming_when_the_interaction_token_expires_ends_through_the_channel(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    service = await start_bot()
    await alice.command("new", {"title": "Greetings"})
    assert await chats(alice, "hello again") == "echo: hello again"
    alice.fake.interaction_token_ttl = 1.0  # Discord's 15 minutes, shortened
    fake_openrouter.stall(after_deltas=1, seconds=2.0)  # a preview first, then past the token

    interaction = alice.runs("retry")
    record = record_of(alice, interaction)
    answer = await alice.fake.wait_for(
        lambda: record.original if FOOTER_MARK in getattr(record.original, "content", "") else None,
        WAIT_SECONDS,
        what="the retried answer",
    )

    assert answer_text([answer]) == "echo: hello again"
    assert any(preview.endswith(" …") for preview in answer.history)  # it did stream
    assert not any(m.content.endswith(" …") for m in alice.fake.messages(alice.where))
    refused = [c for c in alice.fake.calls if c.path.startswith("/webhooks/") and c.status == 401]
    assert refused
    edited = alice.fake.calls_to("PATCH", rf"/channels/\d+/messages/{answer.id}")
    assert edited
    assert edited[-1].at > refused[0].at
    assert service.events("discord.interaction_token_expired")
    assert service.events("discord.handler_failed") == []


async def test_retry_with_nothing_to_retry_answers_the_cores_error(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()

    without_session = await content_of(alice, "retry")
    await alice.command("new", {"title": "Empty"})
    without_message = await content_of(alice, "retry")

    assert without_session == describe(NothingToRetry(), ENGLISH)
    assert without_message == describe(NothingToRetry(), ENGLISH)
    assert fake_openrouter.requests == []


async def test_retry_in_a_guild_says_nothing_to_retry_privately_and_leaves_nothing_public(
    start_bot: StartBot, fake_discord: FakeDiscord
) -> None:
    fake_discord.add_guild(GUILD, channels=[CHANNEL])
    await start_bot()
    alice = Person(fake_discord, guild_id=GUILD)

    interaction = alice.runs("retry")
    answer = await alice.answer_to(interaction)

    assert answer.content == describe(NothingToRetry(), ENGLISH)
    assert answer.is_ephemeral
    assert [m for m in fake_discord.messages(CHANNEL) if not m.is_ephemeral] == []


# --- 8. /help and the user's language ------------------------------------------------------------


async def test_help_lists_the_commands_and_a_portuguese_client_is_answered_in_portuguese(
    start_bot: StartBot, alice: Person, fake_discord: FakeDiscord
) -> None:
    await start_bot()
    rosa = Person(fake_discord, user_id=CAROL_ID, username="rosa", locale="pt-BR")

    english = await alice.command("help")
    portuguese = await rosa.command("help")
    created = await content_of(rosa, "new")
    unknown = await content_of(rosa, "switch", {"session": "0123456789abcdef0123456789abcdef"})

    assert english.content == help_text(ENGLISH)
    assert english.is_ephemeral
    assert portuguese.content == help_text(PORTUGUESE)
    assert created == text(PORTUGUESE, "session_created", title=text(PORTUGUESE, "untitled"))
    assert unknown == describe(SessionNotFound(), PORTUGUESE)


# --- 9. who may use the bot ----------------------------------------------------------------------


async def test_allowed_users_by_id_or_name_are_served_and_anyone_else_is_refused_privately(
    start_bot: StartBot, fake_discord: FakeDiscord, alice: Person, bob: Person, store: SessionStore
) -> None:
    bobs = await store.create_session(
        f"discord:{BOB_ID}", title="Bob's", default_model=DEFAULT_MODEL
    )
    await start_bot(DISCORD_ALLOWED_USERS=f"{alice.user_id},Carol")
    carol = Person(fake_discord, user_id=CAROL_ID, username="carol")

    by_id = await content_of(alice, "help")
    by_name = await content_of(carol, "help")
    refused = await bob.command("new", {"title": "Sneaky"})
    offered = await suggestions(bob, "switch", "")

    assert by_id == by_name == help_text(ENGLISH)
    assert refused.content == text(ENGLISH, "not_allowed")
    assert refused.is_ephemeral
    assert offered == []  # even his own session is not offered
    assert [s.id for s in (await store.list_sessions(f"discord:{BOB_ID}")).sessions] == [bobs.id]


async def test_allowed_roles_by_id_or_name_admit_members_with_them_and_refuse_the_rest_and_dms(
    start_bot: StartBot, fake_discord: FakeDiscord
) -> None:
    fake_discord.add_guild(
        GUILD,
        channels=[CHANNEL],
        roles=[{"id": TESTERS_ROLE, "name": "Testers"}, {"id": STAFF_ROLE, "name": "Staff"}],
        members=[
            {"id": DEFAULT_USER_ID, "username": "alice", "roles": [TESTERS_ROLE]},
            {"id": CAROL_ID, "username": "carol", "roles": [STAFF_ROLE]},
            {"id": BOB_ID, "username": "bob", "roles": []},
        ],
    )
    await start_bot(DISCORD_ALLOWED_ROLES=f"{TESTERS_ROLE},staff")
    alice = Person(fake_discord, guild_id=GUILD)
    carol = Person(fake_discord, user_id=CAROL_ID, username="carol", guild_id=GUILD)
    bob = Person(fake_discord, user_id=BOB_ID, username="bob", guild_id=GUILD)
    alice_in_dms = Person(fake_discord)

    by_role_id = await content_of(alice, "help")
    by_role_name = await content_of(carol, "help")
    refused = await bob.command("help")
    in_dms = await alice_in_dms.command("help")

    assert by_role_id == by_role_name == help_text(ENGLISH)
    assert refused.content == text(ENGLISH, "not_allowed")
    assert refused.is_ephemeral
    # Roles exist only in a guild: in DMs, only DISCORD_ALLOWED_USERS could let alice in.
    assert in_dms.content == text(ENGLISH, "not_allowed")


# --- 10. the 3-second answer window --------------------------------------------------------------


async def test_a_slow_redis_makes_the_bot_defer_within_the_window_and_answer_after(
    start_bot: StartBot, alice: Person, fake_discord: FakeDiscord, redis_client: aioredis.Redis
) -> None:
    await start_bot()
    await alice.command("help")
    # Longer than Discord's 3 s: an answer that waited for Redis would come too late.
    await redis_client.execute_command("CLIENT", "PAUSE", "3200", "ALL")
    try:
        interaction = alice.runs("new", {"title": "Patience"})
        answer = await alice.answer_to(interaction)
    finally:
        await redis_client.ping()  # answered once the pause is over

    record = record_of(alice, interaction)
    assert record.callback_type == DEFERRED
    assert answer.content == text(ENGLISH, "session_created", title="Patience")
    assert answer.is_ephemeral
    callbacks = fake_discord.calls_to("POST", CALLBACK_ROUTE)
    assert len(callbacks) == 2  # /help's answer, then the defer
    assert all(call.status == 200 for call in callbacks)  # neither came too late (10062)


async def test_a_slow_redis_during_a_menu_pick_still_replaces_the_menu_with_the_answer(
    start_bot: StartBot, alice: Person, fake_discord: FakeDiscord, redis_client: aioredis.Redis
) -> None:
    await start_bot()
    await alice.command("new", {"title": "Alpha"})
    await alice.command("new", {"title": "Beta"})
    listing = await alice.command("sessions")
    shown = len(fake_discord.messages(alice.where))
    await redis_client.execute_command("CLIENT", "PAUSE", "2600", "ALL")
    try:
        interaction = fake_discord.user_selects(
            "cb:menu", [menu_options(listing)["2. Alpha"]], message_id=listing.id
        )
        record = record_of(alice, interaction)
        await fake_discord.wait_for(lambda: record.edits, WAIT_SECONDS, what="the answer")
    finally:
        await redis_client.ping()  # answered once the pause is over

    # As without the delay: the menu's message says where the user is now, and has no menu.
    assert listing.content == text(ENGLISH, "switched", title="Alpha", count=0)
    assert listing.components == []
    assert len(fake_discord.messages(alice.where)) == shown  # no second, "thinking…" message
    assert record.callback_type == DEFERRED_UPDATE


# --- 11. one user's sessions are theirs alone -----------------------------------------------------


async def test_bob_can_neither_switch_to_nor_delete_alices_session_by_its_id(
    start_bot: StartBot, alice: Person, bob: Person, redis_client: aioredis.Redis
) -> None:
    await start_bot()
    await alice.command("new", {"title": "Private"})
    assert await chats(alice, "my secret") == "echo: my secret"
    (private,) = (await session_ids(alice)).values()
    await bob.command("new", {"title": "Bob's"})

    switched = await content_of(bob, "switch", {"session": private})
    asked = await content_of(bob, "delete", {"session": private})
    confirmed = await content_of(bob, "delete", {"session": f"{private} {CONFIRM}"})

    assert [switched, asked, confirmed] == [NOT_FOUND] * 3
    assert await redis_client.exists(session_key(private))
    history = await content_of(alice, "history")
    assert history.startswith(text(ENGLISH, "history_header", title="Private", shown=2, total=2))
    assert list(await session_ids(bob)) == ["Bob's"]
