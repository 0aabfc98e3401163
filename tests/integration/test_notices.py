"""What a reply tells besides its answer (core.conversation.Notice), on the real store: that
the space's active session had expired so the turn started a new one, and, once per session,
that older messages no longer reach the model. Both ride in the turn's two round trips.

Expiry is real Redis expiry: either a short SESSION_TTL waited out, or `let_time_pass`
(tests/redis_expiry.py), which shortens every key's time to live as the hours would.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.chat import ChatService, TurnSettings
from core.conversation import Notice
from core.errors import TurnStopped
from core.llm.openrouter import OpenRouterClient
from core.sessions.keys import session_key, user_index_key, user_seen_key, user_state_key
from core.sessions.store import SessionStore, TurnStart
from core.tokens import MESSAGE_OVERHEAD_TOKENS, count_tokens
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.integration.round_trips import CountingConnection, counting_client  # noqa: F401
from tests.integration.store_turns import MODEL, make_store
from tests.redis_expiry import let_time_pass

ANA = "telegram:1"
HOUR = 3600
WEEK = 7 * 86_400  # how long after its sessions a space's mark of a turn lasts (begin_turn.lua)
ALL_TOPOLOGIES = pytest.mark.all_redis_topologies
EXPIRED = (Notice.PREVIOUS_SESSION_EXPIRED,)
LOST = (Notice.CONTEXT_LOST,)


async def begin(
    store: SessionStore,
    text: str | None = "hello",
    *,
    user: str | None = ANA,
    session_id: str | None = None,
    context_tokens: int = 16_000,
    token: str | None = None,
) -> TurnStart:
    """A turn's first round trip (`text` None: /retry)."""
    return await store.begin_turn(
        user, text, session_id=session_id, lock_token=token or secrets.token_hex(12),
        lock_ttl_ms=30_000, context_tokens=context_tokens, default_model=MODEL,
    )  # fmt: skip


def notices_of(start: TurnStart) -> tuple[Notice, ...]:
    """What a turn that began so tells, when its context is all it was sent (as Turn does)."""
    told: list[Notice] = []
    if start.expired_after:
        told.append(Notice.PREVIOUS_SESSION_EXPIRED)
    if start.is_context_cut and not start.is_context_loss_told:
        told.append(Notice.CONTEXT_LOST)
    return tuple(told)


async def finish(store: SessionStore, start: TurnStart) -> None:
    """The turn's second round trip, telling what the turn had to tell."""
    await store.finish_turn(
        start, "answer", model=MODEL, usage=None, is_retry=False, spent_tokens=0,
        told=notices_of(start),
    )  # fmt: skip


async def turn(store: SessionStore, text: str = "hello", **options: Any) -> TurnStart:
    """A whole turn; how it began."""
    start = await begin(store, text, **options)
    await finish(store, start)
    return start


# --- the active session expired ---------------------------------------------------------------


@ALL_TOPOLOGIES
async def test_a_persons_very_first_session_tells_nothing(store: SessionStore):
    first = await turn(store)
    assert notices_of(first) == ()
    assert notices_of(await turn(store)) == ()


@ALL_TOPOLOGIES
async def test_a_message_after_the_session_expired_starts_a_new_one_and_says_after_how_long(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, ttl_seconds=HOUR)
    old = await turn(store)
    await let_time_pass(redis_client, HOUR)
    assert not await redis_client.exists(session_key(old.session.id), user_state_key(ANA))

    new = await turn(store, "back again")

    assert new.session.id != old.session.id
    assert notices_of(new) == EXPIRED
    assert new.expired_after == HOUR
    assert notices_of(await turn(store, "and again")) == ()  # told once


@ALL_TOPOLOGIES
async def test_a_session_still_alive_a_second_before_its_ttl_tells_nothing(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, ttl_seconds=HOUR)
    old = await turn(store)
    await let_time_pass(redis_client, HOUR - 1)
    same = await turn(store)
    assert same.session.id == old.session.id
    assert notices_of(same) == ()


