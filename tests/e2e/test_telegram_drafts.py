"""Answers in a private chat stream as drafts (`sendMessageDraft`), end to end: `python -m bots`
long polling the strict fake Bot API, answering with the fake OpenRouter, sessions in Redis.

A draft is what the user sees of an answer still being written; once it is complete the answer
is sent as messages, exactly as the edit path's last edit shows it. Groups, supergroups and
forum topics keep the paced edits (`test_telegram.py` covers those mechanics in detail), and a
chat whose drafts Telegram refuses falls back to them, the answer under way included.

Nothing waits on the wall clock: `wait_for` polls with a bound, and a model that must break
off only after a draft was shown waits for that draft. Pacing is checked from the fake's
recorded call times, as in `test_telegram.py`.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from aiohttp import web

from bots.telegram.drafts import DRAFT_INTERVAL
from core.errors import TurnTimeout
from core.messages import ENGLISH, describe, text
from tests.e2e import test_telegram
from tests.e2e.test_telegram import (
    BOT_USERNAME,
    EDIT_INTERVAL,
    PACING_TOLERANCE,
    PREVIEW_SUFFIX,
    TELEGRAM_LIMIT,
    Person,
    StartBot,
    calls_in_chat,
    gaps,
    trickle,
    words,
)
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.fakes.telegram_html import utf16_length
from tests.fakes.telegram_server import Draft, FakeTelegram

BOB_ID = 2002


# The service on the fakes, as test_telegram.py starts it.
start_bot = test_telegram.start_bot


@pytest.fixture
def alice(fake_telegram: FakeTelegram) -> Person:
    return Person(fake_telegram)


def streams_for_a_while(
    monkeypatch: pytest.MonkeyPatch, fake: FakeOpenRouter, reply: str, deltas: int = 60
) -> None:
    """The model answers `reply` in `deltas` pieces, 20 ms apart: over a second of streaming."""
    fake.reply_text = reply
    fake.deltas_per_reply = deltas
    trickle(monkeypatch, fake, 0.02)


def breaks_off_once_a_draft_shows(
    monkeypatch: pytest.MonkeyPatch,
    fake: FakeOpenRouter,
    telegram: FakeTelegram,
    chat_id: int,
    *,
    after_deltas: int,
) -> None:
    """The model holds its stream after `after_deltas` deltas until the user sees a draft, so
    that a fault queued for that point (cut, error) comes mid-answer, under a shown draft."""
    send_delta = fake._send_delta
    count = itertools.count(1)

    async def then_wait(response: web.StreamResponse, model: str, piece: str) -> None:
        await send_delta(response, model, piece)
        if next(count) == after_deltas:
            await telegram.wait_for(lambda: telegram.drafts(chat_id), what="a draft")

    monkeypatch.setattr(fake, "_send_delta", then_wait)


def draft_texts(drafts: list[Draft]) -> list[str]:
    return [draft.visible_text for draft in drafts]


def methods_in_chat(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [c.method for c in fake.calls if c.params.get("chat_id") == chat_id]


# --- a private chat: drafts, then the answer as one message -----------------------------------


async def test_a_private_chat_sees_growing_drafts_then_one_message_with_the_whole_answer(
    start_bot: StartBot,
    alice: Person,
    fake_telegram: FakeTelegram,
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await start_bot()
    lines = [f"Line {n}: the **tide** rises." for n in range(1, 13)]
    streams_for_a_while(monkeypatch, fake_openrouter, "\n".join(lines))
    fake_openrouter.slow_first_token(0.6)  # past TYPING_AFTER_SECONDS: "typing" shows first
    shown = "\n".join(line.replace("**", "") for line in lines)

    question = alice.says("tell me about tides")["message"]
    answer = await alice.next_message(0, what="the answer")
    await alice.shows(answer, shown)

    drafts = fake_telegram.drafts(alice.chat_id)
    assert len(drafts) >= 2
    texts = draft_texts(drafts)
    assert all(len(earlier) < len(later) for earlier, later in itertools.pairwise(texts)), texts
    # Each draft is the text so far, without a mark; a bold marker still open shows as typed.
    assert all(shown.startswith(draft.replace("*", "")) for draft in texts), texts
    assert len({draft.draft_id for draft in drafts}) == 1  # one draft, animated as it grows
    assert drafts[0].draft_id != 0
    assert all(draft.parse_mode == "HTML" for draft in drafts)
    methods = methods_in_chat(fake_telegram, alice.chat_id)
    assert methods.count("sendMessage") == 1
    assert "editMessageText" not in methods
    assert methods[0] == "sendChatAction"
    assert "sendChatAction" not in methods[methods.index("sendMessageDraft") :]  # none after
    assert methods[-1] == "sendMessage"
    assert alice.bot_messages() == [answer]
    assert answer.edit_count == 0
    assert answer.parse_mode == "HTML"
    assert len([e for e in answer.current.entities if e["type"] == "bold"]) == len(lines)
    assert answer.extra["reply_to_message"]["message_id"] == question["message_id"]
    assert fake_telegram.shown_draft(alice.chat_id) is None  # the message took its place


async def test_drafts_are_coalesced_to_one_per_draft_interval_not_one_per_delta(
    start_bot: StartBot,
    alice: Person,
    fake_telegram: FakeTelegram,
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await start_bot()
    reply = " ".join(f"word{n}" for n in range(60))
    streams_for_a_while(monkeypatch, fake_openrouter, reply)

    await alice.asks_model("talk", reply)

    drafts = sorted(
        calls_in_chat(fake_telegram, "sendMessageDraft", alice.chat_id), key=lambda c: c.at
    )
    assert 2 <= len(drafts) < 60
    assert min(gaps(drafts)) >= PACING_TOLERANCE * DRAFT_INTERVAL, gaps(drafts)


async def test_an_answer_complete_before_the_first_draft_is_due_is_one_message_and_no_draft(
    start_bot: StartBot, alice: Person, fake_telegram: FakeTelegram
) -> None:
    await start_bot()

    answer = await alice.asks_model("quick one")

    assert answer.edit_count == 0
    assert fake_telegram.calls_to("sendMessageDraft") == []
    assert methods_in_chat(fake_telegram, alice.chat_id) == ["sendMessage"]


async def test_a_rate_limited_draft_is_skipped_and_drafts_go_on_once_the_wait_is_over(
    start_bot: StartBot,
    alice: Person,
    fake_telegram: FakeTelegram,
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await start_bot()
    reply = " ".join(f"word{n}" for n in range(100))
    # Two seconds of streaming: the first draft is refused, and the 1 s asked ends before it.
    streams_for_a_while(monkeypatch, fake_openrouter, reply, deltas=100)
    fake_telegram.rate_limit("sendMessageDraft", retry_after=1)

    answer = await alice.asks_model("talk", reply)

    drafts = calls_in_chat(fake_telegram, "sendMessageDraft", alice.chat_id)
    assert drafts[0].status == 429  # a 429 is no refusal: drafts go on after the wait
    assert drafts[1].is_ok
    assert drafts[1].at - drafts[0].at >= PACING_TOLERANCE * 1
    assert calls_in_chat(fake_telegram, "editMessageText", alice.chat_id) == []
    assert answer.edit_count == 0


async def test_an_answer_over_4096_characters_ends_as_the_usual_split_parts(
    start_bot: StartBot,
    alice: Person,
    fake_telegram: FakeTelegram,
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await start_bot()
    paragraphs = [
        f"Paragraph {n}. " + " ".join(f"tide{n}x{k}" for k in range(40)) for n in range(30)
    ]
    reply = "\n\n".join(paragraphs)  # about 11,000 characters
    streams_for_a_while(monkeypatch, fake_openrouter, reply, deltas=40)

    alice.says("a long one please")
    await fake_telegram.wait_for(
        lambda: words(" ".join(m.visible_text for m in alice.bot_messages())) == words(reply),
        what="the whole reply, in order",
    )

    parts = alice.bot_messages()
    assert len(parts) >= 3
    assert all(utf16_length(m.visible_text) <= TELEGRAM_LIMIT for m in parts)
    assert all(m.visible_text.startswith("Paragraph ") for m in parts)  # cut at paragraphs
    assert not any(m.visible_text.endswith(PREVIEW_SUFFIX.strip()) for m in parts)
    assert all(m.edit_count == 0 for m in parts)
    assert len(calls_in_chat(fake_telegram, "sendMessage", alice.chat_id)) == len(parts)
    drafts = fake_telegram.drafts(alice.chat_id)
    assert drafts
    # A draft shows the part being written: within the limit, from a paragraph's start, and
    # a new part is a new draft (its own id), not the last one shrinking.
    assert all(utf16_length(d.visible_text) <= TELEGRAM_LIMIT for d in drafts)
    assert all(d.visible_text.startswith("Paragraph ") for d in drafts)
    for earlier, later in itertools.pairwise(drafts):
        if later.draft_id == earlier.draft_id:
            assert len(later.visible_text) > len(earlier.visible_text)


# --- endings: as on the edit path ---------------------------------------------------------------


@pytest.mark.parametrize("fault", ["cut_stream", "error_chunk"])
async def test_a_model_error_after_a_draft_ends_as_one_message_marked_as_on_the_edit_path(
    start_bot: StartBot,
    alice: Person,
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
) -> None:
    await start_bot()
    fake_telegram = alice.fake
    fake_openrouter.reply_text = "aaaa bbbb cccc dddd"
    fake_openrouter.deltas_per_reply = 4
    getattr(fake_openrouter, fault)(after_deltas=2)  # the stream breaks off after two deltas
    breaks_off_once_a_draft_shows(
        monkeypatch, fake_openrouter, fake_telegram, alice.chat_id, after_deltas=2
    )
    ending = "\n\n" + text(ENGLISH, "reply_incomplete")

    answer = await alice.asks_model("talk", "aaaa bbbb " + ending)

    assert draft_texts(fake_telegram.drafts(alice.chat_id))[-1] == "aaaa bbbb"
    assert "/retry" in answer.visible_text
    assert alice.bot_messages() == [answer]
    assert answer.edit_count == 0
    assert calls_in_chat(fake_telegram, "editMessageText", alice.chat_id) == []


async def test_an_answer_past_turn_timeout_ends_with_its_text_and_the_stop_notice(
    start_bot: StartBot, alice: Person, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot(TURN_TIMEOUT="1")
    fake_openrouter.reply_text = "aaaa bbbb cccc dddd"
    fake_openrouter.keep_alive_forever(after_deltas=2)
    notice = describe(TurnTimeout(seconds=1), ENGLISH)

    answer = await alice.asks_model("talk", "aaaa bbbb \n\n⚠️ " + notice)

    assert alice.bot_messages() == [answer]
    assert calls_in_chat(fake_telegram, "editMessageText", alice.chat_id) == []


# --- groups keep edits; refused drafts fall back to them ------------------------------------------


@pytest.mark.parametrize("where", ["group", "supergroup", "forum topic"])
async def test_outside_private_chats_answers_stream_as_paced_edits_and_no_draft_is_tried(
    start_bot: StartBot,
    fake_telegram: FakeTelegram,
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    await start_bot()
    if where == "forum topic":
        member = Person(fake_telegram, chat_type="supergroup", topic=fake_telegram.open_topic("T"))
    else:
        member = Person(fake_telegram, chat_type=where)
    reply = " ".join(f"word{n}" for n in range(60))
    streams_for_a_while(monkeypatch, fake_openrouter, reply)

    answer = await member.asks_model(f"@{BOT_USERNAME} talk", reply)

    assert fake_telegram.calls_to("sendMessageDraft") == []
    assert answer.versions[0].visible_text.endswith(PREVIEW_SUFFIX.strip())  # a preview first
    edits = calls_in_chat(fake_telegram, "editMessageText", member.chat_id)
    assert edits
    assert min(gaps(edits), default=EDIT_INTERVAL) >= PACING_TOLERANCE * EDIT_INTERVAL
    assert member.bot_messages() == [answer]


@pytest.mark.parametrize(
    "refusal",
    [
        pytest.param({}, id="400-bad-request"),
        pytest.param({"as_unknown_method": True}, id="404-unknown-method"),
    ],
)
async def test_refused_drafts_fall_back_to_edits_with_the_whole_answer_once(
    start_bot: StartBot,
    alice: Person,
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
    refusal: dict[str, Any],
) -> None:
    service = await start_bot()
    fake_telegram = alice.fake
    reply = " ".join(f"word{n}" for n in range(60))
    streams_for_a_while(monkeypatch, fake_openrouter, reply)
    fake_telegram.refuse_drafts(**refusal)

    answer = await alice.asks_model("talk", reply)

    # The refused draft's text went out as the first message, then grew by edits, once.
    assert fake_telegram.drafts(alice.chat_id) == []
    assert len(calls_in_chat(fake_telegram, "sendMessageDraft", alice.chat_id)) == 1
    assert alice.bot_messages() == [answer]
    first = answer.versions[0].visible_text
    assert first.endswith(PREVIEW_SUFFIX.strip())
    assert reply.startswith(first.removesuffix(PREVIEW_SUFFIX.strip()).rstrip())
    assert answer.edit_count >= 1
    assert words(answer.visible_text) == words(reply)
    assert service.events("telegram.drafts_refused")

    # Remembered: the chat's next answer streams as edits without trying a draft again.
    again = await alice.asks_model("more", reply)
    assert again.edit_count >= 1
    assert len(calls_in_chat(fake_telegram, "sendMessageDraft", alice.chat_id)) == 1
    assert len(service.events("telegram.drafts_refused")) == 1


async def test_a_chat_that_refused_drafts_leaves_other_private_chats_on_drafts(
    start_bot: StartBot,
    alice: Person,
    fake_telegram: FakeTelegram,
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await start_bot()
    bob = Person(fake_telegram, user_id=BOB_ID, username="bob")
    reply = " ".join(f"word{n}" for n in range(60))
    streams_for_a_while(monkeypatch, fake_openrouter, reply)
    fake_telegram.refuse_drafts(chat_id=alice.chat_id)

    refused = await alice.asks_model("talk", reply)
    answer = await bob.asks_model("talk", reply)

    assert refused.edit_count >= 1
    assert fake_telegram.drafts(bob.chat_id)
    assert answer.edit_count == 0
