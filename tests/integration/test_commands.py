"""The command layer, as every front uses it, against the real store and the fake model."""

from __future__ import annotations

import pytest

from core.commands import CommandHandler, Reply, TurnReply, parse_command
from core.messages import PORTUGUESE, text

ANA = "telegram:1"
BOB = "telegram:2"
pytestmark = pytest.mark.all_redis_topologies


async def say(commands: CommandHandler, message: str, user: str = ANA, locale: str = "en") -> Reply:
    outcome = await commands.handle(user, message, locale=locale)
    assert isinstance(outcome, Reply), f"{message!r} should answer at once"
    return outcome


async def chat_turn(commands: CommandHandler, message: str, user: str = ANA) -> str:
    outcome = await commands.handle(user, message)
    assert isinstance(outcome, TurnReply)
    async with outcome.turn as turn:
        return "".join([delta async for delta in turn.deltas()])


@pytest.mark.parametrize(
    ("message", "parsed"),
    [
        ("/new", ("new", "")),
        ("/new  Trip to Rio ", ("new", "Trip to Rio")),
        ("/help@chatbridge_bot", ("help", "")),
        ("/SWITCH 2", ("switch", "2")),
        ("hello /new", None),
        ("just text", None),
        ("/", None),
    ],
)
def test_commands_are_parsed_with_their_arguments(message: str, parsed: tuple[str, str] | None):
    assert parse_command(message) == parsed


async def test_start_and_help_list_every_command(commands: CommandHandler):
    for command in ("/start", "/help"):
        reply = await say(commands, command)
        for name in ("/new", "/sessions", "/switch", "/history", "/delete", "/model", "/retry"):
            assert name in reply.text


async def test_replies_follow_the_users_language(commands: CommandHandler):
    assert "Comandos" in (await say(commands, "/help", locale="pt-br")).text
    assert "Nova conversa" in (await say(commands, "/new", locale=PORTUGUESE)).text
    unknown = await say(commands, "/frobnicate", locale="pt_BR")
    assert unknown.is_error
    assert "Não conheço /frobnicate" in unknown.text


async def test_new_sessions_are_listed_most_recent_first_with_switch_choices(
    commands: CommandHandler,
):
    await say(commands, "/new Tides")
    await say(commands, "/new Volcanoes")
    reply = await say(commands, "/sessions")
    assert reply.text.index("1. Volcanoes") < reply.text.index("2. Tides")
    assert "▶ 1. Volcanoes" in reply.text
    assert [choice.label for choice in reply.choices] == ["1. Volcanoes", "2. Tides"]
    assert all(choice.command.startswith("/switch ") for choice in reply.choices)  # type: ignore[union-attr]


async def test_a_title_longer_than_allowed_is_refused(commands: CommandHandler):
    assert not (await say(commands, "/new " + "t" * 100)).is_error
    refused = await say(commands, "/new " + "t" * 101)
    assert refused.is_error
    assert "100" in refused.text


async def test_rename_retitles_the_active_session_up_to_the_title_limit(
    commands: CommandHandler,
):
    await say(commands, "/new Tides")
    await say(commands, "/new Volcanoes")
    below = await say(commands, "/rename  Lava  and\nash ")
    assert not below.is_error
    assert "*Lava and ash*" in below.text  # one line, single spaces, as lists show it
    at_limit = "t" * 100
    assert not (await say(commands, "/rename " + at_limit)).is_error
    above = await say(commands, "/rename " + "u" * 101)
    assert above.is_error
    assert "100" in above.text
    listing = await commands.store.list_sessions(ANA)
    assert [session.title for session in listing.sessions] == [at_limit, "Tides"]


async def test_rename_without_a_title_says_how_and_changes_nothing(commands: CommandHandler):
    await say(commands, "/new Tides")
    for locale in ("en", PORTUGUESE):
        reply = await say(commands, "/rename", locale=locale)
        assert not reply.is_error
        assert "/rename" in reply.text
        assert "100" in reply.text
    assert (await commands.store.list_sessions(ANA)).sessions[0].title == "Tides"


async def test_rename_without_an_active_session_creates_none(commands: CommandHandler):
    reply = await say(commands, "/rename Anything", user=BOB)
    assert reply.text == text("en", "no_session")
    assert not (await commands.store.list_sessions(BOB)).sessions


async def test_the_session_limit_says_how_to_free_a_slot(commands: CommandHandler):
    for number in range(5):
        await say(commands, f"/new s{number}")
    refused = await say(commands, "/new one too many")
    assert refused.is_error
    assert "5" in refused.text
    assert "/delete" in refused.text