async def test_a_session_that_really_expired_is_told_with_the_ttl_it_had(
    redis_client: aioredis.Redis,
):
    """Redis's own expiry, not let_time_pass: the space's mark outlives the session."""
    store = make_store(redis_client, ttl_seconds=1)
    old = await turn(store)
    await until_gone(redis_client, session_key(old.session.id), user_index_key(ANA))

    new = await turn(store)

    assert new.session.id != old.session.id
    assert (notices_of(new), new.expired_after) == (EXPIRED, 1)


async def until_gone(redis_client: aioredis.Redis, *keys: str, within: float = 10.0) -> None:
    """Wait until Redis has expired `keys` (each EXISTS also expires what is due)."""
    deadline = asyncio.get_running_loop().time() + within
    while await redis_client.exists(*keys):
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"not expired within {within:g} s: {keys}")
        await asyncio.sleep(0.01)


@ALL_TOPOLOGIES
@pytest.mark.parametrize(
    ("silence", "is_told"),
    [(HOUR + WEEK - 1, True), (HOUR + WEEK, False), (HOUR + WEEK + 1, False)],
    ids=["below", "at", "above"],
)
async def test_a_space_is_told_of_its_expired_session_for_a_week_after_it_expired(
    redis_client: aioredis.Redis, silence: int, is_told: bool
):
    store = make_store(redis_client, ttl_seconds=HOUR)
    await turn(store)
    await let_time_pass(redis_client, silence)
    assert notices_of(await turn(store)) == (EXPIRED if is_told else ())


@ALL_TOPOLOGIES
async def test_the_spaces_mark_expires_a_week_after_the_session_would(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, ttl_seconds=HOUR)
    await turn(store)
    assert await redis_client.get(user_seen_key(ANA)) == str(HOUR)
    assert await redis_client.pttl(user_seen_key(ANA)) > (HOUR + WEEK - 5) * 1000
    assert await redis_client.pttl(user_seen_key(ANA)) <= (HOUR + WEEK) * 1000


@ALL_TOPOLOGIES
async def test_a_session_ended_by_delete_tells_nothing(store: SessionStore):
    old = await turn(store)
    await store.delete_session(old.session.id)
    new = await turn(store)
    assert new.session.id != old.session.id
    assert notices_of(new) == ()


@ALL_TOPOLOGIES
async def test_deleting_one_of_two_sessions_keeps_the_mark_and_the_other_tells_when_it_expires(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, ttl_seconds=HOUR)
    kept = await turn(store, "first")
    doomed = await store.create_session(ANA, default_model=MODEL)  # /new: now the active one
    await store.delete_session(doomed.id)  # /delete: the first one is active again
    assert notices_of(await turn(store, "second")) == ()
    await let_time_pass(redis_client, HOUR)
    new = await turn(store, "third")
    assert new.session.id != kept.session.id
    assert notices_of(new) == EXPIRED


@ALL_TOPOLOGIES
async def test_a_session_started_by_new_tells_nothing(store: SessionStore):
    old = await turn(store)
    fresh = await store.create_session(ANA, title="Fresh", default_model=MODEL)
    start = await turn(store)
    assert start.session.id == fresh.id != old.session.id
    assert notices_of(start) == ()


@ALL_TOPOLOGIES
async def test_a_turn_naming_its_session_does_not_mark_the_space(
    redis_client: aioredis.Redis,
):
    """The HTTP API names a session in every turn: an expired one is a 404 there."""
    store = make_store(redis_client, ttl_seconds=HOUR)
    session = await store.create_session("api-user", default_model=MODEL)
    await turn(store, user=None, session_id=session.id)
    assert not await redis_client.exists(user_seen_key("api-user"))


@ALL_TOPOLOGIES
async def test_a_new_session_whose_first_turn_failed_tells_with_its_first_answer(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, ttl_seconds=HOUR)
    await turn(store)
    await let_time_pass(redis_client, HOUR)
    failed = await begin(store, "lost to a model error")
    await store.release_lock(failed.session.id, failed.lock_token)
    assert notices_of(failed) == EXPIRED

    retried = await begin(store, None)  # /retry: the new session's first answer

    assert retried.session.id == failed.session.id
    assert notices_of(retried) == EXPIRED
    await finish(store, retried)
    assert notices_of(await turn(store)) == ()


