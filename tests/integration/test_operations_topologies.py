"""The dashboard's counters and the webhooks on a single Redis, a Cluster and behind Sentinel.

On a Cluster, session keys spread over the primaries by user tag, while the feature's own keys
(events streams, expiry markers, dashboard counters) share one hash tag and so one primary.
What a single server gives for free has to hold there too: an expiry on any primary is heard,
the counters' MULTI/EXEC lands, and Redis memory is the sum of the primaries. Behind Sentinel,
the listener finds the master through the sentinels like every other connection.
"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio.cluster import RedisCluster

from core.chat import ChatService, TurnSettings
from core.events.publisher import RedisEventPublisher
from core.llm.openrouter import OpenRouterClient
from core.observability.analytics import AnalyticsFlusher, Tallies
from core.observability.analytics_report import AnalyticsReader
from core.observability.metrics import Metrics
from core.sessions.keys import user_index_key
from core.sessions.limits import SessionLimits
from core.sessions.store import SessionStore
from core.settings import Settings
from core.storage.connection import RedisClient, close_redis, redis_from_settings
from tests.fakes.webhook_receiver import FakeWebhookReceiver
from tests.integration.webhook_support import StartReplica, chat_with_events, run_turn
from tests.redis_topologies import LocalCluster, admin
from tests.waiting import until

pytestmark = pytest.mark.all_redis_topologies

# Enough users that on a 3-primary Cluster every primary holds some (checked where it matters).
USERS = [f"cli:user-{number}" for number in range(8)]


def primaries_holding(client: RedisCluster, users: list[str]) -> set[str]:
    """The primaries that hold these users' keys (the client must know the topology)."""
    manager = client.nodes_manager
    return {manager.get_node_from_slot(client.keyslot(user_index_key(u))).name for u in users}


async def test_each_expired_session_is_reported_once_by_two_replicas(
    redis_client: RedisClient,
    redis_topology_settings: Settings,
    model_client: OpenRouterClient,
    receiver: FakeWebhookReceiver,
    start_replica: StartReplica,
) -> None:
    # The listeners' own client is new, as in a process starting: a Cluster client has not
    # learnt the topology yet (redis_client has: the fixture emptied the database with it).
    client = redis_from_settings(redis_topology_settings)
    both = [start_replica(client, [receiver.url], listens_for_expiry=True) for _ in "ab"]
    try:
        for replica in both:
            assert replica.expiry is not None
            await asyncio.wait_for(replica.expiry.listening.wait(), 5)
        if isinstance(redis_client, RedisCluster):
            names = {node.name for node in redis_client.get_primaries()}
            assert len(names) == 3
            assert primaries_holding(redis_client, USERS) == names
        limits = SessionLimits(ttl_seconds=1)
        chat = chat_with_events(redis_client, model_client, [receiver.url], limits)
        expiring = [await chat.store.create_session(user, default_model="m/x") for user in USERS]

        expected = sorted(session.id for session in expiring)
        await until(
            lambda: len(receiver.accepted_of_type("session.expired")) >= len(expected),
            what="every session's expiry",
            within=10,
        )
        await asyncio.sleep(1.0)  # a duplicate from the other replica would be here by now
    finally:
        for replica in both:
            await replica.stop()  # before their client closes
        await close_redis(client)
    reported = sorted(e["data"]["sessionId"] for e in receiver.accepted_of_type("session.expired"))
    assert reported == expected


async def test_turns_are_delivered_and_counted_on_the_dashboard(
    redis_client: RedisClient,
    request: pytest.FixtureRequest,
    model_client: OpenRouterClient,
    receiver: FakeWebhookReceiver,
    start_replica: StartReplica,
) -> None:
    start_replica(redis_client, [receiver.url])
    tallies = Tallies()
    metrics = Metrics(tally=tallies)
    events = RedisEventPublisher(redis_client, [receiver.url])
    store = SessionStore(redis_client, SessionLimits(), metrics, events=events)
    chat = ChatService(store, model_client, TurnSettings("Be brief.", "test/model"), metrics)
    for user in USERS:
        await run_turn(chat, "hello", user, front="cli")

    await until(
        lambda: len(receiver.accepted_of_type("turn.completed")) == len(USERS),
        what="a turn.completed per user",
    )
    delivered = sorted(e["data"]["userId"] for e in receiver.accepted_of_type("turn.completed"))
    assert delivered == sorted(USERS)
    assert await AnalyticsFlusher(redis_client, tallies).flush()  # one MULTI/EXEC
    snapshot = await AnalyticsReader(redis_client).snapshot()
    assert snapshot.hour.turns_by_front == {"cli": len(USERS)}
    assert snapshot.hour.active_users == len(USERS)

    memory = snapshot.redis_memory
    if not isinstance(redis_client, RedisCluster):
        assert memory.nodes == 1
        return
    cluster: LocalCluster = request.getfixturevalue("redis_cluster")
    used_by_each = []
    for master in cluster.masters:
        with admin(master) as client:
            used_by_each.append(int(client.info("memory")["used_memory"]))
    assert memory.nodes == 3
    # Read a moment apart, so not equal to the byte; far above any single primary's figure.
    assert sum(used_by_each) * 0.9 < memory.used_bytes < sum(used_by_each) * 1.1
    assert memory.used_bytes > max(used_by_each) * 2
