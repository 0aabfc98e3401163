"""User keys of the first layout are moved to today's names, once, however many processes try
(core/sessions/key_migration.py), on a single Redis, a Cluster and behind Sentinel."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from bots.runtime import open_services
from core.conversation import Usage
from core.errors import DailyBudgetExhausted, RateLimited
from core.sessions.key_migration import KeyMigrationReport, migrate_until_done, migrate_user_keys
from core.sessions.keys import user_state_key, user_tokens_key, user_turns_key
from core.settings import Settings
from core.storage.connection import RedisClient, close_redis, redis_from_settings
from tests.first_layout import (
    DAY_MS,
    HOUR_MS,
    OldSession,
    OldUser,
    redis_now_ms,
    write_first_layout,
)
from tests.integration.store_turns import begin, make_store, store_turn
from tests.redis_process import RedisProcess
from tests.stored_sessions import census
from tests.waiting import until

pytestmark = pytest.mark.all_redis_topologies

TTL = 3600
BUDGET = 100
CHOSEN_MODEL = "chosen/model"


def old_users(now: int) -> list[OldUser]:
    """Users whose ids hold `:`, `{`, `}` and a key's suffix, with all their kinds of keys."""
    return [
        OldUser("telegram:42", [
            OldSession("Tides", now - 60_000, ["How do tides work?", "The Moon."]),
            OldSession("Empty", now - 30_000, []),
        ], active=0, model=CHOSEN_MODEL, turns={"t1": now - 50_000, "t2": now - 40_000}),
        OldUser("telegram:42:sessions", [OldSession("Suffix", now - 20_000, ["hi", "hello"])],
                tokens=BUDGET),
        OldUser("api:{x}:y 🙂", [OldSession("Braces", now - 10_000, ["{}"])], active=None,
                model="m/braces"),
        OldUser("cli:ana", [OldSession("Ana", now - 5_000, ["one", "two", "three"])],
                tokens=40),
    ]  # fmt: skip