@ALL_TOPOLOGIES
async def test_a_repeated_begin_tells_what_the_first_run_told(redis_client: aioredis.Redis):
    store = make_store(redis_client, ttl_seconds=HOUR)
    await turn(store)
    await let_time_pass(redis_client, HOUR)
    token = secrets.token_hex(12)

    first = await begin(store, "lost reply", token=token)
    repeat = await begin(store, "lost reply", token=token)  # the client retrying the call

    assert repeat == first
    assert notices_of(repeat) == EXPIRED
    await finish(store, first)
    await finish(store, repeat)  # its repeat too: answers what it did
    assert notices_of(await turn(store)) == ()


# --- older messages no longer reach the model -------------------------------------------------


@ALL_TOPOLOGIES
@pytest.mark.parametrize(
    ("max_messages", "turns_without_notice"), [(6, 3), (5, 3), (4, 2)], ids=["below", "at", "above"]
)
async def test_messages_trimmed_past_max_messages_are_told_once(
    redis_client: aioredis.Redis, max_messages: int, turns_without_notice: int
):
    """The third question is the fifth message: below a cap of 6 and at one of 5 nothing is
    trimmed; at a cap of 4 the first question goes, and that turn says so."""
    store = make_store(redis_client, max_messages_per_session=max_messages)
    for number in range(1, turns_without_notice + 1):
        assert notices_of(await turn(store, f"question {number}")) == (), number
    assert notices_of(await turn(store, "first without the beginning")) == LOST
    assert notices_of(await turn(store, "and the next")) == ()


@ALL_TOPOLOGIES
@pytest.mark.parametrize(
    ("spare", "is_cut"), [(1, False), (0, False), (-1, True)], ids=["below", "at", "above"]
)
async def test_messages_past_the_context_tokens_are_left_out_and_told_once(
    store: SessionStore, spare: int, is_cut: bool
):
    """Two turns stored, then a third question: a request of the five messages' tokens (their
    counts stored with them, and each message's overhead), or one more, sends them all; one
    token less leaves the first out, and that turn says so, once."""
    words = " and more" * 30
    for number in (1, 2):
        assert notices_of(await turn(store, f"question {number}{words}")) == (), number
    session = await store.active_session(ANA)
    assert session is not None
    stored = (await store.read_messages(session.id)).messages
    contents = [message.content for message in stored] + [f"question 3{words}"]
    costs = [count_tokens(content) + MESSAGE_OVERHEAD_TOKENS for content in contents]
    start = await turn(store, f"question 3{words}", context_tokens=sum(costs) + spare)
    sent = contents[1:] if is_cut else contents
    assert [m["content"] for m in json.loads(f"[{start.encoded_context}]")] == sent
    assert start.context_tokens == sum(costs[1:] if is_cut else costs)
    assert json.loads(start.sent)[0::2] == ([2, 3, 4, 5] if is_cut else [1, 2, 3, 4, 5])
    assert notices_of(start) == (LOST if is_cut else ())
    # The next turn leaves the first out whatever the cap: told unless it was already.
    later = await turn(store, f"the next{words}", context_tokens=sum(costs) + spare)
    assert notices_of(later) == (() if is_cut else LOST)


@ALL_TOPOLOGIES
async def test_context_loss_is_told_once_per_session(redis_client: aioredis.Redis):
    store = make_store(redis_client, max_messages_per_session=2)
    await turn(store)
    assert notices_of(await turn(store)) == LOST
    other = await store.create_session(ANA, default_model=MODEL)  # /new
    assert notices_of(await turn(store)) == ()
    assert notices_of(await turn(store)) == LOST  # a session of its own: told there too
    assert (await store.active_session(ANA)).id == other.id  # type: ignore[union-attr]


