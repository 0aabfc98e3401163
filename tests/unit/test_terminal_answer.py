"""What the terminal prints for a streamed answer, ending by ending, to the byte.

The command layer is replaced by one that answers every line with an in-memory turn.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from bots.terminal import Terminal
from core.commands import TurnReply
from core.conversation import Message, Notice, Role, Usage
from core.errors import ModelStreamBroken, ModelUnavailable, StoreUnavailable
from core.messages import describe, notice_text, text
from tests.fakes.turn import InMemoryTurn

REPLY = Message("m1", Role.ASSISTANT, "Hello", "a/b", datetime.now(UTC), Usage(3, 4))


class AnsweringWith:
    """A command layer that answers any message with `turn`."""

    def __init__(self, turn: InMemoryTurn) -> None:
        self._turn = turn

    async def handle(self, user_id: str, message: str, *, locale: str) -> TurnReply:
        return TurnReply(turn=self._turn)


async def printed_answer(turn: InMemoryTurn, locale: str) -> str:
    """What the terminal printed between the user's line and the next prompt."""
    out = io.StringIO()
    terminal = Terminal(AnsweringWith(turn), "ana", locale, io.StringIO("hi\n"), out)
    await terminal.run()
    prompt, goodbye = text(locale, "prompt_you"), text(locale, "goodbye") + "\n"
    printed = out.getvalue()
    assert printed.startswith(prompt)
    assert printed.endswith(prompt + goodbye)
    return printed[len(prompt) : -len(prompt + goodbye)]


@pytest.mark.parametrize("locale", ["en", "pt-BR"])
async def test_a_complete_answer_is_printed_after_the_prompt_with_the_footer_under_it(
    locale: str,
):
    turn = InMemoryTurn(["Hel", "lo"], reply=REPLY)

    printed = await printed_answer(turn, locale)

    footer = text(locale, "reply_footer", model="a/b", tokens=7)
    assert printed == text(locale, "prompt_assistant") + "Hello\n  [" + footer + "]\n"


async def test_a_notice_is_printed_a_paragraph_after_the_answer_above_the_footer():
    turn = InMemoryTurn(["Hello"], reply=REPLY, notices=(Notice.CONTEXT_LOST,))

    printed = await printed_answer(turn, "en")

    footer = text("en", "reply_footer", model="a/b", tokens=7)
    lost = notice_text("en", Notice.CONTEXT_LOST)
    assert printed == text("en", "prompt_assistant") + f"Hello\n\n{lost}\n  [{footer}]\n"


async def test_a_cut_answer_is_followed_by_the_incomplete_notice_on_its_own_line():
    turn = InMemoryTurn(["Hel", "lo"], ending=ModelStreamBroken(partial_text="Hello"))

    printed = await printed_answer(turn, "en")

    notice = text("en", "reply_incomplete")
    assert printed == text("en", "prompt_assistant") + "Hello\n" + notice + "\n"


async def test_an_error_during_the_answer_is_printed_right_after_what_was_shown():
    turn = InMemoryTurn(["Hello"], ending=ModelUnavailable())

    printed = await printed_answer(turn, "en")

    error = describe(ModelUnavailable(), "en")
    assert printed == text("en", "prompt_assistant") + "Hello" + error + "\n"


async def test_an_error_before_the_turn_starts_is_printed_without_the_prompt():
    turn = InMemoryTurn([], fails_to_start=StoreUnavailable())

    printed = await printed_answer(turn, "en")

    assert printed == describe(StoreUnavailable(), "en") + "\n"
