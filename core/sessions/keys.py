"""Session ids and Redis key names (the layout is explained in docs/data-model.md).

Every key of a user — their session index, their state, and every key of each of their
sessions — carries the same Redis Cluster hash tag, derived from the user id. A session id
begins with that tag, so a session is found from its id alone and every script touches one
slot only.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from core.errors import SessionNotFound

TAG_LENGTH = 4
SESSION_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


def user_tag(user_id: str) -> str:
    """Four hex digits: enough to spread users over all 16,384 slots, too few to identify one."""
    return hashlib.sha256(user_id.encode()).hexdigest()[:TAG_LENGTH]


def new_session_id(user_id: str) -> str:
    return user_tag(user_id) + secrets.token_hex(14)


def tag_of_session(session_id: str) -> str:
    """The hash tag inside a session id; a malformed id is a session that does not exist."""
    if not SESSION_ID_PATTERN.match(session_id):
        raise SessionNotFound()
    return session_id[:TAG_LENGTH]


def session_key(session_id: str, suffix: str = "") -> str:
    return f"session:{{{tag_of_session(session_id)}}}:{session_id}{suffix}"


def user_index_key(user_id: str) -> str:
    return f"user:{{{user_tag(user_id)}}}:{user_id}:sessions"


def user_state_key(user_id: str) -> str:
    return f"user:{{{user_tag(user_id)}}}:{user_id}"


def user_turns_key(user_id: str) -> str:
    """The user's turns of the last RATE_LIMIT_WINDOW (written by the Lua scripts only)."""
    return f"user:{{{user_tag(user_id)}}}:{user_id}:turns"


def user_tokens_key(user_id: str, utc_day: int) -> str:
    """Tokens the user spent on one UTC day, numbered from 1970-01-01 (the Lua scripts write it)."""
    return f"user:{{{user_tag(user_id)}}}:{user_id}:tokens:{utc_day}"
