"""What only a Cluster or a Sentinel set can show: slots, requests per turn, health, scripts.

The store's whole suite also runs on both (modules marked `all_redis_topologies`); the
failover and resharding runs are in test_redis_failover.py.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import SentinelManagedConnection

from core.errors import StoreUnavailable
from core.observability.activity import KEY_PREFIX
from core.sessions.keys import user_index_key, user_tag
from core.sessions.limits import SessionLimits
from core.sessions.store import SessionStore
from core.settings import Settings
from core.storage.connection import RedisClient, close_redis, redis_from_settings
from tests.integration.store_turns import MODEL, begin, store_turn
from tests.redis_topologies import LocalCluster, admin


@pytest.fixture
async def cluster_client(redis_cluster: LocalCluster) -> AsyncIterator[RedisCluster]:
    """chatbridge's client on the session's cluster, emptied."""
    client = redis_from_settings(_settings(redis_url=redis_cluster.url))
    assert isinstance(client, RedisCluster)
    await client.flushall()
    yield client
    await client.aclose()


def _settings(**redis: object) -> Settings:
    return Settings(_env_file=None, **redis)  # type: ignore[call-arg, arg-type]


# --- where keys live -----------------------------------------------------------------------------


async def test_each_users_keys_share_one_slot_and_users_spread_over_every_master(
    cluster_client: RedisCluster, redis_cluster: LocalCluster
):
    store = SessionStore(cluster_client, SessionLimits())
    users = [f"cli:spread{number}" for number in range(30)]
    for user in users:
        await store_turn(store, user)
        await store.set_user_model(user, "other/model")

    keys_per_master = {}
    for master in redis_cluster.masters:
        with admin(master) as client:
            keys_per_master[master.port] = [key for key in client.scan_iter() if "{" in key]
    assert all(keys_per_master.values()), keys_per_master  # no master left out
    for user in users:
        tag = user_tag(user)
        mine = [key for keys in keys_per_master.values() for key in keys if f"{{{tag}}}" in key]
        assert len(mine) >= 5, mine  # index, state, turns, session hash, messages
        assert len({cluster_client.keyslot(key) for key in mine}) == 1


# --- requests per turn ---------------------------------------------------------------------------


@dataclass
class Request:
    node: str
    started: float
    ended: float


@pytest.fixture
def cluster_requests(monkeypatch: pytest.MonkeyPatch) -> list[Request]:
    """Every request a cluster client sends (one command or one node's pipeline), recorded."""
    seen: list[Request] = []

    def recording(send: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(node: ClusterNode, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await send(node, *args, **kwargs)
            finally:
                seen.append(Request(node.name, started, time.perf_counter()))

        return wrapper

    monkeypatch.setattr(ClusterNode, "execute_command", recording(ClusterNode.execute_command))
    monkeypatch.setattr(ClusterNode, "execute_pipeline", recording(ClusterNode.execute_pipeline))
    return seen


def _user_whose_slot_is(client: RedisCluster, *, on_the_stats_node: bool) -> str:
    stats_node = client.get_node_from_key(KEY_PREFIX + "0")
    for number in range(10_000):
        user = f"cli:trips{number}"
        same = client.get_node_from_key(user_index_key(user)) == stats_node
        if same is on_the_stats_node:
            return user
    raise AssertionError("no such user in 10,000")


@pytest.mark.parametrize("on_the_stats_node", [False, True], ids=["two-nodes", "one-node"])
async def test_a_cluster_turn_is_two_round_trips_the_second_sent_to_both_nodes_at_once(
    cluster_client: RedisCluster, cluster_requests: list[Request], on_the_stats_node: bool
):
    store = SessionStore(cluster_client, SessionLimits(rate_limit_messages=5))
    user = _user_whose_slot_is(cluster_client, on_the_stats_node=on_the_stats_node)
    await store_turn(store, user)  # scripts loaded, slot map read, connections open

    cluster_requests.clear()
    start = await begin(store, user, "counted")
    first = list(cluster_requests)
    cluster_requests.clear()
    await store.finish_turn(
        start, "answer", model=MODEL, usage=None, is_retry=False, spent_tokens=0
    )
    second = list(cluster_requests)

    assert len(first) == 1
    if on_the_stats_node:
        assert len(second) == 1
    else:
        assert len({request.node for request in second}) == 2
        one, other = second  # sent at once: each started before the other ended
        assert one.started < other.ended
        assert other.started < one.ended


@pytest.mark.parametrize("redis_topology", ["sentinel"], indirect=True)
async def test_a_sentinel_turn_is_two_round_trips_to_the_master(
    redis_topology_settings: Settings, monkeypatch: pytest.MonkeyPatch
):
    writes = []
    send = SentinelManagedConnection.send_packed_command

    async def counting(connection: SentinelManagedConnection, *args: Any, **kwargs: Any) -> None:
        writes.append(connection.port)
        await send(connection, *args, **kwargs)

    monkeypatch.setattr(SentinelManagedConnection, "send_packed_command", counting)
    client = redis_from_settings(redis_topology_settings)
    try:
        store = SessionStore(client, SessionLimits(rate_limit_messages=5))
        await store_turn(store, "cli:ana")  # scripts loaded, connection open
        writes.clear()
        await store_turn(store, "cli:ana")
    finally:
        await client.aclose()
    assert len(writes) == 2


# --- health and scripts ---------------------------------------------------------------------------


async def test_cluster_health_is_down_while_any_master_is_unreachable(tmp_path: Path):
    cluster = LocalCluster(tmp_path)
    cluster.start()
    client: RedisClient = redis_from_settings(_settings(redis_url=cluster.url))
    store = SessionStore(client, SessionLimits())
    try:
        assert await store.ping() >= 0
        cluster.masters[2].kill()
        with pytest.raises(StoreUnavailable):
            await store.ping()
    finally:
        await close_redis(client)
        cluster.stop()


async def test_a_cluster_whose_script_caches_were_flushed_reloads_them_on_every_master(
    cluster_client: RedisCluster,
):
    store = SessionStore(cluster_client, SessionLimits())
    users = [f"cli:noscript{number}" for number in range(12)]
    for user in users:
        await store_turn(store, user)
    await cluster_client.script_flush()  # every master, as after a restart

    for user in users:  # the first round trip runs alone, the second in a pipeline
        await store_turn(store, user)
        assert (await store.list_sessions(user)).sessions[0].message_count == 4
