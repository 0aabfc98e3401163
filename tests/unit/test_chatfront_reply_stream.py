"""The chat platforms' shared reply stream and `stream_turn`, on an in-memory chat.

No server and no clock: a preview that must wait is held by a pacer the test opens, and the
chat's requests fail when the test says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from bots.chatfront.pacing import ChatPacer
from bots.chatfront.reply_stream import ReplyStream, RetryPolicy, until_delivered
from bots.chatfront.streaming import stream_turn
from core.commands import TurnReply
from core.conversation import Message, Notice, Role
from core.errors import ModelStreamBroken, ModelUnavailable, StoreUnavailable
from core.messages import describe, notice_text, text
from tests.fakes.turn import InMemoryTurn

PART_LIMIT = 10
ATTEMPTS = 3
NEVER = 3600.0  # a first preview this far off is never shown: the answer ends first
AT_ONCE = 0.0


class Refused(Exception):
    """What the in-memory chat raises for a request it fails."""

    def __init__(self, *, is_retryable: bool) -> None:
        super().__init__("refused")
        self.is_retryable = is_retryable


class InMemoryChat:
    """A chat that keeps its messages in a dict and records every request made to it."""

    def __init__(self) -> None:
        self.messages: dict[int, str] = {}
        self.sends: list[str] = []
        self.edits: list[tuple[int, str]] = []
        self.requests = 0
        self.failures: list[Refused] = []  # the next requests fail with these, in order
        self.gate = asyncio.Event()  # requests wait for it; open unless a test closes it
        self.gate.set()
        self.has_message = asyncio.Event()

    async def send(self, content: str) -> int:
        await self._request()
        message_id = len(self.messages) + 1
        self.messages[message_id] = content
        self.sends.append(content)
        self.has_message.set()
        return message_id

    async def edit(self, message_id: int, content: str) -> None:
        await self._request()
        self.messages[message_id] = content
        self.edits.append((message_id, content))

    async def _request(self) -> None:
        self.requests += 1
        await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)

    @property
    def shown(self) -> list[str]:
        return [self.messages[message_id] for message_id in sorted(self.messages)]


class InMemoryRetries(RetryPolicy[Refused]):
    error_type = Refused
    attempts = ATTEMPTS

    def __init__(self) -> None:
        self.retried_attempts: list[int] = []

    def is_retryable(self, error: Refused) -> bool:
        return error.is_retryable

    def seconds_before_retry(self, error: Refused, attempt: int) -> float:
        return 0.0

    def note_retry(self, error: Refused, attempt: int, seconds: float) -> None:
        self.retried_attempts.append(attempt)


class InMemoryStream(ReplyStream[int, Refused]):
    """The in-memory chat's platform: fixed-size parts, message ids as handles."""

    def __init__(self, chat: InMemoryChat, pacer: ChatPacer, *, first_preview_after: float):
        self.chat = chat
        self.retries = InMemoryRetries()
        self.failed_parts: list[bool] = []  # is_final of each part given up on
        super().__init__(
            pacer, typing_every=NEVER, retries=self.retries, first_preview_after=first_preview_after
        )

    @property
    def _pace_key(self) -> Hashable:
        return "chat"

    def _parts_of(self, text: str) -> list[str]:
        return [text[start : start + PART_LIMIT] for start in range(0, len(text), PART_LIMIT)]

    async def _send(self, text: str, *, is_preview: bool) -> int | None:
        return await self.chat.send(text)

    async def _edit(self, handle: int, text: str, *, is_preview: bool) -> None:
        await self.chat.edit(handle, text)

    async def _show_typing(self) -> None:
        return None

    def _part_failed(self, error: Refused, *, is_final: bool) -> None:
        self.failed_parts.append(is_final)


class GatedPacer(ChatPacer):
    """A chat pacer whose edit slot is free only while the test says so."""

    def __init__(self, *, is_open: bool = True) -> None:
        super().__init__(interval=0.0)
        self.is_open = is_open

    def is_due(self, chat_id: Hashable) -> bool:
        return self.is_open


async def until(condition: Callable[[], bool]) -> None:
    """Let the stream's background previews run until `condition` holds."""
    async with asyncio.timeout(5):  # a bound on a hang, not a measurement
        while not condition():  # noqa: ASYNC110 (the background tasks run in these sleeps)
            await asyncio.sleep(0)


def a_stream(
    chat: InMemoryChat, pacer: ChatPacer | None = None, *, first_preview_after: float = NEVER
) -> InMemoryStream:
    return InMemoryStream(chat, pacer or GatedPacer(), first_preview_after=first_preview_after)