@ALL_TOPOLOGIES
async def test_an_answer_that_failed_leaves_the_context_loss_to_tell(redis_client: aioredis.Redis):
    store = make_store(redis_client, max_messages_per_session=2)
    await turn(store)
    failed = await begin(store)
    await store.release_lock(failed.session.id, failed.lock_token)
    assert notices_of(failed) == LOST
    assert notices_of(await turn(store)) == LOST
    assert notices_of(await turn(store)) == ()


@ALL_TOPOLOGIES
async def test_a_repeated_finish_notes_the_loss_told_once(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, max_messages_per_session=2)
    await turn(store)
    start = await begin(store)
    await finish(store, start)
    await finish(store, start)  # the client retrying the call: the answer is kept, not stored again
    fields = await redis_client.hgetall(session_key(start.session.id))
    assert fields["toldContextLoss"] == "1"
    assert notices_of(await turn(store)) == ()


# --- through the chat service: the token budget, and the two round trips -----------------


def budget_chat(store: SessionStore, model_client: OpenRouterClient, budget: int) -> ChatService:
    settings = TurnSettings(system_prompt="", default_model=MODEL, context_tokens=budget)
    return ChatService(store, model_client, settings)


async def chat_turn(chat: ChatService, text: str) -> tuple[Notice, ...]:
    async with chat.turn(text, user_id=ANA) as started:
        _ = [delta async for delta in started.deltas()]
    return started.notices


def cost(text: str) -> int:
    return count_tokens(text) + MESSAGE_OVERHEAD_TOKENS


THREE = cost("aaaa") + cost("echo: aaaa") + cost("bbbb")


@ALL_TOPOLOGIES
@pytest.mark.parametrize(
    ("budget", "is_lost"), [(THREE + 1, False), (THREE, False), (THREE - 1, True)]
)
async def test_messages_past_the_token_budget_are_told_once(
    store: SessionStore,
    model_client: OpenRouterClient,
    fake_openrouter: FakeOpenRouter,
    budget: int,
    is_lost: bool,
):
    """`aaaa`, `echo: aaaa`, `bbbb`: THREE tokens. A budget of THREE sends them all; one less
    leaves the first question out, and that turn says so. The third turn leaves it out with
    any of them: said there unless said already, and never again."""
    chat = budget_chat(store, model_client, budget)
    assert await chat_turn(chat, "aaaa") == ()
    assert await chat_turn(chat, "bbbb") == (LOST if is_lost else ())
    sent = [m["content"] for m in fake_openrouter.requests[-1].body["messages"]]
    assert ("aaaa" in sent) is not is_lost
    assert await chat_turn(chat, "cccc") == (() if is_lost else LOST)
    assert await chat_turn(chat, "dddd") == ()


async def test_an_answer_stopped_midway_tells_nothing_and_leaves_the_loss_to_the_next(
    redis_client: aioredis.Redis, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    store = make_store(redis_client, max_messages_per_session=2)
    chat = budget_chat(store, model_client, 16_000)
    await chat_turn(chat, "first")
    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=1)
    stopped = chat.turn("second", user_id=ANA)

    async def stop_at_the_first_words() -> None:
        async with stopped:
            async for _ in stopped.deltas():
                stopped.stop()  # /stop

    try:
        with pytest.raises(TurnStopped):
            await stop_at_the_first_words()
    finally:
        gate.set()

    assert stopped.reply is not None
    assert stopped.reply.stopped  # what was shown is kept, marked stopped
    assert stopped.notices == ()
    assert await chat_turn(chat, "third") == LOST


async def test_a_turn_that_tells_both_still_costs_two_round_trips(
    counting_client: aioredis.Redis,  # noqa: F811
    model_client: OpenRouterClient,
):
    store = make_store(counting_client, ttl_seconds=HOUR, max_messages_per_session=2)
    chat = budget_chat(store, model_client, 16_000)
    await chat_turn(chat, "loads the scripts")
    await let_time_pass(counting_client, HOUR)
    await chat_turn(chat, "a new session")  # tells the expiry
    CountingConnection.writes = 0

    assert await chat_turn(chat, "its first question is trimmed now") == LOST

    assert CountingConnection.writes == 2
