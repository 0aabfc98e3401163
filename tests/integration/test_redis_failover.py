"""Failover and resharding during traffic: the client follows, acknowledged turns stay.

Each test starts its own Sentinel set or Cluster (it kills or reshapes it), drives turns from
several users through chatbridge's own client (`redis_from_settings`), and then checks every
turn the store acknowledged. Replication is asynchronous: a turn acknowledged by a master that
dies before its replica received it is lost — the replication window. On one machine the
window is well under a millisecond, so the tests allow a loss only for turns acknowledged in
the last second before the kill, and print what they measured (`pytest -s`).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster

from core.errors import StoreUnavailable
from core.sessions.keys import user_index_key
from core.sessions.limits import SessionLimits
from core.sessions.store import SessionStore
from core.storage.connection import RedisClient, close_redis, redis_from_settings
from tests.integration.store_turns import MODEL, store_turn
from tests.integration.turn_traffic import Ack, TurnTraffic
from tests.redis_process import RedisProcess
from tests.redis_topologies import (
    SENTINEL_MASTER,
    LocalCluster,
    SentinelSet,
    admin,
    info,
    topology_settings,
    wait_for,
)

USERS = [f"cli:traffic{number}" for number in range(8)]
REPLICATION_WINDOW_ALLOWED = 1.0  # seconds before the kill; what we measure is far below
ASKING_SECONDS = 0.3
LIMITS = SessionLimits(rate_limit_messages=0, max_messages_per_session=1_000_000)


@pytest.fixture
async def sentinel_set(tmp_path: Path) -> AsyncIterator[SentinelSet]:
    """Master, replica, and three sentinels (quorum 2) that call the master down after 1 s."""
    sentinels = SentinelSet(tmp_path, sentinels=3, down_after_ms=1000)
    await asyncio.to_thread(sentinels.start)
    yield sentinels
    sentinels.stop()


@pytest.fixture
async def cluster_with_replicas(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    """Three masters with one replica each; a node is failed after 1 s without an answer."""
    cluster = LocalCluster(tmp_path, masters=3, replicas=1, node_timeout_ms=1000)
    await asyncio.to_thread(cluster.start)
    yield cluster
    cluster.stop()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    cluster = LocalCluster(tmp_path, masters=3)
    await asyncio.to_thread(cluster.start)
    yield cluster
    cluster.stop()


async def traffic_on(client: RedisClient) -> TurnTraffic:
    traffic = TurnTraffic(SessionStore(client, LIMITS), list(USERS))
    await traffic.open_sessions()
    return traffic


@dataclass(frozen=True, slots=True)
class FailoverRun:
    acknowledged_before_kill: int
    lost: list[Ack]
    lost_beyond_the_window: list[Ack]
    outage_seconds: float  # from the kill until every user had a turn acknowledged again
    failed_turns: int
    answers_stored_twice: int
    replication_delay_ms: tuple[float, float]  # median and worst, measured during the traffic

    def report(self, name: str) -> None:
        median, worst = self.replication_delay_ms
        print(
            f"\n[{name}] acknowledged before the kill: {self.acknowledged_before_kill}, "
            f"lost: {len(self.lost)}, outage: {self.outage_seconds:.2f} s, "
            f"failed turns: {self.failed_turns}, answers stored twice: "
            f"{self.answers_stored_twice}, replication delay: median {median:.2f} ms, "
            f"worst {worst:.2f} ms"
        )


async def fail_over_during_traffic(
    traffic: TurnTraffic, master: RedisProcess, replica: RedisProcess, probe_key: str
) -> FailoverRun:
    """Turns from every user; SIGKILL `master` mid-traffic; go on until all users are back."""
    async with traffic.running():
        await traffic.until_acknowledged(300)
        delays = await asyncio.to_thread(replication_delays_ms, master, replica, probe_key)
        killed_at = time.monotonic()
        master.kill()
        await traffic.until_every_user_recovered(after=killed_at)
        back_at = time.monotonic()
        await traffic.until_acknowledged(100, after=back_at)
    missing = await traffic.missing()
    return FailoverRun(
        acknowledged_before_kill=sum(ack.at < killed_at for ack in traffic.acks),
        lost=missing,
        lost_beyond_the_window=[
            ack for ack in missing if ack.at < killed_at - REPLICATION_WINDOW_ALLOWED
        ],
        outage_seconds=back_at - killed_at,
        failed_turns=len(traffic.failures),
        answers_stored_twice=await traffic.duplicated_answers(),
        replication_delay_ms=(statistics.median(delays), max(delays)),
    )


def replication_delays_ms(
    master: RedisProcess, replica: RedisProcess, key: str, samples: int = 200
) -> list[float]:
    """How long a write on `master` takes to be readable on `replica`: the replication window."""
    delays = []
    with admin(master) as writer, admin(replica) as reader:
        if info(replica, "cluster").get("cluster_enabled") == 1:
            reader.execute_command("READONLY")  # else a cluster replica answers MOVED
        for number in range(samples):
            writer.set(key, number, px=60_000)
            written = time.perf_counter()
            while reader.get(key) != str(number):
                pass
            delays.append((time.perf_counter() - written) * 1000)
    return delays


# --- Sentinel ---------------------------------------------------------------------------------


async def test_a_sentinel_failover_during_traffic_loses_no_turn_acknowledged_before_the_window(
    sentinel_set: SentinelSet,
):
    client = redis_from_settings(
        topology_settings(
            redis_sentinels=sentinel_set.addresses, redis_sentinel_master=SENTINEL_MASTER
        )
    )
    try:
        traffic = await traffic_on(client)
        run = await fail_over_during_traffic(
            traffic, sentinel_set.master, sentinel_set.replica, "probe"
        )
    finally:
        await close_redis(client)

    assert sentinel_set.master_address() == sentinel_set.replica.address
    assert run.lost_beyond_the_window == []
    run.report("sentinel failover")


# --- Cluster ----------------------------------------------------------------------------------


# redis-py 8.1 drops the dead master's ClusterNode when it refreshes the slots without closing
# the connections the server cut, so they are only closed by the garbage collector. That leak
# is the client's, once per failover; the test collects it while the filters hold. What warns
# (redis-py's Connection, asyncio's StreamWriter or transport, the socket) depends on the order
# the collector finds them in.
@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
@pytest.mark.filterwarnings("ignore:unclosed <StreamWriter:ResourceWarning")
@pytest.mark.filterwarnings("ignore:unclosed transport <_SelectorSocketTransport:ResourceWarning")
@pytest.mark.filterwarnings("ignore:unclosed Connection <redis.asyncio.connection:ResourceWarning")
async def test_a_cluster_master_failover_loses_no_turn_acknowledged_before_the_window(
    cluster_with_replicas: LocalCluster,
):
    cluster = cluster_with_replicas
    client = redis_from_settings(topology_settings(redis_url=cluster.url))
    victim = _master_of(cluster, user_index_key(USERS[0]))
    promoted = cluster.replicas[victim.port][0]
    try:
        traffic = await traffic_on(client)
        probe_key = user_index_key(USERS[0]) + ":probe"  # same slot: served by the victim
        run = await fail_over_during_traffic(traffic, victim, promoted, probe_key)
    finally:
        await close_redis(client)
        gc.collect()

    assert info(promoted, "replication")["role"] == "master"
    assert run.lost_beyond_the_window == []
    run.report("cluster failover")


async def test_moving_a_slot_during_traffic_loses_nothing_and_troubles_only_its_users(
    cluster: LocalCluster,
):
    client = redis_from_settings(topology_settings(redis_url=cluster.url))
    try:
        traffic = await traffic_on(client)
        assert isinstance(client, RedisCluster)
        slot = client.keyslot(user_index_key(USERS[0]))
        movers = {traffic.sessions[user] for user in USERS if _slot(client, user) == slot}
        source = _master_of(cluster, user_index_key(USERS[0]))
        target = next(master for master in cluster.masters if master is not source)
        async with traffic.running():
            await traffic.until_acknowledged(200)
            moving_since = time.monotonic()
            await asyncio.to_thread(_move_slot, cluster, slot, source, target)
            moved_at = time.monotonic()
            await traffic.until_acknowledged(200, after=moved_at)
        missing = await traffic.missing()
        served_by = client.nodes_manager.get_node_from_slot(slot)
    finally:
        await close_redis(client)

    assert (served_by.host, served_by.port) == target.address  # the client took the MOVED
    assert _calls(target, "asking") > 0  # and followed ASK while the slot was moving
    assert missing == []
    assert all(failure.session_id in movers for failure in traffic.failures)
    assert all(moving_since <= failure.at <= moved_at for failure in traffic.failures)
    kinds = sorted({failure.kind for failure in traffic.failures})
    print(
        f"\n[slot move] {len(traffic.acks)} turns acknowledged, none lost; "
        f"{len(traffic.failures)} turns of the moving slot's user failed ({', '.join(kinds)}) "
        f"in {moved_at - moving_since:.2f} s of moving; other users: none failed"
    )


def _slot(client: RedisCluster, user: str) -> int:
    return int(client.keyslot(user_index_key(user)))


def _master_of(cluster: LocalCluster, key: str) -> RedisProcess:
    with admin(cluster.masters[0]) as client:
        slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
        for first, last, (_host, port, *_), *_ in client.execute_command("CLUSTER", "SLOTS"):
            if first <= slot <= last:
                return next(node for node in cluster.masters if node.port == int(port))
    raise AssertionError(f"no master serves slot {slot}")


def _move_slot(
    cluster: LocalCluster, slot: int, source: RedisProcess, target: RedisProcess
) -> None:
    """Reshard one slot as redis-cli does, but with all its keys in one MIGRATE.

    While the slot is MIGRATING, the source answers ASK for keys it no longer has; once the
    slot is assigned, every node answers MOVED. One MIGRATE keeps each user's keys together:
    the scripts name one key for routing and reach the user's others by name.
    """
    source_id, target_id = cluster.node_id(source), cluster.node_id(target)
    with admin(source) as old, admin(target) as new:
        new.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        old.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        keys = old.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1_000_000)
        if keys:
            old.execute_command("MIGRATE", *target.address, "", 0, 5000, "KEYS", *keys)
        time.sleep(ASKING_SECONDS)  # the keys are on the target, the slot not yet: ASK
        for node in (target, source, *cluster.masters):
            with admin(node) as each:
                each.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    wait_for(
        lambda: all(_master_of_slot(node, slot) == target.port for node in cluster.masters),
        f"every master to agree that {target.port} serves slot {slot}",
    )


def _master_of_slot(node: RedisProcess, slot: int) -> int:
    with admin(node) as client:
        for first, last, (_host, port, *_), *_ in client.execute_command("CLUSTER", "SLOTS"):
            if first <= slot <= last:
                return int(port)
    return 0


def _calls(server: RedisProcess, command: str) -> int:
    return int(info(server, "commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


# --- bounding the window ----------------------------------------------------------------------


@pytest.fixture
async def master_needing_a_replica(tmp_path: Path) -> AsyncIterator[tuple[RedisProcess, ...]]:
    """A master that refuses writes when no replica acknowledged within the last second."""
    master = RedisProcess(
        tmp_path / "master",
        "--min-replicas-to-write", "1",
        "--min-replicas-max-lag", "1",
        "--repl-diskless-sync-delay", "0",
    )  # fmt: skip
    replica = RedisProcess(tmp_path / "replica", "--replicaof", "127.0.0.1", str(master.port))
    try:
        master.start()
        replica.start()
        wait_for(lambda: _good_replicas(master) == 1, "the replica to count as good")
        yield master, replica
    finally:
        replica.resume()
        replica.kill()
        master.kill()


async def test_with_min_replicas_a_master_refuses_turns_no_replica_saw_and_stores_nothing(
    master_needing_a_replica: tuple[RedisProcess, RedisProcess],
):
    master, replica = master_needing_a_replica
    client = redis_from_settings(topology_settings(redis_url=master.url))
    store = SessionStore(client, LIMITS)
    try:
        session = await store.create_session("cli:ana", default_model=MODEL)
        await store_turn(store, None, "before", session_id=session.id)

        replica.pause()
        paused_at = time.monotonic()
        await asyncio.to_thread(
            wait_for, lambda: _good_replicas(master) == 0, "the replica to count as lagging"
        )
        refused_after = time.monotonic() - paused_at
        with pytest.raises(StoreUnavailable):
            await store_turn(store, None, "while no replica listens", session_id=session.id)
        with pytest.raises(StoreUnavailable):  # reads too: they slide the expiry, a write
            await store.read_messages(session.id)

        replica.resume()
        await asyncio.to_thread(wait_for, lambda: _good_replicas(master) == 1, "a good replica")
        await store_turn(store, None, "after", session_id=session.id)
        after = await store.read_messages(session.id)
    finally:
        await close_redis(client)

    assert [m.content for m in after.messages] == ["before", "answer", "after", "answer"]
    print(f"\n[min-replicas] writes refused {refused_after:.2f} s after the replica went silent")


def _good_replicas(master: RedisProcess) -> int:
    return int(info(master, "replication").get("min_slaves_good_slaves", -1))
