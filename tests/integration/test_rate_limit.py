"""RATE_LIMIT_MESSAGES per RATE_LIMIT_WINDOW, per user, against a real redis-server.

Time moves by rewriting the user's turn log in Redis (see tests/integration/store_turns.py).
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from core.conversation import Role
from core.errors import NothingToRetry, RateLimited
from core.sessions.keys import user_turns_key
from core.settings import Settings
from core.storage.connection import redis_from_settings
from tests.integration.store_turns import (
    MODEL,
    begin,
    make_store,
    move_turn,
    redis_now_ms,
    snapshot,
    store_turn,
    turn_starts,
    whole_seconds_until,
)

ANA = "telegram:1"
BOB = "telegram:2"
WINDOW = 60
WINDOW_MS = WINDOW * 1000
pytestmark = pytest.mark.all_redis_topologies


@pytest.mark.parametrize("limit", [1, 3, 20])
async def test_exactly_the_limit_of_turns_start_in_a_window_and_the_next_is_refused(
    redis_client: aioredis.Redis, limit: int
):
    store = make_store(redis_client, rate_limit_messages=limit, rate_limit_window_seconds=WINDOW)
    for number in range(limit):  # below the limit, up to the last turn it allows
        await store_turn(store, ANA, f"question {number}")

    before = await redis_now_ms(redis_client)
    with pytest.raises(RateLimited) as refused:
        await store_turn(store, ANA, "one too many")
    after = await redis_now_ms(redis_client)

    (_, first_start), *_ = await turn_starts(redis_client, ANA)
    assert refused.value.retry_after in whole_seconds_until(first_start + WINDOW_MS, before, after)
    assert 0 < refused.value.retry_after <= WINDOW
    assert (refused.value.limit, refused.value.window_seconds) == (limit, WINDOW)
    assert len(await turn_starts(redis_client, ANA)) == limit


async def test_a_refused_turn_stores_nothing_locks_nothing_and_is_not_counted(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, rate_limit_messages=2)
    session_id = (await store_turn(store, ANA, "one")).session.id
    await store_turn(store, ANA, "two")
    before = await snapshot(redis_client, ANA, session_id)

    # By the user's active session (chat fronts), by the session's id (HTTP API), and /retry.
    for user, session in ((ANA, None), (None, session_id), (ANA, session_id)):
        for text in ("three", None):
            with pytest.raises(RateLimited):
                await begin(store, user, text, session)

    assert await snapshot(redis_client, ANA, session_id) == before
    assert before["lock"] is None
    assert len(before["turns"]) == 2


async def test_a_user_at_the_limit_without_a_session_gets_none_created(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, rate_limit_messages=1)
    start = await store_turn(store, ANA)
    await store.delete_session(start.session.id)

    with pytest.raises(RateLimited):
        await begin(store, ANA, "hello again")

    assert (await store.list_sessions(ANA)).sessions == ()


async def test_a_turn_leaves_the_window_exactly_one_window_after_it_started(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, rate_limit_messages=3, rate_limit_window_seconds=WINDOW)
    for _ in range(3):
        await store_turn(store, ANA)
    (oldest, _), *_ = await turn_starts(redis_client, ANA)

    # Just inside the window (5 s short of it): still counted, and the wait says so.
    started = await redis_now_ms(redis_client) - WINDOW_MS + 5_000
    await move_turn(redis_client, ANA, oldest, started)
    before = await redis_now_ms(redis_client)
    with pytest.raises(RateLimited) as refused:
        await begin(store, ANA)
    after = await redis_now_ms(redis_client)
    assert refused.value.retry_after in whole_seconds_until(started + WINDOW_MS, before, after)
    assert refused.value.retry_after <= 5

    # Exactly one window ago (by Redis's clock when the turn is asked for, or earlier): out.
    await move_turn(redis_client, ANA, oldest, await redis_now_ms(redis_client) - WINDOW_MS)
    await store_turn(store, ANA, "fits again")
    with pytest.raises(RateLimited):
        await begin(store, ANA, "but only one")
    assert oldest not in dict(await turn_starts(redis_client, ANA))


async def test_once_a_whole_window_has_passed_the_limit_is_available_again(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, rate_limit_messages=3, rate_limit_window_seconds=WINDOW)
    for _ in range(3):
        await store_turn(store, ANA)
    with pytest.raises(RateLimited):
        await begin(store, ANA)

    window_ago = await redis_now_ms(redis_client) - WINDOW_MS
    for member, _ in await turn_starts(redis_client, ANA):
        await move_turn(redis_client, ANA, member, window_ago)

    for _ in range(3):
        await store_turn(store, ANA)
    with pytest.raises(RateLimited):
        await begin(store, ANA)
    assert len(await turn_starts(redis_client, ANA)) == 3  # the old entries were dropped


async def test_the_wait_after_a_lowered_limit_lasts_until_enough_turns_have_left(
    redis_client: aioredis.Redis,
):
    generous = make_store(redis_client, rate_limit_messages=5, rate_limit_window_seconds=WINDOW)
    for _ in range(5):
        await store_turn(generous, ANA)
    now = await redis_now_ms(redis_client)
    for age_seconds, (member, _) in zip(
        (50, 40, 30, 20, 10), await turn_starts(redis_client, ANA), strict=True
    ):
        await move_turn(redis_client, ANA, member, now - age_seconds * 1000)

    # With a limit of 2, four of the five turns must leave: the fourth oldest, 20 s ago, leaves
    # in 40 s.
    strict = make_store(redis_client, rate_limit_messages=2, rate_limit_window_seconds=WINDOW)
    before = await redis_now_ms(redis_client)
    with pytest.raises(RateLimited) as refused:
        await begin(strict, ANA)
    after = await redis_now_ms(redis_client)
    fourth_start = now - 20_000
    assert refused.value.retry_after in whole_seconds_until(fourth_start + WINDOW_MS, before, after)


async def test_retry_counts_as_a_turn(redis_client: aioredis.Redis):
    store = make_store(redis_client, rate_limit_messages=2)
    await store_turn(store, ANA, "question")
    await store_turn(store, ANA, None)  # /retry

    with pytest.raises(RateLimited):
        await begin(store, ANA, None)
    with pytest.raises(RateLimited):
        await begin(store, ANA, "another question")
    assert len(await turn_starts(redis_client, ANA)) == 2


async def test_a_retry_with_nothing_to_answer_is_not_counted(redis_client: aioredis.Redis):
    store = make_store(redis_client, rate_limit_messages=1)
    await store.create_session(ANA, default_model=MODEL)
    with pytest.raises(NothingToRetry):
        await begin(store, ANA, None)
    await store_turn(store, ANA, "the one turn allowed")


async def test_turns_on_a_session_by_its_id_count_for_its_owner(redis_client: aioredis.Redis):
    store = make_store(redis_client, rate_limit_messages=2)
    session_id = (await store_turn(store, ANA, "from telegram")).session.id
    await store_turn(store, None, "from the HTTP API with the service token", session_id=session_id)

    with pytest.raises(RateLimited):
        await begin(store, ANA, "from telegram again")


async def test_each_user_has_a_limit_of_their_own(redis_client: aioredis.Redis):
    store = make_store(redis_client, rate_limit_messages=1)
    await store_turn(store, ANA)
    with pytest.raises(RateLimited):
        await begin(store, ANA)

    await store_turn(store, BOB)
    with pytest.raises(RateLimited):
        await begin(store, ANA)


async def test_concurrent_turns_of_one_user_on_two_replicas_let_exactly_the_limit_through(
    redis_client: aioredis.Redis, redis_topology_settings: Settings
):
    other_replica = redis_from_settings(redis_topology_settings)
    try:
        replicas = [
            make_store(client, rate_limit_messages=5, max_sessions_per_user=30)
            for client in (redis_client, other_replica)
        ]
        sessions = [
            (await replicas[0].create_session(ANA, default_model=MODEL)).id for _ in range(30)
        ]
        outcomes = await asyncio.gather(
            *(
                begin(replicas[number % 2], ANA, f"message {number}", session_id)
                for number, session_id in enumerate(sessions)
            ),
            return_exceptions=True,
        )
    finally:
        await other_replica.aclose()

    started = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, RateLimited)]
    assert (len(started), len(refused)) == (5, 25)
    assert len(await turn_starts(redis_client, ANA)) == 5


async def test_messages_added_through_the_api_count_as_turns_of_the_sessions_owner(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, rate_limit_messages=3, rate_limit_window_seconds=WINDOW)
    session_id = (await store_turn(store, ANA, "a turn")).session.id
    # By the owner, and by the service token (no owner given): both count for the owner.
    await store.add_message(session_id, Role.USER, "added by ana", owner=ANA)
    await store.add_message(session_id, Role.ASSISTANT, "imported")
    before = await snapshot(redis_client, ANA, session_id)

    with pytest.raises(RateLimited) as refused:
        await store.add_message(session_id, Role.SYSTEM, "one too many")
    with pytest.raises(RateLimited):
        await begin(store, ANA, "a turn too many", session_id)

    assert await snapshot(redis_client, ANA, session_id) == before  # nothing stored or counted
    assert len(before["turns"]) == 3
    assert 0 < refused.value.retry_after <= WINDOW
    assert (refused.value.limit, refused.value.window_seconds) == (3, WINDOW)
    await store_turn(store, BOB)  # the count is the owner's alone


async def test_an_added_message_leaves_the_window_like_a_turn(redis_client: aioredis.Redis):
    store = make_store(redis_client, rate_limit_messages=1, rate_limit_window_seconds=WINDOW)
    session = await store.create_session(ANA, default_model=MODEL)
    await store.add_message(session.id, Role.USER, "added")
    with pytest.raises(RateLimited):
        await store.add_message(session.id, Role.USER, "refused")

    ((member, _),) = await turn_starts(redis_client, ANA)
    await move_turn(redis_client, ANA, member, await redis_now_ms(redis_client) - WINDOW_MS - 1)
    await store.add_message(session.id, Role.USER, "in the next window")

    assert (await store.read_messages(session.id)).total == 2


async def test_a_limit_of_zero_turns_the_rate_limit_off(redis_client: aioredis.Redis):
    store = make_store(redis_client, rate_limit_messages=0, max_messages_per_session=200)
    for number in range(30):
        await store_turn(store, ANA, f"question {number}")
    session = await store.create_session(ANA, default_model=MODEL)
    for number in range(30):
        await store.add_message(session.id, Role.USER, f"added {number}")
    assert not await redis_client.exists(user_turns_key(ANA))


async def test_the_turn_log_expires_one_window_after_the_newest_turn(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, rate_limit_messages=3, rate_limit_window_seconds=WINDOW)
    await store_turn(store, ANA)
    assert WINDOW_MS - 5_000 < await redis_client.pttl(user_turns_key(ANA)) <= WINDOW_MS


async def test_a_session_made_for_a_turn_is_refused_at_the_limit_and_new_is_not(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, rate_limit_messages=1)
    await store_turn(store, ANA)

    with pytest.raises(RateLimited):
        await store.create_session(ANA, default_model=MODEL, for_turn=True)
    assert len((await store.list_sessions(ANA)).sessions) == 1

    await store.create_session(ANA, default_model=MODEL)  # /new and POST /api/sessions
    assert len((await store.list_sessions(ANA)).sessions) == 2
