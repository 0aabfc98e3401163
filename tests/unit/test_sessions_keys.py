"""Key names cannot alias: one name, one (kind, day, user), whatever the user id.

User ids are any text: the HTTP API takes any printable id but `/` (bots/http/schema.py
USER_ID_PATTERN), and every platform id holds a `:` (`telegram:42`, `cli:ana`). The properties
below hold even if every user had the same hash tag, so they hold by how names are laid out,
not by the tag telling users apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from itertools import product

from hypothesis import assume, given
from hypothesis import strategies as st

from core.sessions.keys import (
    DAY_KINDS,
    TAG_LENGTH,
    USER_KEY_KINDS,
    new_session_id,
    session_key,
    user_index_key,
    user_key,
    user_seen_key,
    user_state_key,
    user_tag,
    user_tokens_key,
    user_turns_key,
    user_usage_key,
)

# Pieces that make ids look like other keys' names, beside any Unicode at all.
LOOKALIKE_PIECES = st.sampled_from(
    [
        ":",
        "{",
        "}",
        ":{",
        "}:",
        "user",
        "telegram",
        *USER_KEY_KINDS,
        *(f":{k}" for k in USER_KEY_KINDS),
    ]
)
USER_IDS = st.one_of(
    st.text(),
    st.lists(st.one_of(LOOKALIKE_PIECES, st.text(max_size=3)), max_size=8).map("".join),
)
DAYS = st.integers(min_value=0, max_value=10**6)
KINDS = st.sampled_from(USER_KEY_KINDS)
# (kind, day or None, user id): every key a user has.
USER_KEYS = st.tuples(KINDS, DAYS, USER_IDS).map(
    lambda drawn: (drawn[0], drawn[1] if drawn[0] in DAY_KINDS else None, drawn[2])
)
# Two keys of users whose ids differ by a tail of lookalike pieces (`X` and `X:sessions`):
# where a layout that can alias does.
LOOKALIKE_TAILS = st.lists(
    st.one_of(LOOKALIKE_PIECES, DAYS.map(":{}".format)), min_size=1, max_size=2
).map("".join)
NEIGHBOURS = st.tuples(USER_KEYS, USER_KEYS, LOOKALIKE_TAILS).map(
    lambda drawn: (drawn[0], (*drawn[1][:2], drawn[0][2] + drawn[2]))
)
KEY_PAIRS = st.one_of(st.tuples(USER_KEYS, USER_KEYS), NEIGHBOURS)
ONE_TAG = "0000"
SMALL_PIECES = [
    "a",
    ":",
    "{",
    "}",
    "}:",
    ":{",
    "1",
    ":1",
    *USER_KEY_KINDS,
    *(f":{k}" for k in USER_KEY_KINDS),
]
SMALL_DAYS = (1, 11)


def key_of(kind: str, day: int | None, user_id: str, tag: str) -> str:
    return user_key(kind if day is None else f"{kind}:{day}", user_id, tag)


def read_back(key: str) -> tuple[str, int | None, str, str]:
    """(kind, day, tag, user id), read from the left as docs/data-model.md describes a name."""
    assert key.startswith("user:")
    kind_and_day, opening, rest = key.removeprefix("user:").partition(":{")
    assert opening, key
    kind, _, day = kind_and_day.partition(":")
    tag, closing, user_id = rest[:TAG_LENGTH], rest[TAG_LENGTH : TAG_LENGTH + 2], rest[6:]
    assert closing == "}:", key
    return kind, int(day) if day else None, tag, user_id


def cluster_hash_tag(key: str) -> str:
    """What Redis Cluster hashes: between the first `{` and the first `}` after it."""
    opening = key.index("{")
    return key[opening + 1 : key.index("}", opening + 1)]


def first_layout(kind: str, day: int | None, user_id: str) -> str:
    """The names before this layout (`user:{T}:<userId>:sessions`, ...), under one tag."""
    suffix = {"sessions": ":sessions", "state": "", "turns": ":turns"}.get(kind, f":tokens:{day}")
    return f"user:{{{ONE_TAG}}}:{user_id}{suffix}"


@given(USER_KEYS)
def test_every_user_key_reads_back_as_its_kind_day_tag_and_user(drawn):
    kind, day, user_id = drawn
    key = key_of(kind, day, user_id, user_tag(user_id))
    assert read_back(key) == (kind, day, user_tag(user_id), user_id)
    assert read_back(key_of(kind, day, user_id, ONE_TAG)) == (kind, day, ONE_TAG, user_id)


@given(KEY_PAIRS)
def test_two_different_user_keys_never_share_a_name_even_under_one_tag(pair):
    first, second = pair
    assume(first != second)
    assert key_of(*first, ONE_TAG) != key_of(*second, ONE_TAG)
    assert key_of(*first, user_tag(first[2])) != key_of(*second, user_tag(second[2]))


@given(USER_IDS, DAYS)
def test_a_users_keys_are_six_names_in_the_users_slot_apart_from_every_session_key(
    user_id: str, day: int
):
    keys = [
        user_index_key(user_id),
        user_state_key(user_id),
        user_turns_key(user_id),
        user_tokens_key(user_id, day),
        user_seen_key(user_id),
        user_usage_key(user_id, day),
    ]
    assert len(set(keys)) == len(keys)
    assert {cluster_hash_tag(key) for key in keys} == {user_tag(user_id)}
    session_id = new_session_id(user_id)
    session_keys = {session_key(session_id, suffix) for suffix in ("", ":messages", ":lock")}
    assert {cluster_hash_tag(key) for key in session_keys} == {user_tag(user_id)}
    assert not session_keys & set(keys)
    assert all(key.startswith("user:") for key in keys)


def every_key_of_small_ids(key_name: Callable[[str, int | None, str], str]) -> Counter[str]:
    """Every key (all kinds, two days) of every id of up to three lookalike pieces, counted."""
    ids = {"".join(pieces) for size in range(4) for pieces in product(SMALL_PIECES, repeat=size)}
    kinds = [(kind, None) for kind in USER_KEY_KINDS if kind not in DAY_KINDS]
    kinds += [(kind, day) for kind in DAY_KINDS for day in SMALL_DAYS]
    return Counter(key_name(kind, day, user_id) for user_id in ids for kind, day in kinds)


def test_no_two_keys_of_every_small_lookalike_id_coincide_under_one_tag():
    counted = every_key_of_small_ids(lambda kind, day, user: key_of(kind, day, user, ONE_TAG))
    assert [key for key, count in counted.items() if count > 1] == []
    assert len(counted) > 10_000


def test_the_same_check_finds_the_first_layouts_collisions():
    """The check above is sharp enough: on the names before this layout it finds users whose
    keys coincide (under one tag, which SHA-256 hands out one time in 65,536)."""
    counted = every_key_of_small_ids(first_layout)
    shared = {key for key, count in counted.items() if count > 1}
    assert "user:{0000}:a:sessions" in shared  # the index of `a`, the state of `a:sessions`
    assert "user:{0000}:a:turns" in shared  # the turn log of `a`, the state of `a:turns`
    assert "user:{0000}:a:tokens:1" in shared  # day 1's tokens of `a`, the state of `a:tokens:1`
    assert "user:{0000}:a:tokens:1" in shared  # a day's tokens of `a`, the state of `a:tokens:1`
