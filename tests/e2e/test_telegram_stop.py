"""/stop on Telegram, end to end (`python -m bots` on the fake Bot API): the ⏹ button under a
streaming preview (in a group: a private chat's answer streams as drafts, which carry no
button) and a typed /stop end the answer at once — never queued behind the answer they stop —
leaving what was shown, marked stopped, without the button; a stranger's ⏹ is refused with a
toast. (Stopping from another replica: tests/e2e/test_replicas.py.)"""

from __future__ import annotations

import asyncio
import time

from core.messages import ENGLISH, text
from tests.e2e import test_telegram
from tests.e2e.test_telegram import (
    BOT_USERNAME,
    EDIT_INTERVAL,
    PREVIEW_SUFFIX,
    Person,
    StartBot,
)
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.fakes.telegram_server import FakeTelegram

STOP = text(ENGLISH, "stop_button")
STOPPED = text(ENGLISH, "answer_stopped")
STOP_WITHIN_SECONDS = 1.0


# The service on the fakes, as test_telegram.py starts it.
start_bot = test_telegram.start_bot


async def test_the_stop_button_ends_the_answer_at_once_keeping_what_was_shown(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    alice = Person(fake_telegram, chat_type="group")
    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=1)
    preview = await alice.asks(f"@{BOT_USERNAME} tell me about tides")
    await fake_telegram.wait_for(preview.buttons, what="the ⏹ under the preview")
    assert [b["text"] for b in preview.buttons()] == [STOP]
    shown = preview.visible_text.removesuffix(PREVIEW_SUFFIX)
    messages = len(alice.bot_messages())

    tapped_at = time.monotonic()
    query = alice.taps_only(preview, STOP)["callback_query"]["id"]
    await fake_telegram.wait_for(lambda: preview.visible_text.endswith(STOPPED), what="the mark")
    took = time.monotonic() - tapped_at
    gate.set()

    assert took < STOP_WITHIN_SECONDS, f"stopped after {took:.2f} s"
    assert query in fake_telegram.callback_answers
    assert preview.visible_text == f"{shown}\n\n{STOPPED}"
    assert preview.reply_markup is None
    await asyncio.sleep(EDIT_INTERVAL * 3)  # nothing more comes: no second message, no edit
    assert len(alice.bot_messages()) == messages
    assert preview.visible_text == f"{shown}\n\n{STOPPED}"
    history = await alice.asks("/history")
    assert history.visible_text.endswith(f"{shown} {STOPPED}")


async def test_a_typed_stop_ends_a_private_chats_draft_not_queued_behind_it(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    alice = Person(fake_telegram)
    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=1)
    alice.says("tell me about currents")
    draft = await fake_telegram.wait_for(
        lambda: fake_telegram.shown_draft(alice.chat_id), what="the answer's draft"
    )
    try:
        said = await alice.asks("/stop")
        assert said.visible_text == text(ENGLISH, "stop_done")
        answer = await fake_telegram.wait_for(
            lambda: [m for m in alice.bot_messages() if m.visible_text.endswith(STOPPED)],
            what="the stopped answer",
        )
        assert not gate.is_set()  # the model still held its answer: the stop ended it
    finally:
        gate.set()
    assert answer[0].visible_text == f"{draft.visible_text}\n\n{STOPPED}"
    assert answer[0].reply_markup is None
    nothing = await alice.asks("/stop")
    assert nothing.visible_text == text(ENGLISH, "nothing_to_stop")


async def test_a_strangers_stop_button_is_refused_and_the_answer_goes_on(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    await start_bot()
    alice = Person(fake_telegram, chat_type="group")
    bob = Person(fake_telegram, user_id=2002, username="bob", chat_type="group")
    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=1)
    preview = await alice.asks("@chatbridge_test_bot tell me a story")
    await fake_telegram.wait_for(preview.buttons, what="the preview")
    try:
        query = bob.taps_only(preview, STOP)["callback_query"]["id"]
        toast = await fake_telegram.wait_for(
            lambda: fake_telegram.callback_answers.get(query), what="the toast"
        )
        assert toast["text"] == text(ENGLISH, "not_your_buttons")
    finally:
        gate.set()
    await alice.shows(preview, "echo: tell me a story")
    assert preview.reply_markup is None
