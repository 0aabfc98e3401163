"""The Telegram front end to end: `python -m bots` as a child process, long polling the strict
fake Bot API, answering with the fake OpenRouter, sessions in a real Redis.

The fakes run in the test's event loop; the tests play the Telegram users (`Person`) and read
what those users would see. Nothing waits on the wall clock: `wait_for` polls with a bound, and
"nothing happened" is proved with a barrier: a later message in the same chat (the bot handles
a chat's messages in order; taps are not ordered) has been answered. Pacing is checked from the
fake's recorded call times.
A few tests bend a fake the way a real peer could behave and the fakes have no switch for: an
older Bot API without <blockquote>, a Telegram refusal the bot cannot foresee (a lower length
limit), a user deleting their message, a model sending its tokens one by one. Webhook mode is
in `test_telegram_webhook.py`.

Private chats stream as drafts (`test_telegram_drafts.py`). Here the fake refuses drafts, as
Telegram may for a bot, so a private chat streams as paced edits, the path groups and forum
topics take: these tests cover that path where a private chat is simplest to play.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from core.conversation import Notice
from core.errors import TurnTimeout
from core.messages import (
    COMMAND_DESCRIPTIONS,
    ENGLISH,
    PORTUGUESE,
    describe,
    help_text,
    notice_text,
    text,
    usage_text,
)
from core.personas import BUILT_IN
from core.sessions.usage import COST_DIGITS, UsageReport, UsageTotals
from tests.e2e.conftest import Service
from tests.fakes import telegram_server
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.fakes.telegram_html import HtmlParseError, ParsedText, parse_html, utf16_length
from tests.fakes.telegram_server import (
    DEFAULT_FORUM_ID,
    DEFAULT_GROUP_ID,
    DEFAULT_USER_ID,
    Call,
    FakeTelegram,
    StoredMessage,
)
from tests.redis_expiry import let_time_pass

BOT_USERNAME = "chatbridge_test_bot"
GROUP = DEFAULT_GROUP_ID
FORUM = DEFAULT_FORUM_ID
DEFAULT_MODEL = "test/default-model"
EDIT_INTERVAL = 0.2
PACING_TOLERANCE = 0.8  # consecutive edits at least this share of the interval apart
TELEGRAM_LIMIT = 4096  # UTF-16 code units of visible text
PREVIEW_SUFFIX = " …"
WAIT_SECONDS = 10.0
HELP_SHOWN = help_text(ENGLISH).replace("*", "")  # "*Commands*" is shown bold
SWITCH_DATA = re.compile(r"^[0-9a-z]+~/switch ([0-9a-f]{32})$")  # owner~command

StartBot = Callable[..., Awaitable[Service]]


# --- the people in the chats ------------------------------------------------------------------


@dataclass
class Person:
    """One Telegram user in one chat (their private chat with the bot, or the group), or in one
    topic of the forum (`topic`, a thread id from `fake.open_topic`): there they see only the
    topic's messages, as in Telegram's app."""

    fake: FakeTelegram
    user_id: int = DEFAULT_USER_ID
    username: str = "alice"
    language_code: str = "en"
    chat_type: str = "private"
    topic: int | None = None

    @property
    def chat_id(self) -> int:
        if self.topic is not None:
            return FORUM
        return self.user_id if self.chat_type == "private" else GROUP

    def bot_messages(self) -> list[StoredMessage]:
        shown = self.fake.messages(self.chat_id)
        return shown if self.topic is None else [m for m in shown if m.thread_id == self.topic]

    def says(self, said: str, **options: Any) -> dict[str, Any]:
        return self.fake.user_says(said, **self.where(), **options)

    def sends_photo(self, data: bytes, **options: Any) -> dict[str, Any]:
        """A photo (JPEG bytes), optionally with a `caption=`, here."""
        return self.fake.user_sends_photo(data, **self.where(), **options)

    def sends_document(self, data: bytes, file_name: str, **options: Any) -> dict[str, Any]:
        return self.fake.user_sends_document(data, file_name, **self.where(), **options)

    def sends_voice(self, data: bytes, **options: Any) -> dict[str, Any]:
        return self.fake.user_sends_voice(data, **self.where(), **options)

    def where(self) -> dict[str, Any]:
        """Who says it and where, as the fake's user builders take it."""
        where: dict[str, Any] = {
            "chat_type": self.chat_type,
            "user_id": self.user_id,
            "username": self.username,
            "language_code": self.language_code,
        }
        if self.chat_type != "private":
            where["chat_id"] = self.chat_id
        if self.topic is not None:
            where["thread_id"] = self.topic
        return where

    async def asks(self, said: str, **options: Any) -> StoredMessage:
        """Say something; the bot's next message in this chat (a streamed one may still grow)."""
        before = len(self.bot_messages())
        self.says(said, **options)
        return await self.next_message(before, what=f"an answer to {said!r}")

    async def asks_model(
        self, said: str, expected: str | None = None, **options: Any
    ) -> StoredMessage:
        """Say something to the model; the bot's message once it shows `expected` in full."""
        expected = f"echo: {said}" if expected is None else expected
        message = await self.asks(said, **options)
        await self.shows(message, expected)
        return message

    async def shows(self, message: StoredMessage, expected: str) -> None:
        """Wait until the bot's message reads `expected`; fail showing what it reads instead."""
        try:
            await self.fake.wait_for(lambda: message.visible_text == expected, WAIT_SECONDS)
        except TimeoutError:
            pytest.fail(f"the message reads {message.visible_text!r}, not {expected!r}")

    async def taps(self, message: StoredMessage, label: str) -> StoredMessage:
        """Tap a button of the bot's message; the bot's next message in this chat."""
        before = len(self.bot_messages())
        self.taps_only(message, label)
        return await self.next_message(before, what=f"an answer to tapping {label!r}")

    def taps_only(self, message: StoredMessage, label: str) -> dict[str, Any]:
        """Tap without waiting for anything; the update (its callback query's id inside)."""
        return self.fake.user_taps(
            button_data(message, label),
            message_id=message.message_id,
            user_id=self.user_id,
            chat_id=self.chat_id,
            username=self.username,
            language_code=self.language_code,
        )

    async def answers_before_help(self) -> list[StoredMessage]:
        """Send /help as a barrier; the bot's messages shown before the help arrived."""
        self.says("/help")
        await self.fake.wait_for(
            lambda: HELP_SHOWN in [m.visible_text for m in self.bot_messages()], what="the help"
        )
        shown = [m.visible_text for m in self.bot_messages()]
        return self.bot_messages()[: shown.index(HELP_SHOWN)]

    async def next_message(self, before: int, *, what: str) -> StoredMessage:
        new = await self.fake.wait_for(lambda: self.bot_messages()[before:], what=what)
        return new[0]


