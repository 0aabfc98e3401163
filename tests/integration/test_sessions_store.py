"""The session store against a real redis-server: limits, expiry, concurrency, isolation."""

from __future__ import annotations

import asyncio
import json
import secrets

import pytest
import redis.asyncio as aioredis

from core.conversation import Role, Usage
from core.errors import (
    EmptyMessage,
    MessageTooLong,
    NothingToRetry,
    SessionBusy,
    SessionLimitReached,
    SessionNotFound,
)
from core.sessions.keys import (
    session_key,
    user_index_key,
    user_seen_key,
    user_state_key,
    user_turns_key,
)
from core.sessions.limits import SessionLimits
from core.sessions.store import SessionStore
from core.settings import SessionLimitPolicy
from core.tokens import count_tokens
from tests.integration.store_turns import sent_contents
from tests.redis_process import free_port

MODEL = "test/model"
pytestmark = pytest.mark.all_redis_topologies


def make_store(redis_client: aioredis.Redis, **limits: object) -> SessionStore:
    return SessionStore(redis_client, SessionLimits(**limits))  # type: ignore[arg-type]


async def begin(store: SessionStore, user: str, text: str | None, session_id: str | None = None):
    return await store.begin_turn(
        user,
        text,
        session_id=session_id,
        lock_token=secrets.token_hex(12),  # a token names one turn
        lock_ttl_ms=30_000,
        context_tokens=16_000,
        default_model=MODEL,
    )


# --- sessions per user -------------------------------------------------------------------


@pytest.mark.parametrize("existing", [0, 1, 4])
async def test_creating_a_session_below_the_limit_succeeds(store: SessionStore, existing: int):
    for _ in range(existing):
        await store.create_session("cli:ana", default_model=MODEL)
    created = await store.create_session("cli:ana", title="next", default_model=MODEL)
    listing = await store.list_sessions("cli:ana")
    assert len(listing.sessions) == existing + 1
    assert listing.active_id == created.id


async def test_creating_a_sixth_session_is_refused_when_limit_is_five(store: SessionStore):
    for _ in range(5):
        await store.create_session("cli:ana", default_model=MODEL)
    with pytest.raises(SessionLimitReached) as refused:
        await store.create_session("cli:ana", default_model=MODEL)
    assert refused.value.params["limit"] == 5
    assert len((await store.list_sessions("cli:ana")).sessions) == 5


async def test_evict_oldest_policy_deletes_the_least_recent_session(
    redis_client: aioredis.Redis,
):
    store = make_store(
        redis_client, max_sessions_per_user=2, policy=SessionLimitPolicy.EVICT_OLDEST
    )
    first = await store.create_session("cli:ana", title="first", default_model=MODEL)
    second = await store.create_session("cli:ana", title="second", default_model=MODEL)
    await store.append_message(first.id, Role.USER, "keeps first recent")
    third = await store.create_session("cli:ana", title="third", default_model=MODEL)
    ids = [s.id for s in (await store.list_sessions("cli:ana")).sessions]
    assert ids == [third.id, first.id]
    assert not await redis_client.exists(
        session_key(second.id), session_key(second.id, ":messages")
    )


async def test_fifty_concurrent_creates_never_exceed_the_limit(store: SessionStore):
    results = await asyncio.gather(
        *(store.create_session("cli:ana", default_model=MODEL) for _ in range(50)),
        return_exceptions=True,
    )
    created = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, SessionLimitReached)]
    assert len(created) == 5
    assert len(refused) == 45
    assert len((await store.list_sessions("cli:ana")).sessions) == 5


async def test_expired_sessions_free_their_slot(redis_client: aioredis.Redis):
    store = make_store(redis_client, max_sessions_per_user=1)
    gone = await store.create_session("cli:ana", default_model=MODEL)
    await redis_client.delete(session_key(gone.id))  # what expiry does to an idle session
    fresh = await store.create_session("cli:ana", default_model=MODEL)
    listing = await store.list_sessions("cli:ana")
    assert [s.id for s in listing.sessions] == [fresh.id]
    assert await redis_client.zscore(user_index_key("cli:ana"), gone.id) is None


# --- messages per session ----------------------------------------------------------------


@pytest.mark.parametrize(("appended", "held"), [(3, 3), (4, 4), (5, 4)])
async def test_messages_are_capped_keeping_the_newest(
    redis_client: aioredis.Redis, appended: int, held: int
):
    store = make_store(redis_client, max_messages_per_session=4)
    session = await store.create_session("cli:ana", default_model=MODEL)
    for number in range(appended):
        await store.append_message(session.id, Role.USER, f"message {number}")
    page = await store.read_messages(session.id)
    assert page.total == held
    assert [m.content for m in page.messages] == [
        f"message {n}" for n in range(appended - held, appended)
    ]


