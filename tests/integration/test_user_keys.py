"""Two users' keys never meet, whatever their ids (docs/data-model.md, "Keys").

The pairs below share a hash tag (the first 4 hex digits of SHA-256 of the id), so under the
first layout (`user:{T}:<userId>` for the state hash, `user:{T}:<userId>:sessions` for the
index) the second user's state hash was the first user's session index or turn log: creating a
session answered WRONGTYPE. tests/unit/test_sessions_keys.py proves the layout for every id.
"""

from __future__ import annotations

import pytest

from core.conversation import Usage
from core.sessions.keys import (
    user_index_key,
    user_seen_key,
    user_state_key,
    user_tag,
    user_tokens_key,
    user_turns_key,
    user_usage_key,
)
from core.sessions.store import SessionStore
from tests.integration.store_turns import MODEL, make_store, store_turn, today
from tests.stored_sessions import census

pytestmark = pytest.mark.all_redis_topologies

# (user, user whose id is the first's followed by the suffix of one of its keys), same tag.
SAME_TAG_PAIRS = [
    ("telegram:22285", "telegram:22285:sessions"),  # tag 5aad: state hash = the other's index
    ("telegram:248819", "telegram:248819:turns"),  # tag 3f8c: state hash = the other's turn log
]


@pytest.mark.parametrize("first_is_shorter", [True, False])
@pytest.mark.parametrize(("user", "lookalike"), SAME_TAG_PAIRS)
async def test_users_whose_ids_differ_by_a_key_suffix_keep_their_own_sessions(
    redis_client, user: str, lookalike: str, first_is_shorter: bool
):
    assert user_tag(user) == user_tag(lookalike)
    store: SessionStore = make_store(redis_client, rate_limit_messages=20, daily_token_budget=10**6)
    first, second = (user, lookalike) if first_is_shorter else (lookalike, user)
    usage = Usage(prompt_tokens=3, completion_tokens=4)

    first_turn = await store_turn(store, first, "first's question", usage=usage)
    second_turn = await store_turn(store, second, "second's question", usage=usage)
    second_own = await store.create_session(second, title="second's own", default_model=MODEL)
    await store_turn(store, first, "first again", usage=usage)

    first_sessions = await store.list_sessions(first)
    second_sessions = await store.list_sessions(second)
    assert [s.id for s in first_sessions.sessions] == [first_turn.session.id]
    assert {s.id for s in second_sessions.sessions} == {second_turn.session.id, second_own.id}
    assert second_sessions.active_id == second_own.id
    held = (await census(redis_client)).by_user()
    assert {owner: len(sessions) for owner, sessions in held.items()} == {first: 1, second: 2}


async def test_the_scripts_name_a_users_keys_as_keys_py_does(redis_client):
    """lib.lua builds the names the scripts write; keys.py the names Python reads and routes by."""
    user = "api:{ana}:sessions:state:turns:tokens:1 ✓"
    store = make_store(redis_client, rate_limit_messages=20, daily_token_budget=10**6)
    start = await store_turn(store, user, usage=Usage(prompt_tokens=3, completion_tokens=4))
    await store.set_user_model(user, "other/model")

    day = await today(redis_client)
    written = {key async for key in redis_client.scan_iter(match="user:*")}
    assert written == {
        user_index_key(user),
        user_state_key(user),
        user_turns_key(user),
        user_tokens_key(user, day),
        user_seen_key(user),
        user_usage_key(user, day),
    }
    assert await redis_client.zrange(user_index_key(user), 0, -1) == [start.session.id]
    assert await redis_client.hget(user_state_key(user), "model") == "other/model"
    assert await redis_client.get(user_tokens_key(user, day)) == "7"
