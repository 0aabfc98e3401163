"""A turn's context as begin_turn.lua hands it over: the model's messages already encoded as
request JSON, sized by the token counts stored with each message (core/sessions/codec.py,
the entry's kind), read from the stored entries without decoding them.

What is proven here, on the real store: whatever a message holds (quotes, backslashes, any
Unicode, text that looks like the entry's own JSON) reaches the model exactly as stored; the
context holds the newest messages whose counts fit the request's tokens beside the system
prompt (global or the session's own) and the summary — at, below and above the boundary;
entries stored before counts were (kind 0..3) are counted as a token per three bytes.
"""

from __future__ import annotations

import json
import math
import secrets

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.conversation import Role
from core.sessions.keys import session_key
from core.sessions.store import SessionStore, TurnStart
from core.storage.connection import RedisClient
from core.summaries import summary_tokens
from core.tokens import MESSAGE_OVERHEAD_TOKENS, count_tokens
from tests.integration.store_turns import MODEL

ANA = "telegram:7"
BOUNDARY = pytest.mark.parametrize(
    ("spare", "is_cut"), [(1, False), (0, False), (-1, True)], ids=["below", "at", "above"]
)
# Text a user may send that an entry's JSON could be confused by.
TRICKY = (
    'say "hi"',
    "back\\slash",
    "ends with a backslash\\",
    '\\"',
    '"]]]',
    "]]]",
    "😀 emoji",
    'x\\\\"y',
    '[1,0,0,"fake"]',
    "olá, tudo bem?",
    "\u2028line\u2029",
    "/path/to",
    "\x7f",
)


def cost(text: str) -> int:
    return count_tokens(text) + MESSAGE_OVERHEAD_TOKENS


async def begin(
    store: SessionStore, text: str | None, *, context_tokens: int = 16_000, prompt_tokens: int = 0
) -> TurnStart:
    return await store.begin_turn(
        ANA, text, session_id=None, lock_token=secrets.token_hex(12), lock_ttl_ms=30_000,
        context_tokens=context_tokens, default_model=MODEL, system_prompt_tokens=prompt_tokens,
    )  # fmt: skip


async def exchange(store: SessionStore, question: str, answer: str, *, stopped: bool = False):
    start = await begin(store, question)
    await store.finish_turn(
        start, answer, model=MODEL, usage=None, is_retry=False, spent_tokens=0, stopped=stopped
    )


def sent_messages(start: TurnStart) -> list[tuple[str, str]]:
    assert start.context == ()  # no files: the messages come encoded
    return [(m["role"], m["content"]) for m in json.loads(f"[{start.encoded_context}]")]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    question=st.text(min_size=1, max_size=300).filter(str.strip),
    answer=st.text(min_size=1, max_size=300).filter(str.strip),
    stopped=st.booleans(),
)
@example(question=TRICKY[0], answer=TRICKY[1], stopped=False)
@example(question=TRICKY[2], answer=TRICKY[3], stopped=True)
@example(question=TRICKY[4], answer=TRICKY[5], stopped=False)
@example(question=TRICKY[6], answer=TRICKY[7], stopped=False)
@example(question=TRICKY[8], answer=TRICKY[9], stopped=False)
@example(question=TRICKY[10], answer=TRICKY[11], stopped=False)
async def test_whatever_a_message_holds_reaches_the_model_as_stored(
    redis_client: RedisClient, store: SessionStore, question: str, answer: str, stopped: bool
):
    await redis_client.flushdb()
    await exchange(store, question, answer, stopped=stopped)
    start = await begin(store, TRICKY[12])
    assert sent_messages(start) == [
        ("user", question), ("assistant", answer), ("user", TRICKY[12])
    ]  # fmt: skip
    assert start.context_tokens == cost(question) + cost(answer) + cost(TRICKY[12])
    assert json.loads(start.sent)[0::2] == [1, 2, 3]


async def test_a_system_message_added_through_the_api_is_sent_as_one(store: SessionStore):
    await exchange(store, "first", "reply")
    session = await store.active_session(ANA)
    assert session is not None
    await store.add_message(session.id, Role.SYSTEM, 'Answer in "French".')
    assert sent_messages(await begin(store, "next")) == [
        ("user", "first"), ("assistant", "reply"), ("system", 'Answer in "French".'),
        ("user", "next"),
    ]  # fmt: skip