async def test_an_answer_complete_before_the_first_preview_is_sent_once_without_an_edit():
    chat = InMemoryChat()

    async with a_stream(chat) as stream:
        await stream.add("Hi")
        await stream.add(" there")
        await stream.finish()

    assert chat.sends == ["Hi there"]
    assert chat.edits == []


async def test_the_first_preview_marks_that_more_is_coming_and_the_final_text_replaces_it():
    chat = InMemoryChat()

    async with a_stream(chat, first_preview_after=AT_ONCE) as stream:
        await stream.add("Hello")
        await until(lambda: bool(chat.sends))
        await stream.finish()

    assert chat.sends == ["Hello …"]
    assert chat.edits == [(1, "Hello")]


async def test_no_preview_is_edited_in_while_the_chats_edit_slot_is_taken():
    chat = InMemoryChat()
    pacer = GatedPacer(is_open=False)

    async with a_stream(chat, pacer, first_preview_after=AT_ONCE) as stream:
        await stream.add("one")
        await until(lambda: bool(chat.sends))  # the first message needs no edit slot
        await stream.add(" 2")
        await stream.add(" 3")
        await asyncio.sleep(0)
        edits_while_taken = list(chat.edits)
        pacer.is_open = True
        await stream.add("!")
        await until(lambda: bool(chat.edits))
        await stream.finish()

    assert edits_while_taken == []
    assert chat.sends == ["one …"]
    assert chat.edits == [(1, "one 2 3! …"), (1, "one 2 3!")]


async def test_text_added_while_a_preview_is_on_its_way_waits_for_the_next_one():
    chat = InMemoryChat()

    async with a_stream(chat, first_preview_after=AT_ONCE) as stream:
        chat.gate.clear()
        await stream.add("one")
        await until(lambda: chat.requests == 1)
        await stream.add(" 2")
        await stream.add(" 3")
        requests_while_on_its_way = chat.requests
        chat.gate.set()
        await stream.finish()

    assert requests_while_on_its_way == 1
    assert chat.sends == ["one …"]
    assert chat.edits == [(1, "one 2 3")]


async def test_a_retryable_error_on_a_preview_skips_it_and_the_final_text_still_arrives():
    chat = InMemoryChat()
    chat.failures = [Refused(is_retryable=True)]

    async with a_stream(chat, first_preview_after=AT_ONCE) as stream:
        await stream.add("Hello")
        await until(lambda: stream.failed_parts == [False])
        await stream.finish()

    assert chat.shown == ["Hello"]
    assert stream.retries.retried_attempts == []  # a preview is not retried: the next one follows


async def test_a_preview_refused_for_good_fails_the_answer_at_its_next_text():
    chat = InMemoryChat()
    chat.failures = [Refused(is_retryable=False)]

    async with a_stream(chat, first_preview_after=AT_ONCE) as stream:
        await stream.add("Hello")
        await until(lambda: chat.requests == 1)
        await asyncio.sleep(0)
        with pytest.raises(Refused):
            await stream.add(", world")

    assert chat.shown == []


async def test_the_final_text_is_retried_until_delivered():
    chat = InMemoryChat()
    chat.failures = [Refused(is_retryable=True), Refused(is_retryable=True)]

    async with a_stream(chat) as stream:
        await stream.add("Hello")
        await stream.finish()

    assert chat.shown == ["Hello"]
    assert chat.requests == ATTEMPTS
    assert stream.retries.retried_attempts == [1, 2]


async def test_the_final_texts_error_is_raised_once_its_attempts_are_used_up():
    chat = InMemoryChat()
    chat.failures = [Refused(is_retryable=True) for _ in range(ATTEMPTS)]

    async with a_stream(chat) as stream:
        await stream.add("Hello")
        with pytest.raises(Refused):
            await stream.finish()

    assert chat.requests == ATTEMPTS
    assert stream.failed_parts == [True]


async def test_a_final_text_refused_for_good_is_raised_without_another_attempt():
    chat = InMemoryChat()
    chat.failures = [Refused(is_retryable=False)]

    async with a_stream(chat) as stream:
        await stream.add("Hello")
        with pytest.raises(Refused):
            await stream.finish()

    assert chat.requests == 1
    assert stream.failed_parts == []


async def test_text_past_the_limit_goes_on_in_further_messages():
    chat = InMemoryChat()

    async with a_stream(chat) as stream:
        await stream.add("a" * PART_LIMIT + "b" * PART_LIMIT + "c" * 3)
        await stream.finish()

    assert chat.sends == ["a" * PART_LIMIT, "b" * PART_LIMIT, "ccc"]
    assert chat.edits == []


async def test_a_full_message_is_left_alone_while_the_next_one_grows():
    chat = InMemoryChat()

    async with a_stream(chat, first_preview_after=AT_ONCE) as stream:
        await stream.add("a" * PART_LIMIT + "b")
        await until(lambda: len(chat.sends) == 2)
        await stream.finish()

    assert chat.sends == ["a" * PART_LIMIT, "b …"]
    assert chat.edits == [(2, "b")]


