"""What a key of the first layout is, from its name and type (core/sessions/key_migration.py)."""

from __future__ import annotations

import pytest

from core.sessions.key_migration import OldKey, old_key
from core.sessions.keys import user_index_key, user_state_key, user_tag


def first(user_id: str, suffix: str = "") -> str:
    return f"user:{{{user_tag(user_id)}}}:{user_id}{suffix}"


@pytest.mark.parametrize(
    ("user_id", "suffix", "key_type", "kind"),
    [
        ("telegram:42", ":sessions", "zset", ":sessions"),
        ("telegram:42", "", "hash", ":state"),
        ("telegram:42:sessions", "", "hash", ":state"),  # a hash is a state, whatever its end
        ("telegram:42", ":turns", "zset", ":turns"),
        ("telegram:42:turns", ":sessions", "zset", ":sessions"),
        ("telegram:42", ":tokens:20001", "string", ":tokens:20001"),
        ("a:tokens:1", ":tokens:20001", "string", ":tokens:20001"),
        ("api:{x}:y 🙂\n", ":sessions", "zset", ":sessions"),
        ("", "", "hash", ":state"),
    ],
)
def test_a_first_layout_key_is_its_type_and_the_end_of_its_name(
    user_id: str, suffix: str, key_type: str, kind: str
):
    name = first(user_id, suffix)
    assert old_key(name, key_type) == OldKey(name, key_type, user_tag(user_id), user_id, kind)


@pytest.mark.parametrize(
    ("name", "key_type"),
    [
        (first("telegram:42", ":sessions"), "list"),  # no user key is a list
        (first("telegram:42", ":messages"), "zset"),  # a sorted set ends :sessions or :turns
        (first("telegram:42", ":tokens:x1"), "string"),  # a day is digits
        (first("telegram:42", ":tokens:\u0661"), "string"),  # ASCII digits only
        ("user:{0000}:telegram:42", "hash"),  # not that user's tag
        (user_index_key("telegram:42"), "zset"),  # today's names
        (user_state_key("telegram:42"), "hash"),
        ("session:{0000}:" + "0" * 32, "hash"),
    ],
)
def test_any_other_key_is_left_alone(name: str, key_type: str):
    assert old_key(name, key_type) is None