@BOUNDARY
async def test_the_messages_that_fit_beside_the_global_system_prompt_are_sent(
    store: SessionStore, spare: int, is_cut: bool
):
    """The global SYSTEM_PROMPT takes what the caller says it does (its count and overhead)."""
    await exchange(store, "one two three", "four five six")
    prompt = 17
    room = cost("one two three") + cost("four five six") + cost("seven")
    start = await begin(store, "seven", context_tokens=prompt + room + spare, prompt_tokens=prompt)
    kept = sent_messages(start)
    assert kept[0] == (("assistant", "four five six") if is_cut else ("user", "one two three"))
    assert start.is_context_cut is is_cut


@BOUNDARY
async def test_the_messages_that_fit_beside_the_sessions_own_persona_are_sent(
    store: SessionStore, spare: int, is_cut: bool
):
    """A session's persona replaces the global prompt in the count: its tokens were stored
    with it."""
    await exchange(store, "one two three", "four five six")
    session = await store.active_session(ANA)
    assert session is not None
    persona = "You are a pirate. Answer every question as a pirate would, briefly."
    await store.update_session(session.id, system_prompt=persona)
    room = cost(persona) + cost("one two three") + cost("four five six") + cost("seven")
    # The global prompt's count is not used: the session has its own.
    start = await begin(store, "seven", context_tokens=room + spare, prompt_tokens=1_000)
    assert len(sent_messages(start)) == (2 if is_cut else 3)
    assert start.is_context_cut is is_cut


@BOUNDARY
async def test_an_entry_stored_without_a_count_takes_a_token_per_three_bytes(
    store: SessionStore, redis_client: RedisClient, spare: int, is_cut: bool
):
    """Entries written before counts were stored (kind 0..3) are estimated; a persona stored
    without its count too."""
    await exchange(store, "hello", "hi")
    session = await store.active_session(ANA)
    assert session is not None
    messages = session_key(session.id, ":messages")
    old = "x" * 301  # 101 tokens by the estimate (3 bytes each, rounded up)
    await redis_client.lset(messages, 0, f'[1,0,0,"{old}"]')  # type: ignore[misc]
    await redis_client.hset(session_key(session.id), "systemPrompt", "p" * 30)  # type: ignore[misc]
    room = (10 + 4) + (101 + 4) + cost("hi") + cost("again")
    start = await begin(store, "again", context_tokens=room + spare)
    _, first_content = sent_messages(start)[0]
    assert first_content == ("hi" if is_cut else old)
    assert start.context_tokens == room - (0 if not is_cut else 105) - 14


async def test_the_counts_stored_are_the_tokens_of_each_message(
    store: SessionStore, redis_client: RedisClient
):
    """The kind packs the role and the count: role + 4 x tokens (docs/data-model.md)."""
    await exchange(store, "How do tides work?", "The moon pulls the oceans.")
    session = await store.active_session(ANA)
    assert session is not None
    entries = [
        json.loads(raw)
        for raw in await redis_client.lrange(session_key(session.id, ":messages"), 0, -1)  # type: ignore[misc]
    ]
    assert [entry[1] for entry in entries] == [
        0 + 4 * count_tokens("How do tides work?"),
        1 + 4 * count_tokens("The moon pulls the oceans."),
    ]
    assert math.floor(entries[1][1] / 4) == count_tokens("The moon pulls the oceans.")


@BOUNDARY
async def test_the_messages_that_fit_beside_the_summary_are_sent(
    store: SessionStore, spare: int, is_cut: bool
):
    """A summary stands in for the first exchange: the rest fits beside it by its stored count
    (as a turn sends it, preface included)."""
    await exchange(store, "My cat is called Tom.", "Noted.")
    await exchange(store, "one two three", "four five six")
    session = await store.active_session(ANA)
    assert session is not None
    summary = "The user's cat is called Tom."
    token = secrets.token_hex(12)
    source = await store.summaries.claim(session.id, token, up_to=2)
    assert source is not None
    assert await store.summaries.save(
        session.id, token, source, 2, summary, tokens=summary_tokens(summary)
    )
    room = summary_tokens(summary) + MESSAGE_OVERHEAD_TOKENS
    room += cost("one two three") + cost("four five six") + cost("seven")
    start = await begin(store, "seven", context_tokens=room + spare)
    assert start.summary == summary
    sent = [content for _, content in sent_messages(start)]
    assert sent == (
        ["four five six", "seven"] if is_cut else ["one two three", "four five six", "seven"]
    )
    assert start.is_context_cut is is_cut
