"""What the turn-limit tests share: turns straight on the store, and time read from Redis.

Time is never the test's own clock: waits are checked against Redis's `TIME`, read just before
and just after the call that answered them, and windows are moved by rewriting the scores of a
user's turn log (as if the turns had started earlier), never by sleeping.
"""

from __future__ import annotations

import json
import math
import secrets
from typing import Any

import redis.asyncio as aioredis

from core.conversation import Usage
from core.sessions.keys import (
    session_key,
    user_index_key,
    user_state_key,
    user_tokens_key,
    user_turns_key,
)
from core.sessions.limits import SessionLimits
from core.sessions.store import SessionStore, TurnStart

MODEL = "test/model"
DAY_MS = 86_400_000


def make_store(redis_client: aioredis.Redis, **limits: Any) -> SessionStore:
    return SessionStore(redis_client, SessionLimits(**limits))


async def begin(
    store: SessionStore, user: str | None, text: str | None = "hello", session_id: str | None = None
) -> TurnStart:
    """A turn's first round trip (`text` None: /retry), with a lock token of its own."""
    return await store.begin_turn(
        user,
        text,
        session_id=session_id,
        lock_token=secrets.token_hex(12),
        lock_ttl_ms=30_000,
        context_tokens=16_000,
        default_model=MODEL,
    )


def sent_contents(start: TurnStart) -> list[str]:
    """The contents of the messages a turn's context holds, oldest first: encoded by
    begin_turn.lua, or as entries when one has files."""
    if start.context:
        return [entry.content for entry in start.context]
    return [message["content"] for message in json.loads(f"[{start.encoded_context}]")]


async def store_turn(
    store: SessionStore,
    user: str | None,
    text: str | None = "hello",
    *,
    session_id: str | None = None,
    usage: Usage | None = None,
) -> TurnStart:
    """A whole turn on the store: begin, then the answer (with `usage`, the tokens it spent),
    as ChatService does."""
    start = await begin(store, user, text, session_id)
    spent = usage.total_tokens if usage is not None else 0
    await store.finish_turn(
        start, "answer", model=MODEL, usage=usage, is_retry=text is None, spent_tokens=spent
    )
    return start


async def redis_now_ms(redis_client: aioredis.Redis) -> int:
    seconds, microseconds = await redis_client.time()
    return int(seconds) * 1000 + int(microseconds) // 1000


async def today(redis_client: aioredis.Redis) -> int:
    """The UTC day number (days since 1970-01-01) by Redis's clock."""
    return await redis_now_ms(redis_client) // DAY_MS


def whole_seconds_until(moment_ms: int, before_ms: int, after_ms: int) -> range:
    """The retry-after (whole seconds, rounded up) a wait until `moment_ms` may be, when it was
    measured between Redis times `before_ms` and `after_ms`."""
    return range(
        max(1, math.ceil((moment_ms - after_ms) / 1000)),
        max(1, math.ceil((moment_ms - before_ms) / 1000)) + 1,
    )


async def turn_starts(redis_client: aioredis.Redis, user: str) -> list[tuple[str, float]]:
    """The user's turn log, oldest first: (member, start ms)."""
    return await redis_client.zrange(user_turns_key(user), 0, -1, withscores=True)


async def move_turn(redis_client: aioredis.Redis, user: str, member: str, to_ms: int) -> None:
    """As if that turn had started at `to_ms`."""
    await redis_client.zadd(user_turns_key(user), {member: to_ms})


async def spend(redis_client: aioredis.Redis, user: str, tokens: int, *, day: int) -> None:
    await redis_client.set(user_tokens_key(user, day), tokens, px=DAY_MS)


async def snapshot(redis_client: aioredis.Redis, user: str, session_id: str) -> dict[str, Any]:
    """Everything a turn could change for this user and session."""
    return {
        "messages": await redis_client.lrange(session_key(session_id, ":messages"), 0, -1),
        "session": await redis_client.hgetall(session_key(session_id)),
        "lock": await redis_client.get(session_key(session_id, ":lock")),
        "index": await redis_client.zrange(user_index_key(user), 0, -1, withscores=True),
        "state": await redis_client.hgetall(user_state_key(user)),
        "turns": await turn_starts(redis_client, user),
        "tokens": await redis_client.get(user_tokens_key(user, await today(redis_client))),
    }