async def test_fifty_concurrent_appends_lose_nothing_below_the_cap(store: SessionStore):
    session = await store.create_session("cli:ana", default_model=MODEL)
    await asyncio.gather(*(store.append_message(session.id, Role.USER, f"m{n}") for n in range(50)))
    page = await store.read_messages(session.id, limit=100)
    assert sorted(m.content for m in page.messages) == sorted(f"m{n}" for n in range(50))
    assert len({m.id for m in page.messages}) == 50


async def test_fifty_concurrent_appends_keep_the_cap(redis_client: aioredis.Redis):
    store = make_store(redis_client, max_messages_per_session=10)
    session = await store.create_session("cli:ana", default_model=MODEL)
    messages = await asyncio.gather(
        *(store.append_message(session.id, Role.USER, f"m{n}") for n in range(50))
    )
    page = await store.read_messages(session.id, limit=100)
    newest_ids = [m.id for m in sorted(messages, key=lambda m: int(m.id.rsplit("-", 1)[1]))][-10:]
    assert [m.id for m in page.messages] == newest_ids


# --- message length ----------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 3999, 4000])
async def test_a_message_up_to_the_length_limit_is_stored(store: SessionStore, length: int):
    session = await store.create_session("cli:ana", default_model=MODEL)
    await store.append_message(session.id, Role.USER, "é" * length)
    assert (await store.read_messages(session.id)).messages[0].content == "é" * length


async def test_a_message_over_the_length_limit_is_refused_and_nothing_is_stored(
    store: SessionStore,
):
    session = await store.create_session("cli:ana", default_model=MODEL)
    with pytest.raises(MessageTooLong) as refused:
        await store.append_message(session.id, Role.USER, "x" * 4001)
    assert refused.value.params == {"length": 4001, "limit": 4000}
    assert (await store.read_messages(session.id)).total == 0
    with pytest.raises(MessageTooLong):
        await begin(store, "cli:ana", "x" * 4001)
    assert (await store.read_messages(session.id)).total == 0


@pytest.mark.parametrize("blank", ["", "   ", "\n\t"])
async def test_a_blank_message_is_refused(store: SessionStore, blank: str):
    with pytest.raises(EmptyMessage):
        await begin(store, "cli:ana", blank)
    assert (await store.list_sessions("cli:ana")).sessions == ()


async def test_assistant_replies_may_exceed_the_user_length_limit(store: SessionStore):
    session = await store.create_session("cli:ana", default_model=MODEL)
    await store.append_message(session.id, Role.ASSISTANT, "y" * 9000, model=MODEL)
    assert (await store.read_messages(session.id)).messages[0].content == "y" * 9000


# --- expiry ------------------------------------------------------------------------------


async def test_every_key_has_a_ttl_and_activity_slides_it(redis_client: aioredis.Redis):
    store = make_store(redis_client, ttl_seconds=100)
    turn = await begin(store, "cli:ana", "hello")
    await store.append_message(
        turn.session.id, Role.ASSISTANT, "hi", model=MODEL, lock_token=turn.lock_token
    )
    every_key = [key async for key in redis_client.scan_iter(match="*")]
    assert all([await redis_client.ttl(key) > 0 for key in every_key])
    turns_key, seen_key = user_turns_key("cli:ana"), user_seen_key("cli:ana")
    assert {turns_key, seen_key} <= set(every_key)
    # The turn log expires with its own window (tests/integration/test_turn_limits.py), the
    # turn's record a minute after the turn (test_lost_replies.py), the space's mark of a turn
    # a week after its sessions (test_notices.py).
    keys = [
        key
        for key in every_key
        if not key.startswith(("stats:", "call:")) and key not in (turns_key, seen_key)
    ]
    assert len(keys) == 4  # session hash, its messages, the user's index and state
    for key in keys:
        await redis_client.expire(key, 5)
    await store.read_messages(turn.session.id)
    for key in keys:
        assert 95 <= await redis_client.ttl(key) <= 100, key


async def test_the_turn_lock_expires_by_itself(store: SessionStore, redis_client: aioredis.Redis):
    turn = await begin(store, "cli:ana", "hello")
    assert 0 < await redis_client.pttl(session_key(turn.session.id, ":lock")) <= 30_000


# --- turns -------------------------------------------------------------------------------


async def test_a_first_message_creates_a_session_titled_by_it(store: SessionStore):
    turn = await begin(store, "cli:ana", "\n  How do tides work?\nAnd why?")
    assert turn.session.title == "How do tides work?"
    assert turn.session.model == MODEL
    assert sent_contents(turn) == ["\n  How do tides work?\nAnd why?"]


