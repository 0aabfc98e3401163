"""The command layer (core/commands.py) through `CommandHandler.handle`, in memory.

What is decided before any Redis call (unknown commands, argument checks at and around their
bounds, text that is not Unicode, over-long messages, /help and /start), with the in-memory store
and the scripted model of tests/fakes where an accepted argument goes on to the store.
tests/integration/test_commands.py runs the commands on the real store.
"""

from __future__ import annotations

import pytest

from core.commands import (
    HISTORY_MAX,
    MODEL_ID_MAX_CHARS,
    TITLE_MAX_CHARS,
    CommandHandler,
    Reply,
    TurnReply,
)
from core.messages import COMMAND_DESCRIPTIONS, ENGLISH, PORTUGUESE, text
from core.observability.metrics import Metrics
from core.sessions.limits import SessionLimits
from tests.fakes.chat_model import ScriptedModel
from tests.fakes.turn_store import InMemoryTurnStore
from tests.unit.conftest import MODEL

ANA = "telegram:1"
BOB = "telegram:2"
MESSAGE_LIMIT = 20
NOT_UNICODE = "caf\udce9"  # a lone surrogate: the undecodable byte a terminal passed through


@pytest.fixture
def limits() -> SessionLimits:
    return SessionLimits(max_message_length=MESSAGE_LIMIT)


async def say(
    commands: CommandHandler, message: str, user: str = ANA, locale: str = ENGLISH
) -> Reply:
    outcome = await commands.handle(user, message, locale=locale)
    assert isinstance(outcome, Reply), f"{message!r} should answer at once"
    return outcome


async def chat_turn(commands: CommandHandler, message: str, user: str = ANA) -> str:
    outcome = await commands.handle(user, message)
    assert isinstance(outcome, TurnReply), f"{message!r} should start a turn"
    async with outcome.turn as turn:
        return "".join([delta async for delta in turn.deltas()])


def errors_counted(metrics: Metrics, kind: str) -> float:
    labels = {"front": "telegram", "kind": kind}
    return metrics.registry.get_sample_value("chatbridge_errors_total", labels) or 0.0


# --- what needs no store ----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["/frobnicate", "/FROBNICATE", "/frobnicate@chatbridge_bot x"])
async def test_an_unknown_command_is_refused_naming_it(commands: CommandHandler, command: str):
    reply = await say(commands, command)
    assert reply.is_error
    assert reply.text == "I don't know /frobnicate. Send /help to see what I can do."


async def test_an_unknown_command_is_refused_in_the_users_language_and_counted(
    commands: CommandHandler, metrics: Metrics
):
    reply = await say(commands, "/frobnicate", locale="pt_BR")
    assert reply.is_error
    assert "Não conheço /frobnicate" in reply.text
    assert errors_counted(metrics, "unknown_command") == 1


@pytest.mark.parametrize("locale", [ENGLISH, PORTUGUESE])
async def test_help_lists_every_command_with_its_description(commands: CommandHandler, locale: str):
    reply = await say(commands, "/help", locale=locale)
    assert not reply.is_error
    assert reply.text.startswith(text(locale, "help_header"))
    for name, description in COMMAND_DESCRIPTIONS[locale].items():
        assert f"/{name} — {description}" in reply.text


@pytest.mark.parametrize(("ttl_seconds", "minutes"), [(7200, 120), (3600, 60), (119, 1), (59, 1)])
async def test_start_welcomes_with_the_session_lifetime_in_minutes_then_the_help(
    commands: CommandHandler, store: InMemoryTurnStore, ttl_seconds: int, minutes: int
):
    store.limits = SessionLimits(ttl_seconds=ttl_seconds)
    reply = await say(commands, "/start")
    welcome = text(ENGLISH, "welcome", ttl_minutes=minutes)
    assert reply.text == f"{welcome}\n\n{(await say(commands, '/help')).text}"


@pytest.mark.parametrize("message", [NOT_UNICODE, f"/new {NOT_UNICODE}", f"/model a/{NOT_UNICODE}"])
async def test_text_that_is_not_unicode_is_refused_before_anything_is_stored(
    commands: CommandHandler, store: InMemoryTurnStore, model: ScriptedModel, message: str
):
    reply = await say(commands, message)
    assert reply.is_error
    assert reply.text == "Invalid message: it is not valid UTF-8 text."
    assert await store.active_session(ANA) is None
    assert model.requests == []


@pytest.mark.parametrize("length", [MESSAGE_LIMIT - 1, MESSAGE_LIMIT])
async def test_a_plain_message_up_to_the_limit_is_answered(commands: CommandHandler, length: int):
    assert await chat_turn(commands, "x" * length) == "echo: " + "x" * length


@pytest.mark.parametrize("length", [MESSAGE_LIMIT + 1, MESSAGE_LIMIT * 10])
async def test_a_plain_message_over_the_limit_is_refused_before_anything_is_stored(
    commands: CommandHandler, store: InMemoryTurnStore, model: ScriptedModel, length: int
):
    reply = await say(commands, "x" * length)
    assert reply.is_error
    assert f"Your message has {length} characters; the limit is {MESSAGE_LIMIT}." in reply.text
    assert await store.active_session(ANA) is None
    assert model.requests == []


