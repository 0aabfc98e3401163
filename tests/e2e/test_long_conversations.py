"""Long conversations end to end (issue 18, "Done when"): through the HTTP API served in-process
and the Telegram front (`python -m bots` on the fake Bot API), answered by the fake OpenRouter,
sessions in a real Redis. What falls out of a turn's context is summarised after the answer
(core/summaries.py); the tests check what the model was sent, what people are told and what
they are charged.

Summaries run in the background after an answer, so the turn that first carries one is not
known in advance: each reply is checked against its own request (the fake recorded it), and
the notice `context_summarized` belongs to the first reply whose request carried a summary.
"""

from __future__ import annotations

from typing import Any

import pytest

from core.conversation import Notice
from core.messages import ENGLISH, PORTUGUESE, notice_text, usage_text
from core.sessions.usage import COST_DIGITS, UsageReport, UsageTotals
from core.summaries import SUMMARY_INSTRUCTIONS, SUMMARY_PREFACE
from core.tokens import MESSAGE_OVERHEAD_TOKENS, count_tokens
from tests.e2e import test_telegram
from tests.e2e.conftest import Service
from tests.e2e.http_app import TEST_SYSTEM_PROMPT, RunningApi, ServeApi, create_session, sse_events
from tests.e2e.test_telegram import Person, StartBot
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.fakes.telegram_server import FakeTelegram, StoredMessage
from tests.waiting import until

# The service on the fakes, and private chats streaming as edits, as test_telegram.py has them.
start_bot = test_telegram.start_bot
private_chats_stream_as_edits = test_telegram.private_chats_stream_as_edits
alice = test_telegram.alice

FIRST_FACT = "My cat is called Tom."
# About 60 tokens: a few turns overflow a small context.
FILLER = " ".join(f"word{n}" for n in range(25))
SUMMARY_WAIT = 10.0
TINY_MODEL = "tiny/model"
TINY_CONTEXT = 2000


# --- what the fake model was sent ---------------------------------------------------------------


def is_summary_request(body: dict[str, Any]) -> bool:
    return bool(body["messages"][0] == {"role": "system", "content": SUMMARY_INSTRUCTIONS})


def summary_requests(fake: FakeOpenRouter) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests if is_summary_request(r.body)]


def turn_requests(fake: FakeOpenRouter) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests if not is_summary_request(r.body)]


def summary_sent(body: dict[str, Any]) -> str | None:
    """The summary a turn's request carried (its system message after the system prompt)."""
    found = [
        str(m["content"])
        for m in body["messages"]
        if m["role"] == "system" and str(m["content"]).startswith(SUMMARY_PREFACE)
    ]
    assert len(found) <= 1, body
    return found[0] if found else None


def first_with_summary(bodies: list[dict[str, Any]]) -> int | None:
    return next((i for i, body in enumerate(bodies) if summary_sent(body) is not None), None)


def tokens_of(body: dict[str, Any]) -> int:
    """The request's prompt as chatbridge and the fake count it (cl100k_base + overhead)."""
    return sum(count_tokens(str(m["content"])) + MESSAGE_OVERHEAD_TOKENS for m in body["messages"])


def contents(body: dict[str, Any]) -> str:
    return "\n".join(str(m["content"]) for m in body["messages"])


# --- 1. a 300-message conversation over the HTTP API ---------------------------------------------


async def say(api: RunningApi, session_id: str, message: str, *, stream: bool) -> dict[str, Any]:
    """One chat turn; its reply JSON (a streamed turn's `done` event)."""
    body = {"sessionId": session_id, "message": message, "stream": stream}
    response = await api.client.post("/api/chat/session", json=body)
    assert response.status_code == 200, response.text
    if not stream:
        reply: dict[str, Any] = response.json()
        return reply
    name, done = sse_events(response)[-1]
    assert name == "done", response.text
    return done