def button_data(message: StoredMessage, label: str) -> str:
    found = [b["callback_data"] for b in message.buttons() if b["text"] == label]
    assert found, f"no button {label!r} in {message.buttons()}"
    return str(found[0])


def session_ids(listing: StoredMessage) -> list[str]:
    """The session ids behind a /sessions keyboard, in order."""
    ids = []
    for button in listing.buttons():
        match = SWITCH_DATA.match(button["callback_data"])
        assert match, button
        ids.append(match[1])
    return ids


def calls_in_chat(fake: FakeTelegram, method: str, chat_id: int) -> list[Call]:
    return [c for c in fake.calls_to(method) if c.params.get("chat_id") == chat_id]


def gaps(calls: list[Call]) -> list[float]:
    return [later.at - earlier.at for earlier, later in itertools.pairwise(calls)]


def trickle(monkeypatch: pytest.MonkeyPatch, fake: FakeOpenRouter, seconds: float) -> None:
    """The fake model sends each delta `seconds` after the previous one, as real models do."""
    send_delta = fake._send_delta

    async def slowly(response: web.StreamResponse, model: str, piece: str) -> None:
        await asyncio.sleep(seconds)
        await send_delta(response, model, piece)

    monkeypatch.setattr(fake, "_send_delta", slowly)


def words(shown: str) -> list[str]:
    return shown.split()


# --- the service ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def private_chats_stream_as_edits(fake_telegram: FakeTelegram) -> None:
    """Drafts refused: a private chat's first streamed answer falls back to edits at its first
    preview, and the chat's later answers stream as edits from the start."""
    fake_telegram.refuse_drafts()


@pytest.fixture
def alice(fake_telegram: FakeTelegram) -> Person:
    return Person(fake_telegram)


@pytest.fixture
def start_bot(start_telegram_service: StartBot) -> StartBot:
    """Start the service on the fakes; keyword arguments are extra environment variables."""

    async def start(**variables: str) -> Service:
        defaults = {"DEFAULT_MODEL": DEFAULT_MODEL, "TELEGRAM_EDIT_INTERVAL": str(EDIT_INTERVAL)}
        return await start_telegram_service(**(defaults | variables))

    return start


# --- 1. startup -------------------------------------------------------------------------------


async def test_startup_registers_commands_in_english_and_portuguese_then_long_polls(
    start_bot: StartBot, fake_telegram: FakeTelegram
) -> None:
    service = await start_bot()
    await fake_telegram.wait_for(lambda: fake_telegram.calls_to("getUpdates"), what="a poll")

    methods = [call.method for call in fake_telegram.calls]
    assert methods[0] == "getMe"
    assert "deleteWebhook" in methods
    assert methods.index("deleteWebhook") < methods.index("getUpdates")
    assert [c.params.get("language_code") for c in fake_telegram.calls_to("setMyCommands")] == [
        None,
        "pt",
    ]
    for language, code in ((ENGLISH, ""), (PORTUGUESE, "pt")):
        registered = fake_telegram.commands(language_code=code)
        expected = [
            {"command": name, "description": about}
            for name, about in COMMAND_DESCRIPTIONS[language].items()
        ]
        assert registered == expected
    poll = fake_telegram.calls_to("getUpdates")[0]
    assert poll.params["timeout"] > 0  # a long poll, not a busy loop
    assert set(poll.params["allowed_updates"]) == {"message", "callback_query"}
    assert fake_telegram.webhook is None
    assert "telegram" in service.started["adapters"]


# --- 2. commands from a private chat ----------------------------------------------------------


async def test_start_and_help_list_the_commands_and_an_unknown_command_points_to_help(
    start_bot: StartBot, alice: Person
) -> None:
    await start_bot()

    welcome = await alice.asks("/start")
    helped = await alice.asks("/help")
    unknown = await alice.asks("/frobnicate")

    assert welcome.visible_text.startswith("Hi! Send me a message")
    assert "kept for 60 minutes" in welcome.visible_text
    assert welcome.visible_text.endswith(HELP_SHOWN)
    assert helped.visible_text == HELP_SHOWN
    assert {"type": "bold", "offset": 0, "length": len("Commands")} in helped.current.entities
    assert unknown.visible_text == "I don't know /frobnicate. Send /help to see what I can do."


async def test_sessions_shows_one_button_per_session_and_a_tap_switches_to_it(
    start_bot: StartBot, alice: Person, fake_telegram: FakeTelegram
) -> None:
    await start_bot()

    tides = await alice.asks("/new Tides")
    await alice.asks("/new Currents")
    listing = await alice.asks("/sessions")

    assert tides.visible_text == "Started Tides. Send a message to begin."
    assert listing.visible_text.splitlines() == [
        "Your conversations (▶ = current):",
        f"▶ 1. Currents · 0 messages · {DEFAULT_MODEL}",
        f"2. Tides · 0 messages · {DEFAULT_MODEL}",
    ]
    assert [b["text"] for b in listing.buttons()] == ["1. Currents", "2. Tides"]
    assert len(set(session_ids(listing))) == 2

    switched = await alice.taps(listing, "2. Tides")

    assert switched.visible_text == "Now in Tides (0 messages)."
    assert listing.reply_markup is None  # the keyboard is closed
    assert len(fake_telegram.callback_answers) == 1  # the tap was answered

    relisted = await alice.asks("/sessions")
    second = relisted.buttons()[1]["text"].split(". ", 1)[1]
    by_number = await alice.asks("/switch 2")
    assert by_number.visible_text == f"Now in {second} (0 messages)."


async def test_history_shows_the_conversation_and_a_count_of_zero_is_refused(
    start_bot: StartBot, alice: Person
) -> None:
    await start_bot()
    await alice.asks("/new Tides")
    await alice.asks_model("when is high tide?")

    history = await alice.asks("/history")
    zero = await alice.asks("/history 0")

    assert history.visible_text.splitlines() == [
        "Tides: last 2 of 2 messages",
        "",
        "You: when is high tide?",
        "",
        "Assistant: echo: when is high tide?",
    ]
    assert zero.visible_text == "Invalid n: a whole number from 1 to 50."


async def test_delete_asks_first_cancel_keeps_the_session_and_delete_removes_it(
    start_bot: StartBot, alice: Person, fake_telegram: FakeTelegram
) -> None:
    await start_bot()
    await alice.asks("/new Tides")
    await alice.asks("/new Currents")

    confirm = await alice.asks("/delete")
    assert confirm.visible_text == ("Delete Currents and its 0 messages? This cannot be undone.")
    assert [b["text"] for b in confirm.buttons()] == ["Delete", "Cancel"]

    alice.taps_only(confirm, "Cancel")
    await fake_telegram.wait_for(lambda: confirm.reply_markup is None, what="keyboard closed")
    kept = await alice.asks("/sessions")
    assert len(kept.buttons()) == 2

    confirm_again = await alice.asks("/delete")
    deleted = await alice.taps(confirm_again, "Delete")
    left = await alice.asks("/sessions")

    assert deleted.visible_text == "Deleted Currents."
    assert [b["text"] for b in left.buttons()] == ["1. Tides"]
    assert len(fake_telegram.callback_answers) == 2  # every tap answered