async def test_a_turn_holds_the_session_until_its_reply_is_stored(store: SessionStore):
    turn = await begin(store, "cli:ana", "one")
    with pytest.raises(SessionBusy):
        await begin(store, "cli:ana", "two")
    await store.append_message(
        turn.session.id, Role.ASSISTANT, "reply", model=MODEL, lock_token=turn.lock_token
    )
    second = await begin(store, "cli:ana", "two")
    assert sent_contents(second) == ["one", "reply", "two"]


async def test_a_busy_session_stores_nothing(store: SessionStore):
    turn = await begin(store, "cli:ana", "one")
    with pytest.raises(SessionBusy):
        await begin(store, "cli:ana", "two")
    assert (await store.read_messages(turn.session.id)).total == 1


async def test_a_message_added_while_a_turn_holds_the_session_is_refused_and_lands_after_it(
    store: SessionStore, redis_client: aioredis.Redis
):
    turn = await begin(store, "cli:ana", "question")
    lock = session_key(turn.session.id, ":lock")
    for role in Role:  # the HTTP API's door, whatever the role
        with pytest.raises(SessionBusy):
            await store.add_message(turn.session.id, role, "between", owner="cli:ana")
    assert await redis_client.get(lock) == turn.lock_token  # neither taken nor released

    await store.finish_turn(turn, "answer", model=MODEL, usage=None, is_retry=False, spent_tokens=0)
    added = await store.add_message(turn.session.id, Role.USER, "after", owner="cli:ana")

    page = await store.read_messages(turn.session.id)
    assert [(m.role, m.content) for m in page.messages] == [
        (Role.USER, "question"), (Role.ASSISTANT, "answer"), (Role.USER, "after"),
    ]  # fmt: skip
    assert page.messages[-1] == added
    assert not await redis_client.exists(lock)


async def test_a_message_added_is_held_to_its_roles_length_limit_before_redis_is_asked(
    redis_client: aioredis.Redis,
):
    store = make_store(redis_client, max_message_length=10, max_assistant_message_length=20)
    session = await store.create_session("cli:ana", default_model=MODEL)
    for role, limit in ((Role.USER, 10), (Role.SYSTEM, 10), (Role.ASSISTANT, 20)):
        await store.add_message(session.id, role, "x" * limit)
        with pytest.raises(MessageTooLong) as refused:
            await store.add_message(session.id, role, "x" * (limit + 1))
        assert refused.value.params == {"length": limit + 1, "limit": limit}
        with pytest.raises(EmptyMessage):
            await store.add_message(session.id, role, " \n")
    assert (await store.read_messages(session.id)).total == 3
    # Checked before any round trip: a store whose Redis is nowhere refuses the same way.
    nowhere = SessionStore(aioredis.Redis(port=free_port()), store.limits)
    with pytest.raises(MessageTooLong):
        await nowhere.add_message(session.id, Role.ASSISTANT, "x" * 21)


async def test_retry_reuses_the_last_user_message_and_replaces_its_answer(store: SessionStore):
    turn = await begin(store, "cli:ana", "question")
    await store.append_message(
        turn.session.id, Role.ASSISTANT, "bad answer", model=MODEL, lock_token=turn.lock_token
    )
    retry = await begin(store, "cli:ana", None)
    assert sent_contents(retry) == ["question"]
    await store.append_message(
        turn.session.id,
        Role.ASSISTANT,
        "good answer",
        model=MODEL,
        usage=Usage(prompt_tokens=3, completion_tokens=2, cost=0.001),
        lock_token=retry.lock_token,
        replaces_after_seq=retry.user_seq,
    )
    page = await store.read_messages(turn.session.id)
    assert [m.content for m in page.messages] == ["question", "good answer"]
    assert page.messages[1].usage == Usage(prompt_tokens=3, completion_tokens=2, cost=0.001)


async def test_retry_with_no_user_message_is_refused_and_unlocks(store: SessionStore):
    session = await store.create_session("cli:ana", default_model=MODEL)
    with pytest.raises(NothingToRetry):
        await begin(store, "cli:ana", None)
    await begin(store, "cli:ana", "now there is one")
    assert (await store.read_messages(session.id)).total == 1


async def test_a_stale_lock_token_does_not_release_someone_elses_lock(store: SessionStore):
    turn = await begin(store, "cli:ana", "one")
    assert not await store.release_lock(turn.session.id, "not-the-token")
    with pytest.raises(SessionBusy):
        await begin(store, "cli:ana", "two")
    assert await store.release_lock(turn.session.id, turn.lock_token)


