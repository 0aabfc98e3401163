"""Users written under the first key layout, as chatbridge 0.1.0 left them in Redis (or as a
Redis backup of it, RDB or AOF, brings them back): `user:{T}:<userId>` for the state hash,
`user:{T}:<userId>:sessions`, `:turns` and `:tokens:<day>`. Session keys were already what they
are today. Written with plain commands, each key with the expiry instant 0.1.0 gave it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from core.sessions.keys import (
    new_session_id,
    session_key,
    user_index_key,
    user_state_key,
    user_tag,
    user_tokens_key,
    user_turns_key,
)
from core.storage.connection import RedisClient

MODEL = "test/model"
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


@dataclass
class OldSession:
    title: str
    last_activity: int  # ms: its score in the index
    messages: list[str]  # alternately the user's and the assistant's
    id: str = ""


@dataclass
class OldUser:
    """One user's keys under the first layout; `turns` and `tokens` only when given."""

    user_id: str
    sessions: list[OldSession]
    active: int | None = 0  # index into sessions
    model: str | None = None
    turns: dict[str, int] = field(default_factory=dict)  # lock token -> start (ms)
    tokens: int | None = None  # spent today

    def state_key(self) -> str:
        return f"user:{{{user_tag(self.user_id)}}}:{self.user_id}"

    def keys(self, day: int) -> dict[str, str]:
        """The user keys written (session keys aside), each with its name today."""
        state, user_id = self.state_key(), self.user_id
        found = {state + ":sessions": user_index_key(user_id)}
        if self.active is not None or self.model is not None:
            found[state] = user_state_key(user_id)  # Redis keeps no empty hash
        if self.turns:
            found[state + ":turns"] = user_turns_key(user_id)
        if self.tokens is not None:
            found[f"{state}:tokens:{day}"] = user_tokens_key(user_id, day)
        return found


async def redis_now_ms(redis: RedisClient) -> int:
    seconds, microseconds = await redis.time()
    return int(seconds) * 1000 + int(microseconds) // 1000


async def write_first_layout(redis: RedisClient, users: list[OldUser], expires_at: int) -> None:
    """Every user's sessions and keys as 0.1.0 wrote them; sessions get their ids here."""
    now = await redis_now_ms(redis)
    day = now // DAY_MS
    for user in users:
        for session in user.sessions:
            session.id = session.id or new_session_id(user.user_id)
            await _write_session(redis, user.user_id, session, expires_at)
        index, state = user.state_key() + ":sessions", user.state_key()
        await redis.zadd(index, {s.id: s.last_activity for s in user.sessions})
        await redis.pexpireat(index, expires_at)
        fields: dict[str, Any] = {}
        if user.active is not None:
            fields["active"] = user.sessions[user.active].id
        if user.model is not None:
            fields["model"] = user.model
        if fields:
            await redis.hset(state, mapping=fields)
            await redis.pexpireat(state, expires_at)
        if user.turns:
            turns = state + ":turns"
            await redis.zadd(turns, user.turns)
            await redis.pexpireat(turns, now + HOUR_MS)
        if user.tokens is not None:
            await redis.set(f"{state}:tokens:{day}", user.tokens, pxat=(day + 1) * DAY_MS)


async def _write_session(
    redis: RedisClient, user_id: str, session: OldSession, expires_at: int
) -> None:
    key, messages = session_key(session.id), session_key(session.id, ":messages")
    await redis.hset(key, mapping={
        "userId": user_id, "title": session.title, "model": MODEL,
        "createdAt": session.last_activity - 1000, "updatedAt": session.last_activity,
        "seq": len(session.messages),
    })  # fmt: skip
    await redis.pexpireat(key, expires_at)
    if session.messages:
        await redis.rpush(messages, *(
            _compact([seq, "ua"[(seq - 1) % 2], session.last_activity - 500, content])
            for seq, content in enumerate(session.messages, start=1)
        ))  # fmt: skip
        await redis.pexpireat(messages, expires_at)


def _compact(entry: list[Any]) -> str:
    return json.dumps(entry, separators=(",", ":"), ensure_ascii=False)