async def test_the_session_limit_offers_each_session_to_delete_and_a_pick_asks_first(
    commands: CommandHandler,
):
    for title in ("Tides", "Waves"):
        await say(commands, f"/new {title}")
    listing = await say(commands, "/sessions")
    ids = [choice.command.split()[1] for choice in listing.choices]  # type: ignore[union-attr]
    for number in range(3):
        await say(commands, f"/new s{number}")

    refused = await say(commands, "/new one too many", locale=PORTUGUESE)

    assert refused.is_error
    assert refused.text.endswith("Escolha qual apagar:")
    assert len(refused.choices) == 5
    assert [c.label for c in refused.choices[-2:]] == ["🗑 4. Waves", "🗑 5. Tides"]
    assert [c.command for c in refused.choices[-2:]] == [f"/delete {ids[0]}", f"/delete {ids[1]}"]
    assert all(len((c.command or "").encode()) <= 64 for c in refused.choices)  # Telegram's cap
    confirm = await say(commands, refused.choices[-1].command or "")
    assert "Tides" in confirm.text
    assert confirm.choices[0].command == f"/delete {ids[1]} confirm"


async def test_switch_by_number_and_by_id(commands: CommandHandler):
    await say(commands, "/new Tides")
    await say(commands, "/new Volcanoes")
    assert "Tides" in (await say(commands, "/switch 2")).text
    listing = await say(commands, "/sessions")
    assert "▶ 2. Tides" in listing.text  # switching is not activity: the numbers stay put
    volcanoes_id = listing.choices[0].command.split()[1]  # type: ignore[union-attr]
    assert "Volcanoes" in (await say(commands, f"/switch {volcanoes_id}")).text
    assert "▶ 1. Volcanoes" in (await say(commands, "/sessions")).text


@pytest.mark.parametrize("argument", ["0", "3", "-1", "two", "9999999999"])
async def test_switch_to_a_number_out_of_range_is_refused(commands: CommandHandler, argument: str):
    await say(commands, "/new Tides")
    await say(commands, "/new Volcanoes")
    assert (await say(commands, f"/switch {argument}")).is_error


async def test_nobody_reaches_another_users_session(commands: CommandHandler):
    await say(commands, "/new Ana's secrets", user=ANA)
    anas_id = (await say(commands, "/sessions", user=ANA)).choices[0].command.split()[1]  # type: ignore[union-attr]
    for command in (f"/switch {anas_id}", f"/delete {anas_id}", f"/delete {anas_id} confirm"):
        reply = await say(commands, command, user=BOB)
        assert reply.is_error
        assert "doesn't exist" in reply.text
    assert "Ana" not in (await say(commands, "/sessions", user=BOB)).text
    assert "Ana's secrets" in (await say(commands, "/sessions", user=ANA)).text


async def test_history_shows_the_last_messages_of_the_active_session(commands: CommandHandler):
    for number in range(3):
        await chat_turn(commands, f"question {number}")
    reply = await say(commands, "/history 2")
    assert "last 2 of 6" in reply.text
    assert "echo: question 2" in reply.text
    assert "question 1" not in reply.text


@pytest.mark.parametrize(
    ("argument", "is_error"), [("1", False), ("50", False), ("0", True), ("51", True), ("x", True)]
)
async def test_history_count_is_bounded(commands: CommandHandler, argument: str, is_error: bool):
    await chat_turn(commands, "hello")
    assert (await say(commands, f"/history {argument}")).is_error is is_error


async def test_history_without_a_session_says_so(commands: CommandHandler):
    assert "no conversation yet" in (await say(commands, "/history")).text


async def test_delete_asks_first_and_deletes_on_confirmation(commands: CommandHandler):
    await say(commands, "/new Keep")
    await say(commands, "/new Drop")
    question = await say(commands, "/delete")
    assert "Delete *Drop*" in question.text
    confirm, cancel = question.choices
    assert cancel.command is None
    assert len((await say(commands, "/sessions")).choices) == 2  # nothing deleted yet
    assert "Deleted *Drop*" in (await say(commands, confirm.command)).text  # type: ignore[arg-type]
    listing = await say(commands, "/sessions")
    assert [choice.label for choice in listing.choices] == ["1. Keep"]
    assert "▶" in listing.text


async def test_model_is_shown_validated_and_set(commands: CommandHandler):
    assert "test/model" in (await say(commands, "/model")).text
    assert (await say(commands, "/model not a model")).is_error
    assert (await say(commands, "/model " + "a/" + "b" * 100)).is_error
    assert not (await say(commands, "/model anthropic/claude-3.5-haiku")).is_error
    assert "anthropic/claude-3.5-haiku" in (await say(commands, "/model")).text


async def test_a_plain_message_over_the_limit_is_refused_before_anything_is_stored(
    commands: CommandHandler,
):
    refused = await say(commands, "x" * 4001)
    assert refused.is_error
    assert "4001" in refused.text
    assert "4000" in refused.text
    assert "no conversations yet" in (await say(commands, "/sessions")).text


async def test_a_plain_message_at_the_limit_is_answered(commands: CommandHandler):
    assert await chat_turn(commands, "x" * 4000) == "echo: " + "x" * 4000


async def test_retry_answers_the_last_message_again(commands: CommandHandler):
    await chat_turn(commands, "tell me a joke")
    assert await chat_turn(commands, "/retry") == "echo: tell me a joke"
    assert "last 2 of 2" in (await say(commands, "/history")).text
