"""The dashboard's counters and the webhooks on a Redis Cluster and behind Sentinel.

On a Cluster, session keys spread over the primaries by user tag, while the feature's own keys
(events streams, expiry markers, dashboard counters) share one hash tag and so one primary.
What a single server gives for free has to hold here too: an expiry on any primary is heard,
the counters' MULTI/EXEC lands, and Redis memory is the sum of the primaries. Behind Sentinel,
the listener finds the master through the sentinels like every other connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster

from core.analytics import AnalyticsFlusher, Tallies
from core.analytics_report import AnalyticsReader
from core.chat import ChatService, TurnSettings
from core.events import RedisEventPublisher
from core.metrics import Metrics
from core.openrouter import OpenRouterClient
from core.redis_connection import RedisClient, close_redis, redis_from_settings
from core.session_keys import user_index_key
from core.session_limits import SessionLimits
from core.session_store import SessionStore
from tests.fakes.webhook_receiver import FakeWebhookReceiver
from tests.integration.webhook_support import (
    StartReplica,
    chat_with_events,
    listening_receiver,
    replicas,
    run_turn,
)
from tests.redis_topologies import (
    SENTINEL_MASTER,
    LocalCluster,
    SentinelSet,
    admin,
    topology_settings,
)
from tests.waiting import until


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    cluster = LocalCluster(tmp_path, masters=3)
    await asyncio.to_thread(cluster.start)
    yield cluster
    cluster.stop()


@pytest.fixture
async def cluster_client(cluster: LocalCluster) -> AsyncIterator[RedisClient]:
    client = redis_from_settings(topology_settings(redis_url=cluster.url))
    assert isinstance(client, RedisCluster)
    yield client
    await close_redis(client)


@pytest.fixture
async def sentinel_set(tmp_path: Path) -> AsyncIterator[SentinelSet]:
    sentinels = SentinelSet(tmp_path, sentinels=1)
    await asyncio.to_thread(sentinels.start)
    yield sentinels
    sentinels.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[FakeWebhookReceiver]:
    async with listening_receiver() as fake:
        yield fake


@pytest.fixture
async def start_replica() -> AsyncIterator[StartReplica]:
    async with replicas() as start:
        yield start


def one_user_per_primary(cluster: LocalCluster) -> list[str]:
    """Users whose sessions live on each primary in turn: every primary holds one's keys."""
    with admin(cluster.masters[0]) as client:
        ranges = [
            (int(first), int(last), int(port))
            for first, last, (_host, port, *_), *_ in client.execute_command("CLUSTER", "SLOTS")
        ]
        by_port: dict[int, str] = {}
        for number in range(1000):
            user = f"cli:user-{number}"
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", user_index_key(user)))
            port = next(port for first, last, port in ranges if first <= slot <= last)
            by_port.setdefault(port, user)
            if len(by_port) == len(cluster.masters):
                return list(by_port.values())
    raise AssertionError("no user found for some primary")


async def test_an_expiry_on_any_primary_is_reported_once_by_two_replicas(
    cluster: LocalCluster,
    cluster_client: RedisCluster,
    model_client: OpenRouterClient,
    receiver: FakeWebhookReceiver,
    start_replica: StartReplica,
) -> None:
    both = [start_replica(cluster_client, [receiver.url], listens_for_expiry=True) for _ in "ab"]
    for replica in both:
        assert replica.expiry is not None
        await asyncio.wait_for(replica.expiry.listening.wait(), 5)
    primaries = cluster_client.get_primaries()
    assert len(primaries) == 3
    for primary in primaries:  # the listener switched each one on
        flags = await cluster_client.config_get("notify-keyspace-events", target_nodes=primary)
        assert "x" in flags["notify-keyspace-events"]
    users = one_user_per_primary(cluster)
    chat = chat_with_events(
        cluster_client, model_client, [receiver.url], SessionLimits(ttl_seconds=1)
    )
    expiring = [await chat.store.create_session(user, default_model="m/x") for user in users]

    expected = sorted(session.id for session in expiring)
    await until(
        lambda: len(receiver.accepted_of_type("session.expired")) >= len(expected),
        what="an expiry from every primary",
        within=10,
    )
    await asyncio.sleep(1.0)  # a duplicate from the other replica would be here by now
    reported = sorted(e["data"]["sessionId"] for e in receiver.accepted_of_type("session.expired"))
    assert reported == expected


async def test_turns_on_every_primary_are_delivered_and_counted_on_the_dashboard(
    cluster: LocalCluster,
    cluster_client: RedisCluster,
    model_client: OpenRouterClient,
    receiver: FakeWebhookReceiver,
    start_replica: StartReplica,
) -> None:
    start_replica(cluster_client, [receiver.url])
    tallies = Tallies()
    metrics = Metrics(tally=tallies)
    events = RedisEventPublisher(cluster_client, [receiver.url])
    store = SessionStore(cluster_client, SessionLimits(), metrics, events=events)
    chat = ChatService(store, model_client, TurnSettings("Be brief.", "test/model"), metrics)
    users = one_user_per_primary(cluster)
    for user in users:
        await run_turn(chat, "hello", user, front="cli")

    await until(
        lambda: len(receiver.accepted_of_type("turn.completed")) == len(users),
        what="a turn.completed per user",
    )
    assert sorted(e["data"]["userId"] for e in receiver.accepted_of_type("turn.completed")) == (
        sorted(users)
    )
    assert await AnalyticsFlusher(cluster_client, tallies).flush()  # MULTI/EXEC on one slot
    snapshot = await AnalyticsReader(cluster_client).snapshot()
    assert snapshot.hour.turns_by_front == {"cli": len(users)}
    assert snapshot.hour.active_users == len(users)

    memory = snapshot.redis_memory
    used_by_each = []
    for master in cluster.masters:
        with admin(master) as client:
            used_by_each.append(int(client.info("memory")["used_memory"]))
    assert memory.nodes == 3
    # Read a moment apart, so not equal to the byte; far above any single primary's figure.
    assert sum(used_by_each) * 0.9 < memory.used_bytes < sum(used_by_each) * 1.1
    assert memory.used_bytes > max(used_by_each) * 2


async def test_behind_sentinel_an_expiry_on_the_master_is_reported(
    sentinel_set: SentinelSet,
    model_client: OpenRouterClient,
    receiver: FakeWebhookReceiver,
    start_replica: StartReplica,
) -> None:
    client = redis_from_settings(
        topology_settings(
            redis_sentinels=sentinel_set.addresses, redis_sentinel_master=SENTINEL_MASTER
        )
    )
    replica = start_replica(client, [receiver.url], listens_for_expiry=True)
    try:
        assert replica.expiry is not None
        await asyncio.wait_for(replica.expiry.listening.wait(), 5)
        chat = chat_with_events(client, model_client, [receiver.url], SessionLimits(ttl_seconds=1))
        session = await chat.store.create_session("cli:ana", default_model="m/x")
        await until(
            lambda: receiver.accepted_of_type("session.expired"), what="session.expired", within=8
        )
        with admin(sentinel_set.master) as master:  # set on the master the sentinels name
            assert "x" in master.config_get("notify-keyspace-events")["notify-keyspace-events"]
    finally:
        await replica.stop()  # before its client closes
        await close_redis(client)
    assert [e["data"] for e in receiver.accepted_of_type("session.expired")] == [
        {"sessionId": session.id}
    ]