async def test_a_300_message_conversation_keeps_its_first_fact_through_the_rolling_summary(
    serve_api: ServeApi, fake_openrouter: FakeOpenRouter
) -> None:
    """150 turns at CONTEXT_TOKENS=600 (MAX_MESSAGES_PER_SESSION=100 trims too): the first
    fact reaches the last request through the summary, not in its own words; one reply says
    the model now gets a summary (streamed turns in their `done` event)."""
    api = await serve_api(context_tokens=600, rate_limit_messages=0)
    summarizer = api.services.chat.summarizer
    assert summarizer is not None
    session_id = (await create_session(api.client))["id"]
    said = [FIRST_FACT, *(f"question {number}" for number in range(1, 150))]
    notices = []
    for number, message in enumerate(said):
        reply = await say(api, session_id, message, stream=number % 2 == 1)
        assert reply["reply"]["content"] == f"echo: {message}", number
        notices.append(reply["notices"])
        # Each summary made before the next turn: the same summaries on every run (the
        # fake's echo of a summary grows by a few words each time it rolls on).
        await summarizer.wait(SUMMARY_WAIT)

    turns = turn_requests(fake_openrouter)
    assert [body["messages"][-1]["content"] for body in turns] == said
    assert all(tokens_of(body) <= 600 for body in turns)
    # The model was asked to summarise the first fact, and its summary still carries it.
    assert any(FIRST_FACT in contents(body) for body in summary_requests(fake_openrouter))
    last = turns[-1]["messages"]
    assert last[0] == {"role": "system", "content": TEST_SYSTEM_PROMPT}
    summary = summary_sent(turns[-1])
    assert summary is not None
    assert last[1] == {"role": "system", "content": summary}
    assert FIRST_FACT in summary
    assert all(FIRST_FACT not in str(m["content"]) for m in last[2:])
    # The first reply relying on a summary said so, and no other reply said anything.
    first = first_with_summary(turns)
    assert first is not None
    assert [n for n in notices if n] == [["context_summarized"]]
    assert notices[first] == ["context_summarized"]
    stored = await api.client.get(f"/api/sessions/{session_id}")
    assert stored.json()["messageCount"] == 100  # 300 exchanged, the oldest trimmed


@pytest.mark.parametrize("stream", [False, True], ids=["json", "streamed"])
async def test_the_first_reply_relying_on_a_summary_lists_context_summarized_once(
    serve_api: ServeApi, fake_openrouter: FakeOpenRouter, stream: bool
) -> None:
    api = await serve_api(context_tokens=256)
    session_id = (await create_session(api.client))["id"]
    summarizer = api.services.chat.summarizer
    assert summarizer is not None
    number = 0
    while not summary_requests(fake_openrouter):
        assert (await say(api, session_id, f"q{number} {FILLER}", stream=stream))["notices"] == []
        await summarizer.wait(SUMMARY_WAIT)  # made before the next turn begins
        number += 1
        assert number < 10, "no summary after 10 turns"

    told = await say(api, session_id, "What did I say first?", stream=stream)
    again = await say(api, session_id, "And then?", stream=stream)
    # Made before the app closes: open_services does not wait for summaries (serve does).
    await summarizer.wait(SUMMARY_WAIT)

    assert summary_sent(turn_requests(fake_openrouter)[-2]) is not None
    assert told["notices"] == ["context_summarized"]
    assert again["notices"] == []


# --- Telegram ------------------------------------------------------------------------------------


async def talk(person: Person, fake: FakeOpenRouter, said: str, language: str) -> StoredMessage:
    """Say `said` to the model; the bot's message once it shows the whole answer: the echo,
    with the `context_summarized` sentence when this turn's request is the first that carried
    a summary."""
    turns_before = len(turn_requests(fake))
    message = await person.asks(said)
    await until(lambda: len(turn_requests(fake)) > turns_before, what=f"the request for {said!r}")
    expected = f"echo: {said}"
    if first_with_summary(turn_requests(fake)) == turns_before:
        expected += f"\n\n{notice_text(language, Notice.CONTEXT_SUMMARIZED)}"
    await person.shows(message, expected)
    return message


def summaries_settled(service: Service, fake: FakeOpenRouter) -> bool:
    """Every summary the model was asked for has been charged and stored (or failed)."""
    ended = service.events("summary.stored") + service.events("summary.failed")
    return len(ended) >= len(summary_requests(fake))