async def written(redis: RedisClient) -> tuple[list[OldUser], dict[str, str]]:
    """The users above under the first layout; their user keys, each with its name today."""
    now = await redis_now_ms(redis)
    users = old_users(now)
    await write_first_layout(redis, users, now + TTL * 1000)
    return users, {old: new for user in users for old, new in user.keys(now // DAY_MS).items()}


async def every_key(redis: RedisClient) -> dict[str, Any]:
    """Each key with its type, value and expiry instant."""
    read = {
        "hash": redis.hgetall,
        "list": lambda key: redis.lrange(key, 0, -1),
        "zset": lambda key: redis.zrange(key, 0, -1, withscores=True),
        "string": redis.get,
    }
    found: dict[str, Any] = {}
    async for key in redis.scan_iter(count=500):
        kind = await redis.type(key)
        found[key] = (kind, await read[kind](key), await redis.pexpiretime(key))
    return found


async def test_sessions_written_under_the_first_layout_are_all_found_after_migrating(
    redis_client,
):
    users, renamed = await written(redis_client)
    expiry = {old: await redis_client.pexpiretime(old) for old in renamed}

    report = await migrate_user_keys(redis_client, ttl_seconds=TTL)

    assert report == KeyMigrationReport(moved=len(renamed))
    assert [key async for key in redis_client.scan_iter(match="user:{*")] == []
    for old, new in renamed.items():  # before anything reads the keys and slides their expiry
        assert await redis_client.pexpiretime(new) == expiry[old], new
    (await census(redis_client)).assert_whole()
    store = make_store(redis_client, rate_limit_messages=2, daily_token_budget=BUDGET)
    for user in users:
        listing = await store.list_sessions(user.user_id)
        by_activity = sorted(user.sessions, key=lambda s: s.last_activity, reverse=True)
        assert [s.id for s in listing.sessions] == [s.id for s in by_activity]
        if user.active is not None:
            assert listing.active_id == user.sessions[user.active].id
        for session in user.sessions:
            page = await store.read_messages(session.id, owner=user.user_id)
            assert [m.content for m in page.messages] == session.messages
    # What the first layout held still counts: the /model choice, the turns, the tokens.
    created = await store.create_session("telegram:42", default_model="default/model")
    assert created.model == CHOSEN_MODEL
    with pytest.raises(RateLimited):
        await begin(store, "telegram:42", "a third turn in the window")
    with pytest.raises(DailyBudgetExhausted):
        await begin(store, "telegram:42:sessions", "over budget")


async def test_migrating_twice_changes_nothing(redis_client):
    _, renamed = await written(redis_client)
    first = await migrate_user_keys(redis_client, ttl_seconds=TTL)
    after_first = await every_key(redis_client)

    second = await migrate_user_keys(redis_client, ttl_seconds=TTL)

    assert first.moved == len(renamed)
    assert second == KeyMigrationReport()
    assert await every_key(redis_client) == after_first


async def test_replicas_starting_at_once_move_each_key_once(
    redis_client, redis_topology_settings: Settings
):
    many = [
        OldUser(f"telegram:{n}", [OldSession(f"#{n}", 1_000 + n, ["q", "a"])], model="m/x")
        for n in range(300)
    ]
    now = await redis_now_ms(redis_client)
    await write_first_layout(redis_client, many, now + TTL * 1000)
    clients = [redis_from_settings(redis_topology_settings) for _ in range(3)]
    try:
        reports = await asyncio.gather(
            *(migrate_user_keys(client, ttl_seconds=TTL) for client in clients)
        )
    finally:
        for client in clients:
            await close_redis(client)

    assert sum(report.moved for report in reports) == 2 * len(many)
    assert sum(report.merged + report.conflicts for report in reports) == 0
    assert [key async for key in redis_client.scan_iter(match="user:{*")] == []
    store = make_store(redis_client)
    for user in many:
        assert [s.id for s in (await store.list_sessions(user.user_id)).sessions] == [
            user.sessions[0].id
        ]


async def test_a_user_back_before_the_migration_keeps_old_and_new_merged(redis_client):
    """A process of this version served the user before the migration reached their keys."""
    now = await redis_now_ms(redis_client)
    old = OldUser("telegram:7", [OldSession("Before", now - 60_000, ["old q", "old a"])],
                  model=CHOSEN_MODEL, turns={"old-turn": now - 30_000}, tokens=40)  # fmt: skip
    await write_first_layout(redis_client, [old], now + TTL * 1000)
    store = make_store(redis_client, rate_limit_messages=20, daily_token_budget=10**6)
    new = await store_turn(store, "telegram:7", "new q", usage=Usage(3, 4))
    assert new.session.id != old.sessions[0].id  # the old sessions were out of its sight

    report = await migrate_user_keys(redis_client, ttl_seconds=TTL)

    assert report == KeyMigrationReport(merged=4)  # index, state, turns, today's tokens
    listing = await store.list_sessions("telegram:7")
    assert [s.id for s in listing.sessions] == [new.session.id, old.sessions[0].id]
    assert listing.active_id == new.session.id  # the newer choice wins
    assert await redis_client.hget(user_state_key("telegram:7"), "model") == CHOSEN_MODEL
    day = now // DAY_MS
    assert int(await redis_client.get(user_tokens_key("telegram:7", day))) == 47
    assert await redis_client.pexpiretime(user_tokens_key("telegram:7", day)) == (day + 1) * DAY_MS
    turns = await redis_client.zrange(user_turns_key("telegram:7"), 0, -1)
    assert set(turns) == {"old-turn", new.lock_token}
    assert 0 < await redis_client.pttl(user_turns_key("telegram:7")) <= HOUR_MS
    (await census(redis_client)).assert_whole()


async def test_every_start_of_the_service_migrates_before_serving(
    redis_client, redis_topology_settings: Settings
):
    users, renamed = await written(redis_client)

    async with open_services(redis_topology_settings) as services:
        listing = await services.store.list_sessions("telegram:42")

    assert services.key_migration == KeyMigrationReport(moved=len(renamed))
    assert [s.id for s in listing.sessions] == [s.id for s in reversed(users[0].sessions)]


async def test_a_redis_down_at_start_is_migrated_once_it_answers(tmp_path: Path):
    server = RedisProcess(tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    server.start()
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        _, renamed = await written(client)
        server.stop()
        with capture_logs() as logs:
            later = asyncio.create_task(
                migrate_until_done(client, ttl_seconds=TTL, retry_seconds=0.05)
            )
            await until(lambda: any(
                log["event"] == "keys.migration_postponed" for log in logs
            ), what="a failed attempt")  # fmt: skip
            server.start()  # the same port and directory: it loads its AOF
            report = await asyncio.wait_for(later, 30)
        assert report == KeyMigrationReport(moved=len(renamed))
        assert all([await client.exists(new) for new in renamed.values()])
    finally:
        await client.aclose()
        server.stop()
