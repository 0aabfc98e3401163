"""Webhook delivery across replicas, restarts and Redis outages, and session.expired.

A "replica" here is one `Webhooks` (the delivery of one process: its own consumer in every
receiver's group) on the same Redis; stopping one mid-way is what a restart or a crash leaves.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from core.events.publisher import EVENTS_STREAM_KEY, EventType, RedisEventPublisher, group_name
from core.llm.openrouter import OpenRouterClient
from core.sessions.limits import SessionLimits
from core.settings import load_settings
from core.storage.connection import RedisClient, close_redis, redis_from_settings
from tests.fakes.webhook_receiver import FakeWebhookReceiver
from tests.integration.webhook_support import (
    FAST,
    StartReplica,
    chat_with_events,
    pending,
    run_turn,
    wait_settled,
)
from tests.redis_process import RedisProcess
from tests.shipped_redis_conf import durable_redis
from tests.waiting import until


async def publish(redis: aioredis.Redis, urls: list[str], count: int) -> None:
    publisher = RedisEventPublisher(redis, urls)
    for number in range(count):
        await publisher.publish(
            EventType.SESSION_DELETED, {"sessionId": f"s{number}", "userId": "u"}
        )


# Delivery is at least once: a POST that outlives post_timeout (a loaded machine stalling FAST's
# 0.5 s while the receiver still takes it) is retried, and an attempt slower than claim_idle is
# claimed and sent again by the other replica. These tests count deliveries without faults, so
# no healthy attempt may come near either limit.
UNHURRIED = replace(FAST, post_timeout=2.0, claim_idle=5.0)


async def test_two_replicas_deliver_every_event_once_to_each_of_two_receivers(
    redis_client: aioredis.Redis,
    receiver: FakeWebhookReceiver,
    other_receiver: FakeWebhookReceiver,
    start_replica: StartReplica,
):
    urls = [receiver.url, other_receiver.url]
    first = start_replica(redis_client, urls, timing=UNHURRIED)
    second = start_replica(redis_client, urls, timing=UNHURRIED)
    await publish(redis_client, urls, 60)

    for fake in (receiver, other_receiver):
        await until(lambda fake=fake: len(fake.requests) >= 60, what="60 events at each receiver")
    await asyncio.sleep(UNHURRIED.claim_idle + 0.3)  # time for any second delivery to show up
    for fake in (receiver, other_receiver):
        assert len(fake.requests) == 60
        assert set(fake.accepted_ids().values()) == {1}
        assert all(d.is_signed_correctly for d in fake.requests)
    assert receiver.accepted_ids().keys() == other_receiver.accepted_ids().keys()
    # Both replicas took part: neither is idle while the other works.
    consumers = await redis_client.xinfo_consumers(EVENTS_STREAM_KEY, group_name(receiver.url))
    assert len(consumers) == 2
    assert first is not second


async def test_many_turns_at_once_on_two_replicas_each_reach_the_receiver_once(
    redis_client: aioredis.Redis,
    model_client: OpenRouterClient,
    receiver: FakeWebhookReceiver,
    start_replica: StartReplica,
):
    start_replica(redis_client, [receiver.url], timing=UNHURRIED)
    start_replica(redis_client, [receiver.url], timing=UNHURRIED)
    chat = chat_with_events(redis_client, model_client, [receiver.url])
    users = [f"discord:{number}" for number in range(40)]
    await asyncio.gather(*(run_turn(chat, f"hi from {user}", user) for user in users))

    await until(lambda: len(receiver.accepted) >= 80, what="40 sessions and 40 turns")
    await asyncio.sleep(UNHURRIED.claim_idle + 0.3)
    assert set(receiver.accepted_ids().values()) == {1}
    assert len(receiver.requests) == 80
    kinds = Counter(d.event["type"] for d in receiver.accepted)
    assert kinds == {"session.created": 40, "turn.completed": 40}
    assert {e["data"]["userId"] for e in receiver.accepted_of_type("turn.completed")} == set(users)


async def test_a_replica_stopped_mid_retry_leaves_the_event_to_another_with_its_attempts(
    redis_client: aioredis.Redis, receiver: FakeWebhookReceiver, start_replica: StartReplica
):
    receiver.fail_always(500)
    first = start_replica(redis_client, [receiver.url], max_attempts=5, consumer="replica-a")
    await publish(redis_client, [receiver.url], 1)
    await until(lambda: len(receiver.requests) >= 2, what="two failed attempts")
    await first.stop()
    made_by_first = len(receiver.requests)

    start_replica(redis_client, [receiver.url], max_attempts=5, consumer="replica-b")
    receiver.heal()
    await until(lambda: receiver.accepted, what="delivered by the second replica")
    assert len(receiver.requests) == made_by_first + 1  # its attempts continued the count
    await wait_settled(redis_client, receiver.url)


async def test_the_attempts_of_a_stopped_replica_count_towards_the_maximum(
    redis_client: aioredis.Redis, receiver: FakeWebhookReceiver, start_replica: StartReplica
):
    receiver.fail_always(500)
    first = start_replica(redis_client, [receiver.url], max_attempts=4, consumer="replica-a")
    await publish(redis_client, [receiver.url], 1)
    await until(lambda: len(receiver.requests) >= 2, what="two failed attempts")
    await first.stop()

    start_replica(redis_client, [receiver.url], max_attempts=4, consumer="replica-b")
    await until(lambda: len(receiver.requests) >= 4, what="the remaining attempts")
    letters = []
    for _ in range(300):
        letters = await redis_client.xrange("events:{chatbridge-events}:dead-letters")
        if letters:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(FAST.claim_idle + FAST.backoff_cap)
    assert len(receiver.requests) == 4
    assert [fields["attempts"] for _id, fields in letters] == ["4"]


async def test_an_attempt_cut_by_a_dead_replica_is_claimed_by_another_after_the_idle_time(
    redis_client: aioredis.Redis, receiver: FakeWebhookReceiver, start_replica: StartReplica
):
    receiver.answer_slowly(30.0)  # holds the first attempt until its replica dies
    first = start_replica(redis_client, [receiver.url], consumer="replica-a")
    await publish(redis_client, [receiver.url], 1)
    await until(lambda: receiver.requests, what="the first attempt under way")
    await first.stop()  # cancels the attempt: no answer, no acknowledgement
    assert await pending(redis_client, receiver.url) == 1

    start_replica(redis_client, [receiver.url], consumer="replica-b")
    await until(lambda: receiver.accepted, what="claimed and delivered", within=FAST.claim_idle + 5)
    assert [d.status for d in receiver.requests] == [0, 200]
    await wait_settled(redis_client, receiver.url)


@pytest.fixture
async def durable_server(tmp_path: Path) -> AsyncIterator[tuple[RedisProcess, RedisClient]]:
    """A redis-server with the shipped AOF (fsync on every write), and the service's client,
    which reconnects pooled connections that died with the server. Listed before
    `start_replica`, it outlives the replicas."""
    server = durable_redis(tmp_path, "--appendfsync", "always")
    server.start()
    client = redis_from_settings(load_settings(redis_url=server.url))
    yield server, client
    await close_redis(client)
    server.stop()


@pytest.fixture
async def own_client(own_redis: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def managed_client(tmp_path: Path) -> AsyncIterator[aioredis.Redis]:
    """A Redis like a managed service's: no CONFIG, notifications set by the operator."""
    hidden_config = ("--rename-command", "CONFIG", "config-renamed-away")
    server = RedisProcess(tmp_path, *hidden_config, "--notify-keyspace-events", "Ex")
    server.start()
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    yield client
    await client.aclose()
    server.stop()