async def test_a_small_context_model_picked_on_telegram_gets_requests_that_fit_it(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    """`tiny/model` takes 2000 tokens: the request holds within 90% of it with the answer's
    max_tokens, CONTEXT_TOKENS (16,000 by default) notwithstanding; the fake refuses (400) a
    request past it, as OpenRouter does, so every answer arriving proves it fits."""
    fake_openrouter.list_model(TINY_MODEL, context_length=TINY_CONTEXT)
    await start_bot()
    chosen = await alice.asks(f"/model {TINY_MODEL}")
    assert chosen.visible_text == f"Model set to {TINY_MODEL} for this and new conversations."

    for number in range(12):
        await talk(alice, fake_openrouter, f"q{number} {FILLER} {FILLER}", ENGLISH)

    turns = turn_requests(fake_openrouter)
    assert len(turns) == 12
    for body in turns:
        assert body["model"] == TINY_MODEL
        # 90% of 2000 is 1800: half of it for the answer, the rest for the messages.
        assert body["max_tokens"] == 900
        assert tokens_of(body) <= 900
    # The conversation outgrew the model: the last request no longer has the first question,
    # and goes on through a summary of it.
    assert all(not str(m["content"]).startswith("q0 ") for m in turns[-1]["messages"])
    assert summary_sent(turns[-1]) is not None
    assert any("q0 " in contents(body) for body in summary_requests(fake_openrouter))


async def test_usage_on_telegram_counts_the_summaries_tokens_too(
    start_bot: StartBot, alice: Person, fake_openrouter: FakeOpenRouter
) -> None:
    service = await start_bot(CONTEXT_TOKENS="256")
    number = 0
    while len(summary_requests(fake_openrouter)) < 2:
        await talk(alice, fake_openrouter, f"q{number} {FILLER}", ENGLISH)
        number += 1
        assert number < 20, "fewer than two summaries after 20 turns"

    shown, reported = await usage_once_summaries_settled(alice, service, fake_openrouter)

    prompt = sum(usage["prompt_tokens"] for usage in reported)
    completion = sum(usage["completion_tokens"] for usage in reported)
    cost = round(sum(usage["cost"] for usage in reported), COST_DIGITS)
    assert len(reported) == len(fake_openrouter.requests)  # each answer reported its usage
    totals = UsageTotals(prompt, completion, cost)
    expected = usage_text(ENGLISH, UsageReport(totals, totals, None, None))
    assert shown == expected.replace("*", "")  # bold on Telegram


async def usage_once_summaries_settled(
    person: Person, service: Service, fake: FakeOpenRouter
) -> tuple[str, list[dict[str, Any]]]:
    """What /usage shows once every summary asked for is charged, and the usages the fake
    reported by then. A summary may start after the last answer and end while /usage is read:
    then it is read again."""
    for _ in range(5):
        await until(lambda: summaries_settled(service, fake), what="the summaries stored")
        reported = list(fake.reported_usages)
        shown = (await person.asks("/usage")).visible_text
        if len(fake.reported_usages) == len(reported) and summaries_settled(service, fake):
            return shown, reported
    pytest.fail("a summary ran each time /usage was read")


async def test_telegram_says_once_in_portuguese_that_the_model_now_gets_a_summary(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_openrouter: FakeOpenRouter
) -> None:
    service = await start_bot(CONTEXT_TOKENS="256")
    joao = Person(fake_telegram, user_id=3003, username="joao", language_code="pt-br")
    number = 0
    while first_with_summary(turn_requests(fake_openrouter)) is None:
        await talk(joao, fake_openrouter, f"q{number} {FILLER}", PORTUGUESE)
        await until(lambda: summaries_settled(service, fake_openrouter), what="the summary")
        number += 1
        assert number < 20, "no request carried a summary after 20 turns"
    await talk(joao, fake_openrouter, "e agora?", PORTUGUESE)  # told once: nothing more

    told = notice_text(PORTUGUESE, Notice.CONTEXT_SUMMARIZED)
    assert told.startswith("📌 Esta conversa está longa")
    shown = [m.visible_text for m in joao.bot_messages()]  # one answer a turn
    assert [i for i, answer in enumerate(shown) if told in answer] == [number - 1]