async def test_stored_messages_are_compact(store: SessionStore, redis_client: aioredis.Redis):
    turn = await begin(store, "cli:ana", "hello")
    raw = await redis_client.lindex(session_key(turn.session.id, ":messages"), 0)
    assert json.loads(raw)[1:2] == [0 + 4 * count_tokens("hello")]  # user, and its tokens
    assert len(raw) < len("hello") + 15


# --- isolation ---------------------------------------------------------------------------


async def test_a_user_cannot_reach_another_users_session(store: SessionStore):
    theirs = await store.create_session("telegram:1", default_model=MODEL)
    with pytest.raises(SessionNotFound):
        await store.get_session(theirs.id, owner="telegram:2")
    with pytest.raises(SessionNotFound):
        await store.switch_session("telegram:2", theirs.id)
    with pytest.raises(SessionNotFound):
        await store.delete_session(theirs.id, owner="telegram:2")
    with pytest.raises(SessionNotFound):
        await store.read_messages(theirs.id, owner="telegram:2")
    with pytest.raises(SessionNotFound):
        await store.append_message(theirs.id, Role.USER, "hi", owner="telegram:2")
    with pytest.raises(SessionNotFound):
        await begin(store, "telegram:2", "hi", session_id=theirs.id)
    assert (await store.get_session(theirs.id, owner="telegram:1")).message_count == 0
    assert (await store.list_sessions("telegram:2")).sessions == ()


@pytest.mark.parametrize("bad_id", ["", "nope", "../../etc", "A" * 32, "0" * 31])
async def test_malformed_session_ids_are_not_found(store: SessionStore, bad_id: str):
    with pytest.raises(SessionNotFound):
        await store.get_session(bad_id)


# --- switching and deleting ---------------------------------------------------------------


async def test_deleting_the_active_session_activates_the_most_recent_remaining(
    store: SessionStore, redis_client: aioredis.Redis
):
    older = await store.create_session("cli:ana", title="older", default_model=MODEL)
    newer = await store.create_session("cli:ana", title="newer", default_model=MODEL)
    await store.switch_session("cli:ana", older.id)
    assert await store.delete_session(older.id, owner="cli:ana") == newer.id
    assert (await store.list_sessions("cli:ana")).active_id == newer.id
    assert not await redis_client.exists(session_key(older.id))


async def test_model_choice_applies_to_the_active_and_to_new_sessions(store: SessionStore):
    session = await store.create_session("cli:ana", default_model=MODEL)
    assert await store.set_user_model("cli:ana", "other/model") == session.id
    assert (await store.get_session(session.id)).model == "other/model"
    assert (await store.create_session("cli:ana", default_model=MODEL)).model == "other/model"


async def test_user_state_keys_have_a_ttl(store: SessionStore, redis_client: aioredis.Redis):
    await store.set_user_model("cli:ana", "other/model")
    assert 0 < await redis_client.ttl(user_state_key("cli:ana")) <= 3600


async def test_deleting_the_active_session_leaves_the_users_state_with_an_expiry(
    store: SessionStore, redis_client: aioredis.Redis
):
    kept = await store.create_session("cli:ana", default_model=MODEL)
    doomed = await store.create_session("cli:ana", default_model=MODEL)
    assert await store.delete_session(doomed.id, owner="cli:ana") == kept.id
    assert 0 < await redis_client.ttl(user_state_key("cli:ana")) <= 3600


async def test_sessions_made_in_one_millisecond_still_list_newest_first(store: SessionStore):
    made = [await store.create_session("cli:ana", default_model=MODEL) for _ in range(5)]
    listed = (await store.list_sessions("cli:ana")).sessions
    assert [s.id for s in listed] == [s.id for s in reversed(made)]


async def test_sessions_active_within_the_ttl_are_counted(store: SessionStore):
    assert await store.active_session_count() == 0
    for number in range(7):
        turn = await begin(store, f"cli:user{number}", "hello")
        await store.append_message(
            turn.session.id, Role.ASSISTANT, "hi", model=MODEL, lock_token=turn.lock_token
        )
    await store.create_session("cli:user0", default_model=MODEL)
    assert await store.active_session_count() == 8


async def test_a_session_is_renamed_by_its_owner_only(store: SessionStore):
    session = await store.create_session("cli:ana", title="old", default_model=MODEL)
    with pytest.raises(SessionNotFound):
        await store.rename_session(session.id, "stolen", owner="cli:bob")
    renamed = await store.rename_session(session.id, "new", owner="cli:ana")
    assert renamed.title == "new"
    assert (await store.get_session(session.id)).title == "new"
