"""The one Redis client of a process, built from settings (or from the embedded server's URL).

Three shapes, one behaviour: a single Redis (`redis.asyncio.Redis`), a Redis Cluster
(`redis.asyncio.cluster.RedisCluster`, which follows MOVED/ASK and re-reads the slot map after
a failover) and a master found through Sentinel (`Sentinel.master_for`: a plain client whose
pool asks the sentinels where the master is whenever it reconnects). All three get the same
timeouts and the same few quick retries, so an outage reaches users as StoreUnavailable in
about a second, never as a hang.
"""

from __future__ import annotations

from typing import Any, TypeAlias
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from core.settings import Settings

# The client the store runs on, whichever the topology.
RedisClient: TypeAlias = aioredis.Redis | RedisCluster

# A command retries a dropped connection a few times, quickly, then fails as StoreUnavailable:
# users get an answer in about a second instead of a hang, and the pool reconnects by itself
# on the next command once Redis is back.
RETRIES = 3
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 0.5
CONNECT_TIMEOUT_SECONDS = 2.0
COMMAND_TIMEOUT_SECONDS = 5.0
HEALTH_CHECK_INTERVAL_SECONDS = 15
CLIENT_NAME = "chatbridge"
# Connections a client keeps to one server. More commands at once wait up to POOL_WAIT_SECONDS
# for one of them: redis-py's default pool refuses the 101st instead, which a burst of turns
# (a thousand streams ending at once) would meet as StoreUnavailable. A Cluster's node pools
# cannot wait (redis-py refuses past their max): they may open up to CLUSTER_MAX_CONNECTIONS.
MAX_CONNECTIONS = 100
POOL_WAIT_SECONDS = COMMAND_TIMEOUT_SECONDS
CLUSTER_MAX_CONNECTIONS = 1000


def redis_from_settings(settings: Settings, *, url: str | None = None) -> RedisClient:
    """A pooled client; `url` (the embedded server's) wins over the settings."""
    if url is not None:
        return _waiting_client(url)
    if settings.redis_topology == "cluster":
        return _cluster_client(settings)
    if settings.redis_topology == "sentinel":
        return _sentinel_master(settings)
    if settings.redis_url is not None:
        return _waiting_client(settings.redis_url.get_secret_value())
    pool = aioredis.BlockingConnectionPool(
        host=settings.redis_host or "127.0.0.1",
        port=settings.redis_port,
        db=settings.redis_db,
        password=_password(settings),
        **_pool_options(),
        **_client_options(),
    )
    return aioredis.Redis.from_pool(pool)


def _waiting_client(url: str) -> aioredis.Redis:
    """A client of the server at `url` whose commands wait for a free connection."""
    pool = aioredis.BlockingConnectionPool.from_url(url, **_pool_options(), **_client_options())
    return aioredis.Redis.from_pool(pool)


def _pool_options() -> dict[str, Any]:
    return {"max_connections": MAX_CONNECTIONS, "timeout": POOL_WAIT_SECONDS}


async def close_redis(client: RedisClient) -> None:
    """Close every connection of the client, whatever state it is in.

    redis-py 8.1's RedisCluster.aclose() closes nothing while the client is marked to re-read
    the slot map, as it is after any connection error until the next command succeeds, so a
    service stopped during a cluster outage would leave its sockets open. The node managers
    are closed here as well (closing twice is harmless).
    """
    await client.aclose()
    if isinstance(client, RedisCluster):
        await client.nodes_manager.aclose()
        await client.nodes_manager.aclose("startup_nodes")


