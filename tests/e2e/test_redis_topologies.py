"""`python -m bots` on a Redis Cluster and on a Sentinel-managed master, set by environment only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.e2e.conftest import StartService, service_env
from tests.redis_topologies import SENTINEL_MASTER, LocalCluster, SentinelSet


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


async def sessions_work(base: str, http: httpx.AsyncClient, user: str) -> None:
    """Create a session, find it in the user's list and in the live count."""
    created = await http.post(f"{base}/api/sessions", json={"userId": user, "title": "Tides"})
    assert created.status_code == 201, created.text
    listed = await http.get(f"{base}/api/users/{user}/sessions")
    assert [s["id"] for s in listed.json()["sessions"]] == [created.json()["id"]]
    health = await http.get(f"{base}/api/sessions/health")
    assert health.status_code == 200, health.text
    assert (await http.get(f"{base}/health")).json()["redis"]["status"] == "up"


@pytest.mark.parametrize(
    "how", ["url", "flag"], ids=["redis+cluster-url", "REDIS_CLUSTER-with-REDIS_HOST"]
)
async def test_the_service_runs_on_a_cluster_named_by_url_or_by_flag(
    start_service: StartService, redis_cluster: LocalCluster, http: httpx.AsyncClient, how: str
) -> None:
    node = redis_cluster.masters[1]  # any node leads to the others
    if how == "url":
        env = service_env(REDIS_URL=f"redis+cluster://127.0.0.1:{node.port}")
    else:
        env = service_env(REDIS_CLUSTER="true", REDIS_HOST="127.0.0.1", REDIS_PORT=str(node.port))
    service = await start_service(env)

    await sessions_work(service.http_url, http, f"e2e-cluster-{how}")
    (configured,) = service.events("redis.configured")
    assert configured["redis"] == f"redis+cluster://127.0.0.1:{node.port}", service.output


async def test_the_service_runs_on_the_master_its_sentinels_name(
    start_service: StartService, redis_sentinel_set: SentinelSet, http: httpx.AsyncClient
) -> None:
    env = service_env(
        REDIS_SENTINELS=redis_sentinel_set.addresses, REDIS_SENTINEL_MASTER=SENTINEL_MASTER
    )
    service = await start_service(env)

    await sessions_work(service.http_url, http, "e2e-sentinel")
    (configured,) = service.events("redis.configured")
    expected = f"sentinel://{redis_sentinel_set.addresses}/{SENTINEL_MASTER}/0"
    assert configured["redis"] == expected, service.output
