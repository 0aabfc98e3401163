"""A local Redis Cluster and a local Sentinel set for tests, built from redis-server processes.

Both live in a temp dir, on free ports, bound to 127.0.0.1, and are torn down by `stop()`
(which kills whatever is left even if starting failed halfway). Nothing here touches a Redis
the tests did not start.

Loaded as a pytest plugin (tests/conftest.py): the session-scoped `redis_cluster` and
`redis_sentinel_set` fixtures start on first use only, so a run that needs neither pays nothing.
A test module marked `all_redis_topologies` gets its `redis_client` (and so `store`, `chat`,
`commands`) on each of the three in turn.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from core.settings import Settings
from tests.redis_process import RedisProcess, free_port

TOPOLOGIES = ("single", "cluster", "sentinel")
SLOTS = 16384
SENTINEL_MASTER = "chatbridge"
READY_TIMEOUT = 30.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT) -> None:
    """Poll `condition` (connection errors count as not yet) until it holds or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError, OSError):
            if condition():
                return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


@contextlib.contextmanager
def admin(server: RedisProcess) -> Iterator[redis.Redis]:
    """A short-lived synchronous client for setting servers up and inspecting them."""
    client = redis.Redis(*server.address, decode_responses=True, socket_timeout=5)
    try:
        yield client
    finally:
        client.close()


def info(server: RedisProcess, section: str) -> dict[str, Any]:
    with admin(server) as client:
        return dict(client.info(section))


# --- Cluster ----------------------------------------------------------------------------------


class LocalCluster:
    """`masters` masters sharing the 16,384 slots evenly, each with `replicas` replicas."""

    def __init__(
        self, directory: Path, *, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 1000
    ) -> None:
        self.directory = directory
        self.masters: list[RedisProcess] = []
        self.replicas: dict[int, list[RedisProcess]] = {}  # master's port -> its replicas
        for number in range(masters * (1 + replicas)):
            node = RedisProcess(
                directory / f"node-{number}",
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(node_timeout_ms),
                # The bus port is port + 10000 by default, which may not be free (or valid).
                "--cluster-port", str(free_port()),
                "--repl-diskless-sync-delay", "0",
            )  # fmt: skip
            if number < masters:
                self.masters.append(node)
            else:
                self.replicas.setdefault(self.masters[number % masters].port, []).append(node)

    @property
    def nodes(self) -> list[RedisProcess]:
        return self.masters + [node for nodes in self.replicas.values() for node in nodes]

    @property
    def url(self) -> str:
        """REDIS_URL for chatbridge: any node is enough to find the others."""
        return f"redis+cluster://127.0.0.1:{self.masters[0].port}"

    def start(self) -> None:
        try:
            for node in self.nodes:
                node.start()
            self._assign_slots()
            self._meet()
            self._attach_replicas()
            for node in self.nodes:
                wait_for(lambda node=node: self._sees_a_healthy_cluster(node), f"{node.port} ok")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    def node_id(self, server: RedisProcess) -> str:
        with admin(server) as client:
            return str(client.execute_command("CLUSTER", "MYID"))

    def _assign_slots(self) -> None:
        share = SLOTS // len(self.masters)
        for number, master in enumerate(self.masters):
            first = number * share
            last = SLOTS - 1 if number == len(self.masters) - 1 else first + share - 1
            with admin(master) as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)

    def _meet(self) -> None:
        first, *others = self.nodes
        with admin(first) as client:
            for node in others:
                bus_port = node.extra_args[node.extra_args.index("--cluster-port") + 1]
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, bus_port)
        total = len(self.nodes)
        for node in self.nodes:
            wait_for(
                lambda node=node: int(info_cluster(node)["cluster_known_nodes"]) == total,
                f"node {node.port} to know all {total} nodes",
            )

    def _attach_replicas(self) -> None:
        by_port = {master.port: master for master in self.masters}
        for master_port, replicas in self.replicas.items():
            master_id = self.node_id(by_port[master_port])
            for replica in replicas:
                with admin(replica) as client:
                    client.execute_command("CLUSTER", "REPLICATE", master_id)
                wait_for(
                    lambda replica=replica: (
                        info(replica, "replication").get("master_link_status") == "up"
                    ),
                    f"replica {replica.port} in sync",
                )

    def _sees_a_healthy_cluster(self, node: RedisProcess) -> bool:
        state = info_cluster(node)
        return state["cluster_state"] == "ok" and int(state["cluster_slots_ok"]) == SLOTS


def info_cluster(server: RedisProcess) -> dict[str, str]:
    with admin(server) as client:
        text = str(client.execute_command("CLUSTER", "INFO"))
    return dict(line.split(":", 1) for line in text.split() if ":" in line)


# --- Sentinel ---------------------------------------------------------------------------------


