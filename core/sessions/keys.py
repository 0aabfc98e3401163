"""Session ids and Redis key names (the layout is explained in docs/data-model.md).

Every key of a user — their session index, their state, and every key of each of their
sessions — carries the same Redis Cluster hash tag, derived from the user id. A session id
begins with that tag, so a session is found from its id alone and every script touches one
slot only.

No two keys coincide, whatever the user ids (any text: `:`, `{`, `}` included), by how a name
is laid out rather than by luck of the tag:

    user:<kind>:{T}:<userId>         the kind first, the user id last and whole
    session:{T}:<sessionId><suffix>  a session id is always 32 hex digits

A user key's kind (one of USER_KEY_KINDS; a day's counter carries its day: `tokens:<day>`,
`usage:<day>`)
holds no `{`, and the tag is 4 hex digits: reading a name from the left finds the kind up to
the first `:{`, then the tag, and everything after is the user id, whole. One name, one
reading: two different (kind, day, user) never share a name, whatever the tags. The kinds here
and those the Lua scripts pass to `user_key` (core/sessions/lua/lib.lua) are the same list.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from core.errors import SessionNotFound
from core.spaces import person_of_space

TAG_LENGTH = 4
SESSION_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")

# A user's keys, one kind each (docs/data-model.md, "Keys").
INDEX = "sessions"  # sorted set: their session ids by last activity
STATE = "state"  # hash: the active session, the /model choice
TURNS = "turns"  # sorted set: their turns of the last RATE_LIMIT_WINDOW
TOKENS = "tokens"  # string, one per UTC day: tokens spent that day
SEEN = "seen"  # string: the space took a turn lately (outlives its sessions: told they expired)
USAGE = "usage"  # hash, one per UTC day, kept 31 days: tokens and cost the model reported
USER_KEY_KINDS = (INDEX, STATE, TURNS, TOKENS, SEEN, USAGE)
DAY_KINDS = (TOKENS, USAGE)  # the kinds whose name carries a day


def user_tag(user_id: str) -> str:
    """Four hex digits: enough to spread users over all 16,384 slots, too few to identify one.

    A person's space in a group chat has the person's tag (core/spaces.py): its turns check
    the person's rate limit and budget in the same slot."""
    return hashlib.sha256(person_of_space(user_id).encode()).hexdigest()[:TAG_LENGTH]


def new_session_id(user_id: str) -> str:
    return user_tag(user_id) + secrets.token_hex(14)


def tag_of_session(session_id: str) -> str:
    """The hash tag inside a session id; a malformed id is a session that does not exist."""
    if not SESSION_ID_PATTERN.match(session_id):
        raise SessionNotFound()
    return session_id[:TAG_LENGTH]


def session_key(session_id: str, suffix: str = "") -> str:
    return f"session:{{{tag_of_session(session_id)}}}:{session_id}{suffix}"


def user_key(kind: str, user_id: str, tag: str) -> str:
    """`user:<kind>:{<tag>}:<userId>`, as lib.lua's `user_key` builds it; `kind` is one of
    USER_KEY_KINDS, or `tokens:<day>` / `usage:<day>`."""
    return f"user:{kind}:{{{tag}}}:{user_id}"


def user_index_key(user_id: str) -> str:
    return user_key(INDEX, user_id, user_tag(user_id))


def user_state_key(user_id: str) -> str:
    return user_key(STATE, user_id, user_tag(user_id))


def user_seen_key(user_id: str) -> str:
    """The space's mark of a recent turn, which outlives its sessions (written by the Lua
    scripts only): a turn that finds none left while it lasts tells they expired."""
    return user_key(SEEN, user_id, user_tag(user_id))


def user_turns_key(user_id: str) -> str:
    """The user's turns of the last RATE_LIMIT_WINDOW (written by the Lua scripts only)."""
    return user_key(TURNS, user_id, user_tag(user_id))


def user_tokens_key(user_id: str, utc_day: int) -> str:
    """Tokens the user spent on one UTC day, numbered from 1970-01-01 (the Lua scripts write it)."""
    return user_key(f"{TOKENS}:{utc_day}", user_id, user_tag(user_id))


def user_usage_key(user_id: str, utc_day: int) -> str:
    """What the person's turns cost on one UTC day, as reported (the Lua scripts write it)."""
    return user_key(f"{USAGE}:{utc_day}", user_id, user_tag(user_id))