async def test_events_survive_redis_crashing_and_coming_back(
    durable_server: tuple[RedisProcess, RedisClient],
    receiver: FakeWebhookReceiver,
    start_replica: StartReplica,
):
    server, client = durable_server
    receiver.fail_always(500)
    with capture_logs() as logs:
        start_replica(client, [receiver.url], max_attempts=50)
        await publish(client, [receiver.url], 10)
        await until(lambda: len(receiver.requests) >= 10, what="first attempts")
        server.kill()
        await until(
            lambda: any(e["event"] == "webhooks.redis_unavailable" for e in logs),
            what="the dispatcher noticing",
        )
        receiver.heal()
        server.start()  # same port, same directory: its AOF
        await until(lambda: len(receiver.accepted_ids()) == 10, what="all ten delivered")
    assert any(e["event"] == "webhooks.redis_recovered" for e in logs)
    published = {d.event_id for d in receiver.requests[:10]}
    assert set(receiver.accepted_ids()) == published  # nothing lost
    await wait_settled(client, receiver.url)  # so nothing is delivered again later


async def test_an_expired_session_is_reported_once_by_two_replicas_and_a_deleted_one_never(
    own_client: aioredis.Redis,
    model_client: OpenRouterClient,
    receiver: FakeWebhookReceiver,
    start_replica: StartReplica,
):
    client = own_client
    both = [start_replica(client, [receiver.url], listens_for_expiry=True) for _ in range(2)]
    for replica in both:
        assert replica.expiry is not None
        await asyncio.wait_for(replica.expiry.listening.wait(), 5)
    assert "x" in (await client.config_get("notify-keyspace-events"))["notify-keyspace-events"]
    chat = chat_with_events(client, model_client, [receiver.url], SessionLimits(ttl_seconds=1))
    expiring = await chat.store.create_session("cli:ana", default_model="m/x")
    deleted = await chat.store.create_session("cli:bob", default_model="m/x")
    await chat.store.delete_session(deleted.id)

    await until(
        lambda: receiver.accepted_of_type("session.expired"), what="session.expired", within=8
    )
    await asyncio.sleep(1.5)  # bob's keys would be gone too by now; a duplicate would be here
    assert [e["data"] for e in receiver.accepted_of_type("session.expired")] == [
        {"sessionId": expiring.id}
    ]


async def test_without_config_the_listener_warns_once_and_still_hears_a_server_set_up_by_hand(
    managed_client: aioredis.Redis,
    model_client: OpenRouterClient,
    receiver: FakeWebhookReceiver,
    start_replica: StartReplica,
):
    client = managed_client
    with capture_logs() as logs:
        replica = start_replica(client, [receiver.url], listens_for_expiry=True)
        assert replica.expiry is not None
        await asyncio.wait_for(replica.expiry.listening.wait(), 5)
        chat = chat_with_events(client, model_client, [receiver.url], SessionLimits(ttl_seconds=1))
        session = await chat.store.create_session("cli:ana", default_model="m/x")
        await until(lambda: receiver.accepted_of_type("session.expired"), what="expired", within=8)
    warnings = [e for e in logs if e["event"] == "webhooks.expiry_events_unavailable"]
    assert len(warnings) == 1
    assert receiver.accepted_of_type("session.expired")[0]["data"]["sessionId"] == session.id