@pytest.mark.parametrize("message", ["", "   ", "\n\t"])
async def test_an_empty_message_is_refused(commands: CommandHandler, message: str):
    reply = await say(commands, message)
    assert reply.is_error
    assert reply.text == "Your message is empty."


async def test_a_title_over_its_limit_is_refused(commands: CommandHandler):
    reply = await say(commands, "/new " + "t" * (TITLE_MAX_CHARS + 1))
    assert reply.is_error
    assert f"at most {TITLE_MAX_CHARS} characters" in reply.text


# --- /history n: from 1 to HISTORY_MAX --------------------------------------------------------


@pytest.mark.parametrize(
    "argument", ["0", str(HISTORY_MAX + 1), "-1", "x", "²", "1.5", "9999999999"]
)
async def test_history_outside_its_bounds_is_refused(commands: CommandHandler, argument: str):
    reply = await say(commands, f"/history {argument}")
    assert reply.is_error
    assert reply.text == f"Invalid n: a whole number from 1 to {HISTORY_MAX}."


@pytest.mark.parametrize("argument", ["", "1", "007", str(HISTORY_MAX)])
async def test_history_within_its_bounds_goes_on_to_the_session(
    commands: CommandHandler, argument: str
):
    reply = await say(commands, f"/history {argument}")
    assert reply == Reply(text(ENGLISH, "no_session"))


# --- /model id: a model id of at most MODEL_ID_MAX_CHARS --------------------------------------


def model_id_of_length(length: int) -> str:
    return "vendor/" + "m" * (length - len("vendor/"))


@pytest.mark.parametrize(
    "model_id",
    [model_id_of_length(MODEL_ID_MAX_CHARS + 1), "not a model", "no-slash", "/leading", "a/"],
)
async def test_a_model_id_that_is_too_long_or_malformed_is_refused(
    commands: CommandHandler, model_id: str
):
    reply = await say(commands, f"/model {model_id}")
    assert reply.is_error
    assert reply.text == "Invalid model: expected a model id like anthropic/claude-3.5-haiku."


@pytest.mark.parametrize(
    "model_id", [model_id_of_length(MODEL_ID_MAX_CHARS), "a/b", "openai/gpt-4o:free"]
)
async def test_a_model_id_within_bounds_is_set_and_asked_for_the_next_turn(
    commands: CommandHandler, model: ScriptedModel, model_id: str
):
    reply = await say(commands, f"/model {model_id}")
    assert reply == Reply(text(ENGLISH, "model_set", model=model_id))
    await chat_turn(commands, "hello")
    assert model.requests[-1].model == model_id


async def test_model_without_an_id_shows_the_current_one(commands: CommandHandler):
    assert f"Model: `{MODEL}`" in (await say(commands, "/model")).text
    await chat_turn(commands, "hello")
    await say(commands, "/model vendor/other")
    assert "Model: `vendor/other`" in (await say(commands, "/model")).text


# --- /switch and /delete by number: from 1 to the number of sessions --------------------------


@pytest.mark.parametrize("command", ["/switch", "/delete"])
@pytest.mark.parametrize("argument", ["0", "2", "-1", "two", "9999999999"])
async def test_a_session_number_out_of_range_is_refused(
    commands: CommandHandler, command: str, argument: str
):
    await chat_turn(commands, "hello")  # one session: numbers 1 to 1
    reply = await say(commands, f"{command} {argument}")
    assert reply.is_error
    assert reply.text == "Invalid number: a whole number from 1 to 1."


@pytest.mark.parametrize("command", ["/switch 1", "/delete 1"])
async def test_number_one_without_any_session_is_not_found(commands: CommandHandler, command: str):
    reply = await say(commands, command)
    assert reply.is_error
    assert reply.text == text(ENGLISH, "session_not_found")


async def test_switch_to_the_only_session_by_number(commands: CommandHandler):
    await chat_turn(commands, "Tides and the Moon")
    reply = await say(commands, "/switch 1")
    assert reply == Reply("Now in *Tides and the Moon* (2 messages).")


async def test_delete_by_number_asks_for_confirmation_first(
    commands: CommandHandler, store: InMemoryTurnStore
):
    await chat_turn(commands, "Tides")
    session = await store.active_session(ANA)
    assert session is not None
    reply = await say(commands, "/delete 1")
    assert reply.text == "Delete *Tides* and its 2 messages? This cannot be undone."
    assert [choice.command for choice in reply.choices] == [f"/delete {session.id} confirm", None]


@pytest.mark.parametrize("command", ["/switch {}", "/delete {}", "/delete {} confirm"])
async def test_nobody_reaches_another_users_session_by_its_id(
    commands: CommandHandler, store: InMemoryTurnStore, command: str
):
    await chat_turn(commands, "Ana's secrets", user=ANA)
    anas = await store.active_session(ANA)
    assert anas is not None
    reply = await say(commands, command.format(anas.id), user=BOB)
    assert reply.is_error
    assert reply.text == text(ENGLISH, "session_not_found")
    assert store.conversation(anas.id)[0] == ("user", "Ana's secrets")


# --- turns through the commands ---------------------------------------------------------------


async def test_retry_through_the_commands_answers_the_last_message_again(
    commands: CommandHandler, model: ScriptedModel
):
    await chat_turn(commands, "tell me a joke")
    assert await chat_turn(commands, "/retry") == "echo: tell me a joke"
    assert [m.content for m in model.requests[-1].messages][-1] == "tell me a joke"