def describe_redis(settings: Settings) -> str:
    """Where the configured Redis is, for logs: never the password."""
    if settings.redis_topology == "sentinel":
        sentinels = ",".join(f"{host}:{port}" for host, port in settings.redis_sentinels)
        return f"sentinel://{sentinels}/{settings.redis_sentinel_master}/{settings.redis_db}"
    if settings.redis_url is not None:
        parts = urlsplit(settings.redis_url.get_secret_value())
        host = parts.hostname or parts.path
        port = f":{parts.port}" if parts.port else ""
        scheme = parts.scheme
        if settings.redis_cluster and not scheme.endswith("+cluster"):
            scheme += "+cluster"
        return f"{scheme}://{host}{port}{parts.path if parts.hostname else ''}"
    if settings.redis_cluster:
        return f"redis+cluster://{settings.redis_host}:{settings.redis_port}"
    return f"redis://{settings.redis_host}:{settings.redis_port}/{settings.redis_db}"


def _client_options() -> dict[str, Any]:
    return {
        "decode_responses": True,
        # A file's bytes (attachments) are not UTF-8: they come back as a str that
        # core.sessions.codec.as_bytes turns back into exactly those bytes.
        "encoding_errors": "surrogateescape",
        "retry": Retry(
            ExponentialBackoff(cap=BACKOFF_CAP_SECONDS, base=BACKOFF_BASE_SECONDS), RETRIES
        ),
        # Not timeouts: a command that timed out was most likely sent, and a script run twice
        # stores an answer twice (or waits for its own lock). Connection errors are mostly met
        # before sending (a dead pooled connection), where a retry is what reconnects.
        "retry_on_error": [RedisConnectionError],
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": COMMAND_TIMEOUT_SECONDS,
        "health_check_interval": HEALTH_CHECK_INTERVAL_SECONDS,
        "client_name": CLIENT_NAME,
    }


def _password(settings: Settings) -> str | None:
    return settings.redis_password.get_secret_value() if settings.redis_password else None


def _cluster_client(settings: Settings) -> RedisCluster:
    """Any one node is enough: the client reads the slot map from it and learns the others.

    The cluster client retries a command that met a connection error, a timeout or a
    CLUSTERDOWN up to RETRIES times, re-reading the slot map before each attempt; MOVED and
    ASK redirections are followed without counting as retries.
    """
    # A MOVED updates the one slot it names. redis-py's default also re-reads the whole map on
    # every 5th MOVED by closing every connection, in-flight requests of other users included;
    # while a slot moves that failed turns of users on untouched slots
    # (tests/integration/test_redis_failover.py). Failures still re-read the map.
    options = _client_options() | {
        "reinitialize_steps": 0,
        "max_connections": CLUSTER_MAX_CONNECTIONS,
    }
    if settings.redis_url is not None:
        url = settings.redis_url.get_secret_value().replace("+cluster://", "://", 1)
        return RedisCluster.from_url(url, **options)
    return RedisCluster(
        host=settings.redis_host or "127.0.0.1",
        port=settings.redis_port,
        password=_password(settings),
        **options,
    )


class WaitingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """The master's pool: Sentinel's address lookup, BlockingConnectionPool's waiting."""


class SentinelMasterClient(aioredis.Redis):
    """The master's client; closing it also closes the connections to the sentinels."""

    sentinel_manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            if self.sentinel_manager is not None:
                await self.sentinel_manager.aclose()


def _sentinel_master(settings: Settings) -> SentinelMasterClient:
    """A client of whichever server the sentinels call master now.

    Every new connection asks the sentinels for the master's address; a connection to a
    master that was demoted gets READONLY, which drops it, so the retry reconnects to the new
    master. While no master is known (during a failover) commands fail as StoreUnavailable.
    """
    options = _client_options()
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        list(settings.redis_sentinels),
        sentinel_kwargs={
            "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "socket_timeout": CONNECT_TIMEOUT_SECONDS,
        },
        **options,
    )
    client: SentinelMasterClient = sentinel.master_for(
        settings.redis_sentinel_master or "",
        redis_class=SentinelMasterClient,
        connection_pool_class=WaitingSentinelPool,
        db=settings.redis_db,
        password=_password(settings),
        **_pool_options(),
    )
    client.sentinel_manager = sentinel
    return client