class SentinelProcess(RedisProcess):
    """A redis-server in Sentinel mode, watching one master (its config file is its own)."""

    def __init__(self, directory: Path, master: RedisProcess, quorum: int, down_after_ms: int):
        super().__init__(directory)
        self.master = master
        self.quorum = quorum
        self.down_after_ms = down_after_ms

    def command_line(self) -> list[str]:
        config = self.directory / "sentinel.conf"
        if not config.exists():  # Sentinel rewrites it with what it learns; keep that on restart
            config.write_text(
                f"port {self.port}\n"
                "bind 127.0.0.1\n"
                f"dir {self.directory}\n"
                f"logfile {self.directory / 'redis.log'}\n"
                f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {self.master.port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {SENTINEL_MASTER} {self.down_after_ms}\n"
                f"sentinel failover-timeout {SENTINEL_MASTER} 10000\n"
            )
        return [self.executable, str(config), "--sentinel"]


class SentinelSet:
    """A master, one replica, and `sentinels` sentinels watching the master as `chatbridge`."""

    def __init__(self, directory: Path, *, sentinels: int = 1, down_after_ms: int = 1000) -> None:
        self.directory = directory
        # Without a delay the replica syncs at once (the default waits 5 s for more replicas).
        self.master = RedisProcess(directory / "master", "--repl-diskless-sync-delay", "0")
        self.replica = RedisProcess(
            directory / "replica",
            "--replicaof", "127.0.0.1", str(self.master.port),
            "--repl-diskless-sync-delay", "0",
        )  # fmt: skip
        quorum = sentinels // 2 + 1
        self.sentinels = [
            SentinelProcess(directory / f"sentinel-{n}", self.master, quorum, down_after_ms)
            for n in range(sentinels)
        ]

    @property
    def addresses(self) -> str:
        """REDIS_SENTINELS for chatbridge."""
        return ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)

    def start(self) -> None:
        try:
            self.master.start()
            self.replica.start()
            wait_for(self._replica_in_sync, "the replica to sync")
            for sentinel in self.sentinels:
                sentinel.start()
            for sentinel in self.sentinels:
                wait_for(lambda s=sentinel: self._knows_everyone(s), f"sentinel {sentinel.port}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for server in (*self.sentinels, self.replica, self.master):
            server.kill()

    def master_address(self, sentinel: SentinelProcess | None = None) -> tuple[str, int]:
        with admin(sentinel or self.sentinels[0]) as client:
            host, port = client.execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER
            )
        return str(host), int(port)

    def _replica_in_sync(self) -> bool:
        return info(self.replica, "replication").get("master_link_status") == "up"

    def _knows_everyone(self, sentinel: SentinelProcess) -> bool:
        with admin(sentinel) as client:
            state = client.sentinel_master(SENTINEL_MASTER)
        return (
            int(state["num-slaves"]) >= 1
            and int(state["num-other-sentinels"]) == len(self.sentinels) - 1
        )


# --- pytest plugin ----------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "all_redis_topologies: run on a single Redis, a local 3-master Cluster and a "
        "Sentinel-managed master (parametrizes `redis_topology`)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marked = metafunc.definition.get_closest_marker("all_redis_topologies") is not None
    if marked and "redis_topology" in metafunc.fixturenames:
        metafunc.parametrize("redis_topology", TOPOLOGIES, indirect=True)


def topology_settings(**redis: object) -> Settings:
    """Settings naming only the given Redis: nothing from the environment or a .env file."""
    values: dict[str, object] = {
        "redis_url": None,
        "redis_host": None,
        "redis_password": None,
        "redis_db": 0,
        "redis_cluster": False,
        "redis_sentinels": (),
        "redis_sentinel_master": None,
    }
    return Settings(_env_file=None, **(values | redis))  # type: ignore[call-arg, arg-type]


@pytest.fixture
def redis_topology(request: pytest.FixtureRequest) -> str:
    """`single`, unless the test is marked all_redis_topologies: then each in turn."""
    return str(getattr(request, "param", "single"))


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three masters sharing the slots, for the whole run (about 2 s to start)."""
    cluster = LocalCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """A master, a replica and one sentinel, for the whole run."""
    sentinel_set = SentinelSet(tmp_path_factory.mktemp("redis-sentinel"))
    sentinel_set.start()
    yield sentinel_set
    sentinel_set.stop()


@pytest.fixture
def redis_topology_settings(redis_topology: str, request: pytest.FixtureRequest) -> Settings:
    """chatbridge's settings for the test's Redis topology (started on first use)."""
    topology = redis_topology
    if topology == "cluster":
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        return topology_settings(redis_url=cluster.url)
    if topology == "sentinel":
        sentinel_set: SentinelSet = request.getfixturevalue("redis_sentinel_set")
        return topology_settings(
            redis_sentinels=sentinel_set.addresses, redis_sentinel_master=SENTINEL_MASTER
        )
    server: RedisProcess = request.getfixturevalue("redis_server")
    return topology_settings(redis_url=server.url)
