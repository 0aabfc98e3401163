"""Every session straight from Redis, checked for being whole (docs/data-model.md's layout).

A session is whole when its hash has every field, its owner's index lists it, its message list
holds entries with strictly increasing sequence numbers ending at the hash's `seq`, and none of
its keys lives without an expiry. A message list or an index entry without its session hash is
a half-written session too. Read with SCAN: fine for tests, never done by the service.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from core.sessions.codec import TOKENS_UNIT
from core.sessions.keys import session_key, user_index_key, user_state_key, user_tag

SESSION_FIELDS = ("userId", "title", "model", "createdAt", "updatedAt", "seq")
SESSION_KEY = re.compile(
    r"^session:\{(?P<tag>[0-9a-f]{4})\}:(?P<sid>[0-9a-f]{32})(?P<suffix>:.+)?$"
)
INDEX_KEY = re.compile(r"user:sessions:\{[0-9a-f]{4}\}:(?P<uid>.+)", re.DOTALL)
# Role numbers (codec.py's ROLE_NUMBERS; 3: a stopped answer), and letters of the first layout.
ROLE_NAMES = {0: "user", 1: "assistant", 2: "system", 3: "assistant"} | {
    "u": "user",
    "a": "assistant",
    "s": "system",
}


def role_name(kind: int | str) -> str | None:
    """The role of an entry's kind (the role number plus 4 x its tokens, or a letter)."""
    return ROLE_NAMES.get(kind % TOKENS_UNIT if isinstance(kind, int) else kind)


@dataclass
class StoredSession:
    session_id: str
    user_id: str
    fields: dict[str, str]
    entries: list[list[Any]]  # [seq, role, time, content, ...], oldest first (codec.py)
    has_lock: bool

    @property
    def conversation(self) -> list[tuple[str, str]]:
        """(role, content) of every message, oldest first."""
        return [(str(role_name(entry[1])), entry[3]) for entry in self.entries]


@dataclass
class Census:
    sessions: dict[str, StoredSession] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def by_user(self) -> dict[str, list[StoredSession]]:
        found: dict[str, list[StoredSession]] = {}
        for session in self.sessions.values():
            found.setdefault(session.user_id, []).append(session)
        return found

    def assert_whole(self) -> None:
        shown = "\n".join(self.problems[:20])
        assert not self.problems, f"{len(self.problems)} half-written session(s):\n{shown}"


async def census(redis: aioredis.Redis) -> Census:
    """Every session in the database, with what is wrong with any of them."""
    suffixes: dict[str, set[str]] = {}
    indexes: list[str] = []
    async for key in redis.scan_iter(match="session:*", count=1000):
        if match := SESSION_KEY.match(key):
            suffixes.setdefault(match["sid"], set()).add(match["suffix"] or "")
    async for key in redis.scan_iter(match="user:sessions:{*", count=1000):
        indexes.append(key)
    found = Census()
    for session_id, kinds in suffixes.items():
        if "" not in kinds:
            if ":messages" in kinds:
                found.problems.append(f"{session_id}: messages without a session hash")
            continue
        session = await _read_session(redis, session_id, ":lock" in kinds, found.problems)
        if session is not None:
            found.sessions[session_id] = session
    for index in indexes:
        match = INDEX_KEY.fullmatch(index)
        assert match is not None, index
        for session_id in await redis.zrange(index, 0, -1):
            if session_id not in found.sessions:
                found.problems.append(f"{index} lists {session_id}, which has no session hash")
    return found


async def _read_session(
    redis: aioredis.Redis, session_id: str, has_lock: bool, problems: list[str]
) -> StoredSession | None:
    fields = await redis.hgetall(session_key(session_id))
    missing = [name for name in SESSION_FIELDS if name not in fields]
    if missing:
        problems.append(f"{session_id}: session hash without {missing}")
        return None
    user_id = fields["userId"]
    session = StoredSession(
        session_id=session_id,
        user_id=user_id,
        fields=fields,
        entries=[
            json.loads(raw)
            for raw in await redis.lrange(session_key(session_id, ":messages"), 0, -1)
        ],
        has_lock=has_lock,
    )
    problems.extend(f"{session_id}: {problem}" for problem in await _problems_of(redis, session))
    return session


async def _problems_of(redis: aioredis.Redis, session: StoredSession) -> list[str]:
    problems = []
    user_id, session_id = session.user_id, session.session_id
    if user_tag(user_id) != session_id[:4]:
        problems.append(f"owner {user_id!r} has another hash tag")
    if await redis.zscore(user_index_key(user_id), session_id) is None:
        problems.append(f"not in the index of {user_id!r}")
    seqs = [int(entry[0]) for entry in session.entries]
    if any(later <= earlier for earlier, later in itertools.pairwise(seqs)):
        problems.append(f"sequence numbers out of order: {seqs}")
    if (seqs[-1] if seqs else 0) != int(session.fields["seq"]):
        problems.append(f"seq {session.fields['seq']} but the last message is {seqs[-1:]}")
    if any(role_name(entry[1]) is None for entry in session.entries):
        problems.append("a message with an unknown role")
    keys = [session_key(session_id), user_index_key(user_id), user_state_key(user_id)]
    if session.entries:
        keys.append(session_key(session_id, ":messages"))
    for key in keys:
        if await redis.pttl(key) <= 0:
            problems.append(f"{key} has no expiry (or is missing)")
    return problems