async def test_the_footer_goes_under_the_text_and_a_cut_code_block_is_closed_first():
    chat = InMemoryChat()

    async with a_stream(chat) as stream:
        await stream.add("```\nx")
        await stream.finish(footer_line="-# m")

    assert "".join(chat.shown) == "```\nx\n```\n-# m"


async def test_until_delivered_returns_what_the_attempt_returned_after_a_retry():
    retries = InMemoryRetries()
    failures = [Refused(is_retryable=True)]

    async def attempt() -> str:
        if failures:
            raise failures.pop()
        return "sent"

    assert await until_delivered(attempt, retries) == "sent"
    assert retries.retried_attempts == [1]


# --- stream_turn's endings ------------------------------------------------------------------


class Said:
    """What a front said on its own, outside the stream."""

    def __init__(self) -> None:
        self.sentences: list[str] = []

    async def __call__(self, sentence: str) -> None:
        self.sentences.append(sentence)


async def run_turn(
    turn: InMemoryTurn, chat: InMemoryChat, *, first_preview_after: float = NEVER, **options
) -> Said:
    said = Said()
    async with a_stream(chat, first_preview_after=first_preview_after) as stream:
        await stream_turn(TurnReply(turn=turn), stream, "en", say=said, **options)
    return said


async def test_a_cut_stream_keeps_what_was_shown_and_marks_it_incomplete():
    chat = InMemoryChat()
    turn = InMemoryTurn(["Tides"], ending=ModelStreamBroken(partial_text="Tides"))

    said = await run_turn(turn, chat)

    assert "".join(chat.shown) == "Tides\n\n" + text("en", "reply_incomplete")
    assert said.sentences == []


async def test_an_error_before_anything_is_shown_is_said_on_its_own():
    chat = InMemoryChat()
    turn = InMemoryTurn([], fails_to_start=StoreUnavailable())

    said = await run_turn(turn, chat)

    assert said.sentences == [describe(StoreUnavailable(), "en")]
    assert chat.requests == 0


async def test_an_error_after_text_was_shown_goes_under_it():
    chat = InMemoryChat()
    turn = InMemoryTurn(["Tides"], ending=ModelUnavailable(), before_ending=chat.has_message)

    said = await run_turn(turn, chat, first_preview_after=AT_ONCE)

    assert "".join(chat.shown) == "Tides\n\n⚠️ " + describe(ModelUnavailable(), "en")
    assert said.sentences == []


async def test_an_empty_answer_is_said_to_be_empty():
    chat = InMemoryChat()
    turn = InMemoryTurn([])

    said = await run_turn(turn, chat, footer=lambda _: "-# m")

    assert said.sentences == [text("en", "empty_answer")]
    assert chat.requests == 0


async def test_a_complete_answer_gets_the_footer_of_its_stored_reply():
    chat = InMemoryChat()
    reply = Message("m1", Role.ASSISTANT, "Tides", "m", datetime.now(UTC))
    turn = InMemoryTurn(["Tides"], reply=reply)
    footers: list[Message | None] = []

    def footer(message: Message | None) -> str:
        footers.append(message)
        return "-# m"

    await run_turn(turn, chat, footer=footer)

    assert footers == [reply]
    assert chat.shown == ["Tides\n-# m"]


async def test_a_complete_answers_notices_are_a_paragraph_between_it_and_its_footer():
    chat = InMemoryChat()
    reply = Message("m1", Role.ASSISTANT, "Tides", "m", datetime.now(UTC))
    notices = (Notice.PREVIOUS_SESSION_EXPIRED, Notice.CONTEXT_LOST)
    turn = InMemoryTurn(["Tides"], reply=reply, notices=notices, expired_after=3600)

    await run_turn(turn, chat, footer=lambda _: "-# m")

    expired = notice_text("en", Notice.PREVIOUS_SESSION_EXPIRED, expired_after=3600)
    lost = notice_text("en", Notice.CONTEXT_LOST)
    assert "".join(chat.shown) == f"Tides\n\n{expired}\n{lost}\n-# m"


@pytest.mark.parametrize("is_failure_logged", [True, False])
async def test_a_failed_turn_is_logged_unless_the_front_says_it_only_on_screen(
    is_failure_logged: bool,
):
    turn = InMemoryTurn([], fails_to_start=StoreUnavailable())

    with capture_logs() as logs:
        await run_turn(turn, InMemoryChat(), is_failure_logged=is_failure_logged)

    failures = [entry for entry in logs if entry["event"] == "turn.failed"]
    assert len(failures) == (1 if is_failure_logged else 0)
