"""Moves user keys of the first layout to today's names (docs/data-model.md, "Keys").

The first layout put the user id before the kind (`user:{T}:<userId>` for the state hash,
`user:{T}:<userId>:sessions`, `:turns`, `:tokens:<day>`), so an id ending in `:sessions` named
another user's index. Today's names put the kind first (`user:state:{T}:<userId>`, ...) and
never begin `user:{`, so every key that does is of the first layout, and its type and the end
of its name say which kind it is:

    hash                          the state hash of `<rest>`
    sorted set ending :sessions   the session index of what precedes it
    sorted set ending :turns      the turn log of what precedes it
    string ending :tokens:<day>   that day's token count of what precedes it

where `<rest>` is the name after `user:{T}:`, and the user id found must have the tag T.
Session keys kept their names (a session id is 32 hex digits: nothing can follow it unseen).

Every process runs this when it starts (bots/runtime.py), and `chatbridge migrate-keys` on
demand. It walks with SCAN (never KEYS) on every primary, BATCH_SIZE keys at a time: one round
trip reads their types, one moves them (`migrate_user_key.lua`, one script per key: atomic, in
the key's slot). A key moved is gone from its old name, so processes migrating at once, or a
migration run twice, move each key once; a key already at its new name (written by a process
of this version first) is merged with it, never overwritten.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import structlog

from core.errors import StoreError
from core.sessions.batches import REDIS_ERRORS, ScriptBatches, scanned_keys
from core.sessions.keys import INDEX, STATE, TOKENS, TURNS, user_tag
from core.sessions.scripts import store_error
from core.storage.connection import RedisClient

log = structlog.get_logger(__name__)

BATCH_SIZE = 500
FIRST_LAYOUT_KEYS = "user:{*"  # today's user keys begin `user:<kind>:`
FIRST_LAYOUT_KEY = re.compile(r"user:\{(?P<tag>[0-9a-f]{4})\}:(?P<rest>.*)", re.DOTALL)
TOKENS_SUFFIX = re.compile(r":tokens:(?P<day>[0-9]+)")
SCRIPT = "migrate_user_key"
# How long a process whose Redis did not answer at start waits before trying again.
RETRY_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class OldKey:
    """A key of the first layout: its name, type, owner and kind (as lib.lua's `user_key`
    takes it: ':sessions', ':state', ':turns', ':tokens:<day>')."""

    name: str
    type: str
    tag: str
    user_id: str
    kind: str


@dataclass(slots=True)
class KeyMigrationReport:
    moved: int = 0  # renamed to the new name
    merged: int = 0  # into a key already at the new name
    conflicts: int = 0  # the new name holds another type: left as they are

    @property
    def changed(self) -> int:
        return self.moved + self.merged


def old_key(name: str, key_type: str) -> OldKey | None:
    """What a key of the first layout is, from its name and type; None for any other key."""
    found = FIRST_LAYOUT_KEY.fullmatch(name)
    if found is None:
        return None
    rest = found["rest"]
    if key_type == "hash":
        user_id, kind = rest, STATE
    elif key_type == "zset" and rest.endswith(f":{INDEX}"):
        user_id, kind = rest.removesuffix(f":{INDEX}"), INDEX
    elif key_type == "zset" and rest.endswith(f":{TURNS}"):
        user_id, kind = rest.removesuffix(f":{TURNS}"), TURNS
    elif key_type == "string" and (tokens := _tokens_suffix(rest)):
        user_id, kind = rest[: tokens.start()], f"{TOKENS}:{tokens['day']}"
    else:
        return None
    if user_tag(user_id) != found["tag"]:
        return None
    return OldKey(name, key_type, found["tag"], user_id, f":{kind}")


def _tokens_suffix(rest: str) -> re.Match[str] | None:
    """`:tokens:<day>` at the end of `rest` (the user id before it may hold another)."""
    at = rest.rfind(":tokens:")
    return TOKENS_SUFFIX.fullmatch(rest, at) if at >= 0 else None


async def migrate_user_keys(redis: RedisClient, *, ttl_seconds: int) -> KeyMigrationReport:
    """Move every key of the first layout; raises StoreError when Redis fails meanwhile
    (what was moved stays moved, and the next run moves the rest)."""
    scripts = ScriptBatches(redis, [SCRIPT])
    report = KeyMigrationReport()
    async for batch in scanned_keys(redis, FIRST_LAYOUT_KEYS, BATCH_SIZE):
        found = [key for key in await _typed(redis, batch) if key is not None]
        calls = [
            (SCRIPT, key.name, (key.tag, key.user_id, key.kind, key.type, ttl_seconds))
            for key in found
        ]
        for outcome in await scripts.run_batch(calls):
            if outcome == "MOVED":
                report.moved += 1
            elif outcome == "MERGED":
                report.merged += 1
            elif outcome == "CONFLICT":
                report.conflicts += 1
    if report.changed:
        log.info("keys.migrated", moved=report.moved, merged=report.merged)
    if report.conflicts:
        log.warning("keys.migration_conflicts", keys=report.conflicts,
                    hint="keys of the first layout whose new name holds another type")  # fmt: skip
    return report


async def migrate_until_done(
    redis: RedisClient, *, ttl_seconds: int, retry_seconds: float = RETRY_SECONDS
) -> KeyMigrationReport:
    """Try until one whole run succeeds (a Redis down when the process started)."""
    while True:
        await asyncio.sleep(retry_seconds)
        try:
            return await migrate_user_keys(redis, ttl_seconds=ttl_seconds)
        except StoreError as error:
            log.info("keys.migration_postponed", reason=str(error))


async def _typed(redis: RedisClient, names: list[str]) -> list[OldKey | None]:
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.type(name)
            types = await pipe.execute()
    except REDIS_ERRORS as exc:
        raise store_error(exc) from exc
    return [
        old_key(name, kind.decode() if isinstance(kind, bytes) else kind)
        for name, kind in zip(names, types, strict=True)
    ]