async def test_model_shows_refuses_a_bad_id_and_sets_the_model_the_next_message_uses(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()

    current = await alice.asks("/model")
    bad = await alice.asks("/model bad id")
    chosen = await alice.asks("/model some/model")
    await alice.asks_model("hello")

    assert current.visible_text == (
        f"Model: {DEFAULT_MODEL}. Change it with /model <id>, "
        "e.g. /model anthropic/claude-3.5-haiku."
    )
    assert {"type": "code", "offset": 7, "length": len(DEFAULT_MODEL)} in current.current.entities
    assert bad.visible_text == (
        "Invalid model: expected a model id like anthropic/claude-3.5-haiku."
    )
    assert chosen.visible_text == "Model set to some/model for this and new conversations."
    assert [r.body["model"] for r in fake_openrouter.requests] == ["some/model"]


async def test_usage_shows_the_tokens_the_model_reported_today_and_in_30_days(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    await alice.asks_model("when is high tide?")
    await alice.asks_model("and low tide?")
    reported = fake_openrouter.reported_usages
    prompt = sum(usage["prompt_tokens"] for usage in reported)
    completion = sum(usage["completion_tokens"] for usage in reported)
    cost = round(sum(usage["cost"] for usage in reported), COST_DIGITS)
    assert min(prompt, completion, cost) > 0

    shown = (await alice.asks("/usage")).visible_text

    totals = UsageTotals(prompt, completion, cost)
    expected = usage_text(ENGLISH, UsageReport(totals, totals, None, None))
    assert shown == expected.replace("*", "")  # bold on Telegram
    assert f"Today: {prompt + completion} tokens ({prompt} prompt + {completion} answer)" in shown


async def test_a_persona_set_on_telegram_is_the_next_requests_system_message_and_is_listed(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    tutor = next(p for p in BUILT_IN if p.name == "tutor")
    await alice.asks_model("hello")

    menu = await alice.asks("/persona")
    offered = [b["text"] for b in menu.buttons()]  # the keyboard closes once tapped
    chosen = await alice.taps(menu, f"tutor — {tutor.description}")
    await alice.asks_model("explain tides")
    own = await alice.asks("/persona Answer only in haiku.")
    await alice.asks_model("and the moon?")
    listing = await alice.asks("/sessions")

    assert menu.visible_text.startswith("hello answers as the default:\n\n")
    assert offered == [f"{p.name} — {p.description}" for p in BUILT_IN]
    assert chosen.visible_text == "hello now answers as tutor."
    assert own.visible_text == "hello now answers as custom."
    systems = [r.body["messages"][0] for r in fake_openrouter.requests]
    assert systems[1:] == [
        {"role": "system", "content": tutor.prompt},
        {"role": "system", "content": "Answer only in haiku."},
    ]
    assert systems[0]["content"] != tutor.prompt  # the first answer had the global prompt
    assert listing.visible_text.splitlines()[1] == (
        f"▶ 1. hello · 6 messages · {DEFAULT_MODEL} · 🎭 custom"
    )

    reset = await alice.asks("/persona reset")
    relisted = await alice.asks("/sessions")
    assert reset.visible_text == "hello is back to the default persona."
    assert relisted.visible_text.splitlines()[1] == f"▶ 1. hello · 6 messages · {DEFAULT_MODEL}"


async def test_the_presets_of_personas_file_are_the_ones_offered_and_set(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    personas = tmp_path / "personas.toml"
    personas.write_text('[pirate]\ndescription = "Arr"\nprompt = "You are a pirate."\n')
    await start_bot(PERSONAS_FILE=str(personas))

    menu = await alice.asks("/persona")
    offered = [b["text"] for b in menu.buttons()]
    chosen = await alice.taps(menu, "pirate — Arr")
    await alice.asks_model("ahoy")

    assert offered == ["pirate — Arr"]
    assert chosen.visible_text == "New conversation now answers as pirate."  # none yet: made
    sent = fake_openrouter.requests[-1].body["messages"][0]
    assert sent == {"role": "system", "content": "You are a pirate."}


async def test_retry_answers_the_last_message_again(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    fake_openrouter.reply_text = "First answer."
    await alice.asks_model("name a tide", "First answer.")

    fake_openrouter.reply_text = "Second answer."
    again = await alice.asks("/retry")
    await alice.fake.wait_for(lambda: again.visible_text == "Second answer.")

    assert len(fake_openrouter.requests) == 2
    first, second = (r.body["messages"] for r in fake_openrouter.requests)
    assert first == second  # the same question, without the replaced answer
    assert second[-1] == {"role": "user", "content": "name a tide"}
    history = await alice.asks("/history")
    assert history.visible_text.endswith("You: name a tide\n\nAssistant: Second answer.")


async def test_a_chats_updates_are_answered_in_the_order_they_were_sent(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    fake_openrouter.slow_first_token(0.5, times=2)

    alice.says("first")
    await alice.fake.wait_for(lambda: len(fake_openrouter.requests) == 1, what="turn 1")
    alice.says("second")  # waits for the first turn
    await alice.fake.wait_for(lambda: len(fake_openrouter.requests) == 2, what="turn 2")
    alice.says("/help")  # arrives while the second turn waits for its first token
    await alice.fake.wait_for(
        lambda: (
            len(alice.bot_messages()) == 3
            and "echo: second" in [m.visible_text for m in alice.bot_messages()]
        ),
        what="three answers",
    )

    shown = [m.visible_text.splitlines()[0] for m in alice.bot_messages()]
    assert shown == ["echo: first", "echo: second", "Commands"]


# --- 3. streaming -----------------------------------------------------------------------------


async def test_an_answer_streams_typing_first_then_one_message_edited_to_the_whole_reply(
    start_bot: StartBot,
    alice: Person,
    fake_telegram: FakeTelegram,
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await start_bot()
    lines = [f"Line {n}: the **tide** rises." for n in range(1, 13)]
    fake_openrouter.reply_text = "\n".join(lines)
    fake_openrouter.deltas_per_reply = 60
    fake_openrouter.slow_first_token(0.5)
    # 1.2 s of streaming: the first preview (after FIRST_PREVIEW_AFTER_SECONDS), then edits.
    trickle(monkeypatch, fake_openrouter, 0.02)
    shown = "\n".join(line.replace("**", "") for line in lines)

    answer = await alice.asks_model("tell me about tides", shown)

    in_chat = [c for c in fake_telegram.calls if c.params.get("chat_id") == alice.chat_id]
    methods = [c.method for c in in_chat]
    assert methods[0] == "sendChatAction"
    assert in_chat[0].params["action"] == "typing"
    assert methods.count("sendMessage") == 1
    assert set(methods[methods.index("sendMessage") + 1 :]) == {"editMessageText"}
    assert answer.edit_count >= 2
    assert answer.parse_mode == "HTML"
    bold = [e for e in answer.current.entities if e["type"] == "bold"]
    assert len(bold) == len(lines)
    assert len(alice.bot_messages()) == 1


async def test_previews_of_a_streaming_answer_are_paced_by_the_edit_interval(
    start_bot: StartBot,
    alice: Person,
    fake_telegram: FakeTelegram,
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await start_bot()
    fake_openrouter.reply_text = " ".join(f"word{n}" for n in range(60))
    fake_openrouter.deltas_per_reply = 60
    trickle(monkeypatch, fake_openrouter, 0.02)

    await alice.asks_model("talk", fake_openrouter.reply_text)

    shown = calls_in_chat(fake_telegram, "sendMessage", alice.chat_id)
    shown += calls_in_chat(fake_telegram, "editMessageText", alice.chat_id)
    previews = sorted(
        (c for c in shown if str(c.params["text"]).endswith(PREVIEW_SUFFIX)), key=lambda c: c.at
    )
    assert len(previews) >= 3
    assert min(gaps(previews)) >= PACING_TOLERANCE * EDIT_INTERVAL, gaps(previews)


async def test_an_answer_complete_before_the_first_preview_is_due_is_sent_whole_without_edits(
    start_bot: StartBot, alice: Person, fake_telegram: FakeTelegram
) -> None:
    await start_bot()

    answer = await alice.asks_model("quick one")

    assert answer.edit_count == 0
    assert answer.versions[0].visible_text == "echo: quick one"
    assert calls_in_chat(fake_telegram, "editMessageText", alice.chat_id) == []


async def test_a_slow_bot_api_gets_fewer_previews_not_one_edit_per_word(
    start_bot: StartBot,
    alice: Person,
    fake_telegram: FakeTelegram,
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await start_bot()
    slow = 1.5 * EDIT_INTERVAL  # each edit takes longer than the interval between edits
    fake_telegram.slow_down("editMessageText", slow)
    fake_openrouter.reply_text = " ".join(f"word{n}" for n in range(60))
    fake_openrouter.deltas_per_reply = 60
    trickle(monkeypatch, fake_openrouter, 0.02)

    await alice.asks_model("talk", fake_openrouter.reply_text)

    edits = sorted(
        calls_in_chat(fake_telegram, "editMessageText", alice.chat_id), key=lambda c: c.at
    )
    assert len(edits) >= 2
    # The interval runs from when an edit was answered, not from when it was sent.
    idle = [later.at - (earlier.at + slow) for earlier, later in itertools.pairwise(edits)]
    assert min(idle) >= PACING_TOLERANCE * EDIT_INTERVAL, idle


async def test_the_final_edit_also_waits_for_the_edit_interval(
    start_bot: StartBot,
    alice: Person,
    fake_telegram: FakeTelegram,
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await start_bot()
    fake_openrouter.reply_text = " ".join(f"word{n}" for n in range(10))
    fake_openrouter.deltas_per_reply = 10
    # The last delta comes after a pause: it is shown as a preview, and the end follows at once.
    # (Slow enough that the first preview, FIRST_PREVIEW_AFTER_SECONDS in, comes before it.)
    fake_openrouter.stall(after_deltas=9, seconds=2 * EDIT_INTERVAL)
    trickle(monkeypatch, fake_openrouter, 0.08)

    await alice.asks_model("talk", fake_openrouter.reply_text)

    edits = calls_in_chat(fake_telegram, "editMessageText", alice.chat_id)
    assert len(edits) >= 2
    assert min(gaps(edits)) >= PACING_TOLERANCE * EDIT_INTERVAL, gaps(edits)


async def test_an_answer_over_4096_characters_continues_in_further_messages_in_order(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    paragraphs = [
        f"Paragraph {n}. " + " ".join(f"tide{n}x{k}" for k in range(40)) for n in range(30)
    ]
    reply = "\n\n".join(paragraphs)  # about 11,000 characters
    fake_openrouter.reply_text = reply
    fake_openrouter.deltas_per_reply = 40

    await alice.asks("a long one please")
    await alice.fake.wait_for(
        lambda: words(" ".join(m.visible_text for m in alice.bot_messages())) == words(reply),
        what="the whole reply, in order",
    )

    parts = alice.bot_messages()
    assert len(parts) >= 3
    assert all(utf16_length(m.visible_text) <= TELEGRAM_LIMIT for m in parts)
    assert not any(m.visible_text.endswith(PREVIEW_SUFFIX.strip()) for m in parts)
    # Cut at paragraph boundaries: every part begins a paragraph.
    assert all(m.visible_text.startswith("Paragraph ") for m in parts)


async def test_a_long_code_block_is_split_into_messages_that_each_close_their_block(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    code = [f"value_{n} = compute({n}, 'tide')  # step {n}" for n in range(300)]
    fake_openrouter.reply_text = (
        "Here is the code:\n\n```python\n" + "\n".join(code) + "\n```\n\nDone."
    )
    fake_openrouter.deltas_per_reply = 30

    await alice.asks("code please")
    await alice.fake.wait_for(
        lambda: alice.bot_messages() and alice.bot_messages()[-1].visible_text.endswith("Done."),
        what="the last part",
    )

    parts = alice.bot_messages()
    assert all(utf16_length(part.visible_text) <= TELEGRAM_LIMIT for part in parts)
    with_code = [part for part in parts if "<pre>" in part.text]
    assert len(with_code) >= 3  # the block itself is longer than one message
    shown_code: list[str] = []
    for part in with_code:
        assert part.text.count("<pre>") == part.text.count("</pre>") == 1
        pre = [e for e in part.current.entities if e["type"] == "pre"]
        assert len(pre) == 1
        assert pre[0].get("language") == "python"
        start, length = pre[0]["offset"], pre[0]["length"]
        shown_code += part.visible_text[start : start + length].strip("\n").split("\n")
    assert shown_code == code
    assert "```" not in "".join(p.visible_text for p in parts)


async def test_an_answer_of_emoji_is_split_by_telegrams_utf16_length(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    fake_openrouter.reply_text = "Party time! " + "🎉" * 2500  # 2,512 code points, 5,012 units

    await alice.asks("celebrate")
    answer = await alice.answers_before_help()

    assert [
        utf16_length(m.visible_text) for m in answer if utf16_length(m.visible_text) > 4096
    ] == []
    shown = sum(m.visible_text.count("🎉") for m in answer)
    assert shown == 2500, [m.visible_text[-60:] for m in answer]


# --- 4. markup --------------------------------------------------------------------------------


async def test_markdown_and_special_characters_arrive_as_valid_html(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    fake_openrouter.reply_text = "**Bold** move: use `x < y` & <script>alert(1)</script> now."
    shown = "Bold move: use x < y & <script>alert(1)</script> now."

    answer = await alice.asks_model("format something", shown)

    assert answer.parse_mode == "HTML"  # the fake parsed it: every tag valid, every & escaped
    assert {"type": "bold", "offset": 0, "length": 4} in answer.current.entities
    code_at = shown.index("x < y")
    assert {"type": "code", "offset": code_at, "length": 5} in answer.current.entities
    assert "<script>" not in answer.text


async def test_a_tg_user_link_in_the_models_answer_is_shown_as_its_words_and_mentions_nobody(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    fake_openrouter.reply_text = "Ask [Bob](tg://user?id=2002) or [the docs](https://example.com)."

    answer = await alice.asks_model("who knows?", "Ask Bob or the docs.")

    assert "tg://" not in answer.text
    links = [e for e in answer.current.entities if e["type"] in ("text_link", "text_mention")]
    assert links == [{"type": "text_link", "offset": 11, "length": 8, "url": "https://example.com"}]


async def test_markup_telegram_rejects_is_sent_as_plain_text(
    start_bot: StartBot,
    alice: Person,
    fake_telegram: FakeTelegram,
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A Bot API older than 7.0 has no <blockquote>: the renderer emits it, this Telegram refuses.
    def without_blockquote(html: str, *, requires_escaping: bool = True) -> ParsedText:
        if "<blockquote" in html:
            at = len(html[: html.index("<blockquote")].encode())
            raise HtmlParseError(f'Unsupported start tag "blockquote" at byte offset {at}')
        return parse_html(html, requires_escaping=requires_escaping)

    monkeypatch.setattr(telegram_server, "parse_html", without_blockquote)
    await start_bot()
    fake_openrouter.reply_text = "> To be or not to be\n\nThat is **the** question & more."
    shown = "To be or not to be\n\nThat is the question & more."

    answer = await alice.asks_model("quote something", shown)

    assert answer.parse_mode is None
    assert answer.current.entities == []
    refused = [c for c in fake_telegram.calls if c.status == 400]
    assert refused
    assert all(c.params.get("parse_mode") == "HTML" for c in refused)


# --- 5. 429 from Telegram ---------------------------------------------------------------------


async def test_rate_limited_previews_are_skipped_and_the_final_text_still_arrives(
    start_bot: StartBot,
    alice: Person,
    fake_telegram: FakeTelegram,
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await start_bot()
    fake_openrouter.reply_text = " ".join(f"word{n}" for n in range(30))
    fake_openrouter.deltas_per_reply = 30
    trickle(monkeypatch, fake_openrouter, 0.03)
    fake_telegram.rate_limit("editMessageText", retry_after=1, times=2)

    answer = await alice.asks_model("talk", fake_openrouter.reply_text)

    edits = calls_in_chat(fake_telegram, "editMessageText", alice.chat_id)
    assert [c.status for c in edits].count(429) == 2
    assert edits[-1].is_ok
    assert len(alice.bot_messages()) == 1
    assert answer.visible_text == fake_openrouter.reply_text


async def test_a_rate_limited_command_reply_is_delivered_after_the_wait(
    start_bot: StartBot, alice: Person, fake_telegram: FakeTelegram
) -> None:
    await start_bot()
    fake_telegram.rate_limit("sendMessage", retry_after=1)

    helped = await alice.asks("/help")

    sends = fake_telegram.calls_to("sendMessage")
    assert [c.status for c in sends] == [429, 200]
    assert sends[1].at - sends[0].at >= PACING_TOLERANCE * 1
    assert helped.visible_text.startswith("Commands")


async def test_a_handled_429_is_not_logged_as_an_error(
    start_bot: StartBot, alice: Person, fake_telegram: FakeTelegram
) -> None:
    service = await start_bot()
    fake_telegram.rate_limit("sendMessage", retry_after=1)

    await alice.asks("/help")

    assert service.events("telegram.flood_wait")  # handled: waited and sent again
    errors = [line for line in service.stderr_lines if '"level": "error"' in line]
    assert errors == []


async def test_no_edit_is_attempted_before_a_429s_retry_after_has_passed(
    start_bot: StartBot,
    alice: Person,
    fake_telegram: FakeTelegram,
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await start_bot()
    fake_openrouter.reply_text = " ".join(f"word{n}" for n in range(20))
    fake_openrouter.deltas_per_reply = 20
    # About 0.6 s of deltas: a preview is refused early on, the end comes within the 1 s asked.
    trickle(monkeypatch, fake_openrouter, 0.03)
    fake_telegram.rate_limit("editMessageText", retry_after=1)

    await alice.asks_model("talk", fake_openrouter.reply_text)

    edits = calls_in_chat(fake_telegram, "editMessageText", alice.chat_id)
    refused = next(index for index, call in enumerate(edits) if call.status == 429)
    assert edits[refused + 1].at - edits[refused].at >= PACING_TOLERANCE * 1


# --- 6. faults shown to the user --------------------------------------------------------------


async def test_a_message_over_the_length_limit_is_refused_with_the_limit(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot(MAX_MESSAGE_LENGTH="20")

    refused = await alice.asks("x" * 50)

    assert refused.visible_text == text(ENGLISH, "message_too_long", length=50, limit=20)
    assert fake_openrouter.requests == []


async def test_a_new_session_past_the_limit_is_refused_with_a_button_per_session_to_delete(
    start_bot: StartBot, alice: Person
) -> None:
    await start_bot(MAX_SESSIONS_PER_USER="1")

    await alice.asks("/new One")
    refused = await alice.asks("/new Two")

    assert refused.visible_text == "\n".join(
        [text(ENGLISH, "session_limit_reached", limit=1), text(ENGLISH, "session_limit_pick")]
    )
    assert "/delete" in refused.visible_text
    (button,) = refused.buttons()
    assert button["text"] == "🗑 1. One"
    assert re.fullmatch(r"[0-9a-z]+~/delete [0-9a-f]{32}", button["callback_data"])  # owner~command
    assert len(button["callback_data"].encode()) <= 64
    question = await alice.taps(refused, "🗑 1. One")
    assert question.visible_text == text(ENGLISH, "delete_confirm", title="One", count=0).replace(
        "*", ""
    )
    deleted = await alice.taps(question, text(ENGLISH, "delete_yes"))
    assert deleted.visible_text == text(ENGLISH, "deleted", title="One").replace("*", "")
    created = await alice.asks("/new Two")
    assert created.visible_text == text(ENGLISH, "session_created", title="Two").replace("*", "")


async def test_a_model_outage_says_unavailable_and_retry_answers_later(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    fake_openrouter.server_error(502, times=3)

    failed = await alice.asks("hello")
    await alice.fake.wait_for(
        lambda: failed.visible_text == text(ENGLISH, "model_unavailable"), what="unavailable"
    )
    answered = await alice.asks_model("/retry", "echo: hello")

    assert len(fake_openrouter.requests) == 4
    assert answered.visible_text == "echo: hello"


async def test_an_empty_answer_is_told_and_retry_answers_the_kept_question(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    fake_openrouter.empty_answer()  # `data: [DONE]` with no delta

    failed = await alice.asks("hello")
    await alice.shows(failed, text(ENGLISH, "model_empty_answer"))
    answered = await alice.asks_model("/retry", "echo: hello")

    assert answered.visible_text == "echo: hello"
    assert len(fake_openrouter.requests) == 2  # the empty one was not retried by itself
    context = fake_openrouter.requests[-1].body["messages"]
    assert [m["role"] for m in context if m["role"] != "system"] == ["user"]  # no empty answer


async def test_a_cut_stream_shows_the_partial_text_and_the_retry_notice(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    fake_openrouter.reply_text = "aaaa bbbb cccc dddd"
    fake_openrouter.deltas_per_reply = 4
    fake_openrouter.cut_stream(after_deltas=2)

    partial = "aaaa bbbb "  # the first two of four deltas
    answer = await alice.asks_model("talk", partial + "\n\n" + text(ENGLISH, "reply_incomplete"))

    assert "/retry" in answer.visible_text
    assert len(alice.bot_messages()) == 1


async def test_an_answer_whose_session_was_taken_over_stays_shown_and_says_it_was_not_saved(
    start_bot: StartBot,
    alice: Person,
    fake_openrouter: FakeOpenRouter,
    redis_client: aioredis.Redis,
) -> None:
    await start_bot()
    fake_openrouter.reply_text = "aaaa bbbb cccc dddd"
    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=2)
    before = len(alice.bot_messages())
    alice.says("talk")
    await alice.fake.wait_for(lambda: fake_openrouter.requests, what="the model asked")
    [lock] = [key async for key in redis_client.scan_iter(match="session:*:lock")]
    await redis_client.set(lock, "a-turn-of-another-replica", px=30_000)  # the lock lapsed
    gate.set()

    answer = await alice.next_message(before, what="the answer")
    notice = text(ENGLISH, "turn_lock_lost")
    await alice.shows(answer, "aaaa bbbb cccc dddd\n\n⚠️ " + notice)
    assert "/retry" in notice
    [messages] = [key async for key in redis_client.scan_iter(match="session:*:messages")]
    assert await redis_client.llen(messages) == 1  # the question only


async def test_an_answer_past_turn_timeout_stays_shown_and_says_it_was_stopped(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot(TURN_TIMEOUT="1")
    fake_openrouter.reply_text = "aaaa bbbb cccc dddd"
    fake_openrouter.keep_alive_forever(after_deltas=2)
    notice = describe(TurnTimeout(seconds=1), ENGLISH)

    await alice.asks_model("talk", "aaaa bbbb \n\n⚠️ " + notice)

    assert "/retry" in notice
    assert len(alice.bot_messages()) == 1


async def test_an_unexpected_telegram_refusal_is_answered_with_the_went_wrong_sentence(
    start_bot: StartBot,
    alice: Person,
    fake_telegram: FakeTelegram,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A refusal the bot cannot foresee: this Telegram takes at most 60 characters.
    monkeypatch.setattr(telegram_server, "MAX_TEXT_LENGTH", 60)
    service = await start_bot()

    answered = await alice.asks("/help")

    assert answered.visible_text == text(ENGLISH, "unexpected")
    assert [c.status for c in fake_telegram.calls_to("sendMessage")] == [400, 200]
    await service.wait_for_event("telegram.handler_failed", within=5)


async def test_the_answer_arrives_even_when_the_user_deleted_their_message(
    start_bot: StartBot, alice: Person
) -> None:
    await start_bot()

    before = len(alice.bot_messages())
    alice.says("/help")
    # The user deletes their message before the bot answers (the fake has no call for users).
    alice.fake.messages(alice.chat_id, include_user=True)[-1].is_deleted = True
    answered = await alice.next_message(before, what="an answer")

    assert answered.visible_text == HELP_SHOWN


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param("", id="empty"),
        pytest.param("```\n```", id="empty-code-block"),
    ],
)
async def test_an_answer_with_nothing_to_show_still_gets_a_proper_reply(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter, reply: str
) -> None:
    await start_bot()
    fake_openrouter.reply_text = reply

    alice.says("say nothing")
    shown = [m.visible_text for m in await alice.answers_before_help()]

    assert shown  # something is said,
    assert text(ENGLISH, "unexpected") not in shown  # and no failure
    assert not any(t.endswith(PREVIEW_SUFFIX) for t in shown)  # nor a preview left behind


# --- 7. language ------------------------------------------------------------------------------


async def test_a_portuguese_speaking_user_gets_portuguese_replies(
    start_bot: StartBot, fake_telegram: FakeTelegram
) -> None:
    await start_bot()
    joao = Person(fake_telegram, user_id=3003, username="joao", language_code="pt-br")

    welcome = await joao.asks("/start")
    created = await joao.asks("/new Marés")
    unknown = await joao.asks("/frobnicate")

    assert welcome.visible_text.startswith("Olá! Mande uma mensagem")
    assert "Comandos" in welcome.visible_text
    assert created.visible_text == "Conversa Marés criada. Mande uma mensagem para começar."
    assert unknown.visible_text == text(PORTUGUESE, "unknown_command", command="/frobnicate")


# --- 8. groups --------------------------------------------------------------------------------


async def test_in_a_group_the_bot_answers_commands_mentions_and_replies_only(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    alice = Person(fake_telegram, chat_type="group")

    alice.says("just chatting among humans")
    alice.says("/new@otherbot Reef")
    listing = await alice.asks("/sessions")  # handled after both: the chat is served in order

    assert len(alice.bot_messages()) == 1
    assert listing.visible_text == text(ENGLISH, "sessions_empty")
    assert fake_openrouter.requests == []

    mentioned = await alice.asks_model(f"@{BOT_USERNAME} what are tides?", "echo: what are tides?")
    await alice.asks_model("and currents?", reply_to_message_id=mentioned.message_id)
    addressed = await alice.asks(f"/new@{BOT_USERNAME} Reef")

    assert [r.body["messages"][-1]["content"] for r in fake_openrouter.requests] == [
        "what are tides?",
        "and currents?",
    ]
    assert addressed.visible_text == "Started Reef. Send a message to begin."


async def test_a_mention_in_other_letter_case_is_removed_too(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    alice = Person(fake_telegram, chat_type="group")

    alice.says("@ChatBridge_Test_Bot hello")
    await fake_telegram.wait_for(lambda: fake_openrouter.requests, what="a model request")

    assert fake_openrouter.requests[-1].body["messages"][-1]["content"] == "hello"


async def test_two_people_in_one_group_have_separate_sessions_and_a_strangers_tap_changes_nothing(
    start_bot: StartBot, fake_telegram: FakeTelegram
) -> None:
    await start_bot()
    alice = Person(fake_telegram, chat_type="group")
    bob = Person(fake_telegram, user_id=2002, username="bob", chat_type="group")

    await alice.asks("/new Alpha")
    await bob.asks("/new Beta")
    alices = await alice.asks("/sessions")
    bobs = await bob.asks("/sessions")

    assert [b["text"] for b in alices.buttons()] == ["1. Alpha"]
    assert [b["text"] for b in bobs.buttons()] == ["1. Beta"]
    alpha = session_ids(alices)
    confirm = await alice.asks("/delete")
    shown = len(alice.bot_messages())

    for message, label in ((alices, "1. Alpha"), (confirm, "Delete"), (confirm, "Cancel")):
        query = bob.taps_only(message, label)["callback_query"]["id"]
        answer = await fake_telegram.wait_for(
            lambda query=query: fake_telegram.callback_answers.get(query), what="the toast"
        )
        assert answer["text"] == text(ENGLISH, "not_your_buttons")

    # The toast is the last thing the bot does for a stranger's tap: nothing else changed.
    assert [b["text"] for b in alices.buttons()] == ["1. Alpha"]
    assert [b["text"] for b in confirm.buttons()] == ["Delete", "Cancel"]
    assert len(alice.bot_messages()) == shown
    still = await alice.asks("/sessions")
    assert session_ids(still) == alpha
    assert still.visible_text.splitlines()[1].startswith("▶ 1. Alpha")
    bob_still = await bob.asks("/sessions")
    assert [b["text"] for b in bob_still.buttons()] == ["1. Beta"]
    # The owner's own tap works as ever.
    alice.taps_only(confirm, "Cancel")
    await fake_telegram.wait_for(lambda: confirm.reply_markup is None, what="keyboard closed")


async def test_a_strangers_tap_is_told_in_the_strangers_language(
    start_bot: StartBot, fake_telegram: FakeTelegram
) -> None:
    await start_bot()
    alice = Person(fake_telegram, chat_type="group")
    joao = Person(fake_telegram, user_id=3003, username="joao", language_code="pt-br",
                  chat_type="group")  # fmt: skip
    await alice.asks("/new Alpha")
    alices = await alice.asks("/sessions")

    query = joao.taps_only(alices, "1. Alpha")["callback_query"]["id"]

    answer = await fake_telegram.wait_for(lambda: fake_telegram.callback_answers.get(query))
    assert answer["text"] == text(PORTUGUESE, "not_your_buttons")
    assert [b["text"] for b in alices.buttons()] == ["1. Alpha"]


# --- 9. allowed users -------------------------------------------------------------------------


async def test_only_allowed_users_are_served_by_id_or_username(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot(TELEGRAM_ALLOWED_USERS="42,@bob")
    by_id = Person(fake_telegram, user_id=42, username="carol")
    by_name = Person(fake_telegram, user_id=5005, username="bob")
    stranger = Person(fake_telegram, user_id=7, username="mallory")

    await by_id.asks_model("hi from 42")
    await by_name.asks_model("hi from bob")
    refused = await stranger.asks("hi from 7")
    refused_command = await stranger.asks("/new Secret")

    assert refused.visible_text == text(ENGLISH, "not_allowed")
    assert refused_command.visible_text == text(ENGLISH, "not_allowed")
    assert [r.body["messages"][-1]["content"] for r in fake_openrouter.requests] == [
        "hi from 42",
        "hi from bob",
    ]


# --- 10. not text (photos, documents and voice: test_telegram_files.py) ---------------------


async def test_a_sticker_gets_the_sentence_saying_what_can_be_read(
    start_bot: StartBot, alice: Person, fake_telegram: FakeTelegram
) -> None:
    await start_bot()

    before = len(alice.bot_messages())
    fake_telegram.user_sends_sticker()
    answered = await alice.next_message(before, what="an answer to a sticker")

    assert answered.visible_text == text(ENGLISH, "not_text")


# --- 11. isolation ----------------------------------------------------------------------------


async def test_two_users_never_see_each_others_sessions(
    start_bot: StartBot, alice: Person, fake_telegram: FakeTelegram
) -> None:
    await start_bot()
    bob = Person(fake_telegram, user_id=2002, username="bob")

    await alice.asks("/new Alpha")
    await bob.asks("/new Beta")
    await bob.asks("/new Gamma")
    alices = await alice.asks("/sessions")
    bobs = await bob.asks("/sessions")

    assert [b["text"] for b in alices.buttons()] == ["1. Alpha"]
    assert [b["text"] for b in bobs.buttons()] == ["1. Gamma", "2. Beta"]
    assert not set(session_ids(alices)) & set(session_ids(bobs))
    assert "Beta" not in alices.visible_text
    assert "Alpha" not in bobs.visible_text
    for forged in (f"/switch {session_ids(alices)[0]}", f"/delete {session_ids(alices)[0]}"):
        assert (await bob.asks(forged)).visible_text == text(ENGLISH, "session_not_found")


# --- 12. forum topics -------------------------------------------------------------------------


def in_topic(fake: FakeTelegram, topic: int) -> Person:
    return Person(fake, chat_type="supergroup", topic=topic)


async def test_in_a_forum_topic_every_part_the_typing_hint_and_an_error_notice_stay_in_it(
    start_bot: StartBot,
    fake_telegram: FakeTelegram,
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await start_bot()
    fake_telegram.open_topic("General chat about nothing")
    tides = fake_telegram.open_topic("Tides")
    alice = in_topic(fake_telegram, tides)
    paragraphs = [f"Paragraph {n}. " + " ".join(f"t{n}x{k}" for k in range(60)) for n in range(30)]
    reply = "\n\n".join(paragraphs)  # about 13,000 characters: four parts
    fake_openrouter.reply_text = reply
    fake_openrouter.deltas_per_reply = 40
    fake_openrouter.slow_first_token(1.0)  # long enough for the "typing" hint

    alice.says(f"@{BOT_USERNAME} a long one please")
    await fake_telegram.wait_for(
        lambda: words(" ".join(m.visible_text for m in alice.bot_messages())) == words(reply),
        what="the whole reply, in order, in the topic",
    )

    assert len(alice.bot_messages()) >= 3
    assert [m.thread_id for m in fake_telegram.messages(FORUM)] == [tides] * len(
        alice.bot_messages()
    )
    typing = [a for a in fake_telegram.chat_actions if a.chat_id == FORUM]
    assert typing
    assert {a.thread_id for a in typing} == {tides}

    # A refusal the bot cannot foresee: its notice goes to the topic too.
    monkeypatch.setattr(telegram_server, "MAX_TEXT_LENGTH", 60)
    notice = await alice.asks("/help")
    assert notice.visible_text == text(ENGLISH, "unexpected")
    assert [m.thread_id for m in fake_telegram.messages(FORUM)] == [tides] * len(
        alice.bot_messages()
    )


async def test_in_a_forum_topic_button_results_and_documents_stay_in_it(
    start_bot: StartBot, fake_telegram: FakeTelegram
) -> None:
    await start_bot()
    tides = fake_telegram.open_topic("Tides")
    alice = in_topic(fake_telegram, tides)

    await alice.asks("/new Neap")
    await alice.asks("/new Spring")
    listing = await alice.asks("/sessions")
    switched = await alice.taps(listing, "2. Neap")
    await alice.asks_model(f"@{BOT_USERNAME} hello", "echo: hello")
    exported = await alice.asks("/export")

    assert switched.visible_text == "Now in Neap (0 messages)."
    assert "document" in exported.extra
    assert exported.visible_text.startswith("Neap as Markdown")
    assert {m.thread_id for m in fake_telegram.messages(FORUM)} == {tides}


async def test_in_a_forum_topic_the_answer_to_a_deleted_question_still_arrives_there(
    start_bot: StartBot, fake_telegram: FakeTelegram
) -> None:
    await start_bot()
    tides = fake_telegram.open_topic("Tides")
    alice = in_topic(fake_telegram, tides)

    before = len(alice.bot_messages())
    alice.says("/help")
    # The user deletes their message before the bot answers (the fake has no call for users).
    fake_telegram.messages(FORUM, include_user=True)[-1].is_deleted = True
    answered = await alice.next_message(before, what="an answer in the topic")

    assert answered.visible_text == HELP_SHOWN
    assert "reply_to_message" not in answered.extra
    assert [m.thread_id for m in fake_telegram.messages(FORUM)] == [tides]


# --- 13. no waiting behind others -------------------------------------------------------------


async def test_a_tap_during_a_held_stream_is_answered_at_once_and_acts_while_it_is_held(
    start_bot: StartBot, alice: Person, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    fake_telegram.callback_query_timeout = 1.0  # answered within a second, or refused as too old
    await alice.asks("/new Tides")
    await alice.asks("/new Currents")
    listing = await alice.asks("/sessions")
    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=1)
    held = await alice.asks("talk")  # the first preview: the answer is under way, then held
    try:
        before = len(alice.bot_messages())
        query = alice.taps_only(listing, "2. Tides")["callback_query"]["id"]
        switched = await alice.next_message(before, what="the switch, while the stream is held")

        assert query in fake_telegram.callback_answers
        assert switched.visible_text == "Now in Tides (0 messages)."
        assert not gate.is_set()
        assert held.visible_text.endswith(PREVIEW_SUFFIX.strip())  # still streaming
    finally:
        gate.set()
    await alice.shows(held, "echo: talk")


@pytest.mark.parametrize("apart", ["two-topics-of-one-forum", "two-chats"])
async def test_one_space_is_answered_while_another_spaces_turn_is_held(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter, apart: str
) -> None:
    await start_bot()
    if apart == "two-chats":
        alice = Person(fake_telegram)
        bob = Person(fake_telegram, user_id=2002, username="bob")
    else:
        alice = in_topic(fake_telegram, fake_telegram.open_topic("Tides"))
        bob = Person(fake_telegram, user_id=2002, username="bob", chat_type="supergroup",
                     topic=fake_telegram.open_topic("Reefs"))  # fmt: skip
    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=1)
    held = await alice.asks(f"@{BOT_USERNAME} talk")  # the first preview, then held
    try:
        helped = await bob.asks("/help")
        answered = await bob.asks_model(f"@{BOT_USERNAME} hello", "echo: hello")

        assert helped.visible_text == HELP_SHOWN
        assert answered.visible_text == "echo: hello"
        assert not gate.is_set()
        assert held.visible_text.endswith(PREVIEW_SUFFIX.strip())  # still streaming
    finally:
        gate.set()
    await alice.shows(held, "echo: talk")


async def test_within_one_topic_messages_are_still_answered_in_order(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    alice = in_topic(fake_telegram, fake_telegram.open_topic("Tides"))
    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=1)
    held = await alice.asks(f"@{BOT_USERNAME} talk")

    alice.says("/help")  # waits for the turn before it
    gate.set()

    await fake_telegram.wait_for(lambda: len(alice.bot_messages()) == 2, what="the help")
    helped = alice.bot_messages()[1]
    assert (held.visible_text, helped.visible_text) == ("echo: talk", HELP_SHOWN)
    assert helped.versions[0].at >= held.current.at  # sent once the answer was whole


# --- 14. what a reply tells besides -----------------------------------------------------------


async def test_a_message_after_the_conversation_expired_says_it_is_a_new_one_once(
    start_bot: StartBot, alice: Person, redis_client: aioredis.Redis
) -> None:
    await start_bot(SESSION_TTL="1800")
    await alice.asks_model("first")
    await let_time_pass(redis_client, 1800)  # half an hour without messages: it expired

    expired = notice_text(ENGLISH, Notice.PREVIOUS_SESSION_EXPIRED, expired_after=1800)
    await alice.asks_model("back again", f"echo: back again\n\n{expired}")
    await alice.asks_model("and again")  # said once: nothing more under this one
    listing = await alice.asks("/sessions")

    assert "after 30 min without messages" in expired
    assert len(listing.buttons()) == 1  # the new one: the expired one is gone


async def test_a_new_conversation_after_delete_says_nothing(
    start_bot: StartBot, alice: Person
) -> None:
    await start_bot()
    await alice.asks_model("first")
    confirm = await alice.asks("/delete")
    await alice.taps(confirm, "Delete")

    await alice.asks_model("a fresh start")  # nothing under the answer


async def test_the_first_answer_whose_context_lost_older_messages_says_so_once_in_portuguese(
    start_bot: StartBot, fake_telegram: FakeTelegram
) -> None:
    await start_bot(MAX_MESSAGES_PER_SESSION="4", SUMMARIES="off")
    joao = Person(fake_telegram, user_id=3003, username="joao", language_code="pt-br")
    await joao.asks_model("um")
    await joao.asks_model("dois")  # four messages: all still kept

    lost = notice_text(PORTUGUESE, Notice.CONTEXT_LOST)
    await joao.asks_model("três", f"echo: três\n\n{lost}")  # "um" is trimmed now
    await joao.asks_model("quatro")
