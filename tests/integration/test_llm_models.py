"""OpenRouter's models list: read by the client, cached in a real Redis by the catalog, shared
by replicas, kept stale through failures; against the strict fake OpenRouter on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr
from structlog.testing import capture_logs

from core.errors import ModelRejected, ModelUnavailable
from core.llm.modalities import Modality
from core.llm.models import CATALOG_KEY, CATALOG_TTL_SECONDS, ModelCatalog, decoded
from core.llm.openrouter import OpenRouterClient, RetryPolicy
from core.storage.connection import RedisClient
from tests.fakes.clock import FakeClock
from tests.fakes.openrouter_server import FAKE_API_KEY, FakeOpenRouter
from tests.redis_expiry import let_time_pass
from tests.redis_process import RedisProcess
from tests.waiting import until

SEES = "openai/gpt-4o-mini"
BLIND = "meta-llama/llama-3.1-8b-instruct"
HOUR = CATALOG_TTL_SECONDS
ATTEMPTS = 3
FAST_RETRY = RetryPolicy(attempts=ATTEMPTS, base_delay=0.01, max_delay=0.02)

OpenCatalog = Callable[..., AbstractAsyncContextManager[ModelCatalog]]


@asynccontextmanager
async def open_client(
    fake: FakeOpenRouter, *, api_key: str | None = FAKE_API_KEY
) -> AsyncIterator[OpenRouterClient]:
    client = OpenRouterClient(
        api_key=None if api_key is None else SecretStr(api_key),
        base_url=fake.base_url,
        retry=FAST_RETRY,
    )
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def client(fake_openrouter: FakeOpenRouter) -> AsyncIterator[OpenRouterClient]:
    async with open_client(fake_openrouter) as opened:
        yield opened


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def open_catalog(
    redis_client: RedisClient, fake_openrouter: FakeOpenRouter, clock: FakeClock
) -> OpenCatalog:
    """A catalog as one replica builds it (its own OpenRouter client), on the test's Redis and
    clock; `redis` and options may be given."""

    @asynccontextmanager
    async def opened(
        redis: RedisClient | None = None, **options: float
    ) -> AsyncIterator[ModelCatalog]:
        async with open_client(fake_openrouter) as source:
            catalog = ModelCatalog(redis or redis_client, source, clock=clock, **options)
            try:
                yield catalog
            finally:
                await catalog.aclose()

    return opened


async def time_passes(redis: RedisClient, clock: FakeClock, seconds: float) -> None:
    """As much time for Redis's expiries as for the catalogs' clock."""
    assert isinstance(redis, aioredis.Redis)
    await let_time_pass(redis, seconds)
    clock.advance(seconds)


async def stored_in(redis: RedisClient, *, within: float = 10.0) -> None:
    """Wait until a catalog has stored the list (a fetch that went on after its lookups)."""
    async with asyncio.timeout(within):
        while not await redis.exists(CATALOG_KEY):  # noqa: ASYNC110  (Redis has no event for it)
            await asyncio.sleep(0.01)


# The client reads the list.


async def test_the_models_list_is_read_whole_with_the_key_sent_as_on_every_request(
    client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    entries = await client.list_models()
    by_id = {entry["id"]: entry for entry in entries}
    assert by_id[SEES]["architecture"]["input_modalities"] == ["text", "image", "file"]
    assert by_id[BLIND]["architecture"]["input_modalities"] == ["text"]
    # Only models that write text, as OpenRouter lists by default.
    assert "openai/text-embedding-3-small" not in by_id
    [request] = fake_openrouter.models_requests
    assert request.path == "/api/v1/models"
    assert request.headers["Authorization"] == f"Bearer {FAKE_API_KEY}"
    assert fake_openrouter.requests == []  # the chat completions' record is left alone


async def test_the_models_list_is_public_so_a_client_without_a_key_reads_it(
    fake_openrouter: FakeOpenRouter,
):
    async with open_client(fake_openrouter, api_key=None) as keyless:
        assert {entry["id"] for entry in await keyless.list_models()} >= {SEES, BLIND}
    assert "Authorization" not in fake_openrouter.models_requests[0].headers


@pytest.mark.parametrize(("page_size", "pages"), [(1, 4), (3, 2), (4, 1), (5, 1)])
async def test_a_paged_models_list_is_read_page_by_page(
    client: OpenRouterClient, fake_openrouter: FakeOpenRouter, page_size: int, pages: int
):
    fake_openrouter.models_page_size = page_size  # the fake lists 4 models that write text
    entries = await client.list_models()
    assert len(entries) == 4
    assert len({entry["id"] for entry in entries}) == 4
    assert len(fake_openrouter.models_requests) == pages
    assert all(r.path == "/api/v1/models" for r in fake_openrouter.models_requests)


@pytest.mark.parametrize("fault", ["503", "500", "drop"])
async def test_a_failing_models_list_is_asked_again_as_a_get_changes_nothing(
    client: OpenRouterClient, fake_openrouter: FakeOpenRouter, fault: str
):
    if fault == "drop":
        fake_openrouter.drop_models_list(times=ATTEMPTS - 1)
    else:
        fake_openrouter.fail_models_list(int(fault), times=ATTEMPTS - 1)
    assert {entry["id"] for entry in await client.list_models()} >= {SEES}
    assert len(fake_openrouter.models_requests) == ATTEMPTS


async def test_a_models_list_failing_every_attempt_is_a_model_error(
    client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    fake_openrouter.fail_models_list(503, times=ATTEMPTS)
    with pytest.raises(ModelUnavailable):
        await client.list_models()
    assert len(fake_openrouter.models_requests) == ATTEMPTS


async def test_a_refused_models_list_is_not_asked_again(
    client: OpenRouterClient, fake_openrouter: FakeOpenRouter
):
    fake_openrouter.fail_models_list(404)
    with pytest.raises(ModelRejected):
        await client.list_models()
    assert len(fake_openrouter.models_requests) == 1


# The catalog caches it.


async def test_the_list_is_fetched_once_and_kept_in_redis_for_an_hour(
    open_catalog: OpenCatalog, fake_openrouter: FakeOpenRouter, redis_client: RedisClient
):
    async with open_catalog() as catalog:
        assert await catalog.accepts(SEES, Modality.IMAGE) is True
        assert await catalog.accepts(BLIND, Modality.IMAGE) is False
        assert await catalog.accepts(SEES, Modality.FILE) is True
    assert len(fake_openrouter.models_requests) == 1
    assert 0 < await redis_client.ttl(CATALOG_KEY) <= HOUR
    stored = decoded(await redis_client.get(CATALOG_KEY))
    assert stored is not None
    assert stored.accepts(SEES, Modality.IMAGE) is True
    # A process started later finds it there.
    async with open_catalog() as restarted:
        assert await restarted.accepts(BLIND, Modality.TEXT) is True
    assert len(fake_openrouter.models_requests) == 1


@pytest.mark.all_redis_topologies
async def test_two_replicas_on_one_redis_share_one_fetch(
    open_catalog: OpenCatalog, fake_openrouter: FakeOpenRouter
):
    async with open_catalog() as first, open_catalog() as second:
        assert await first.accepts(SEES, Modality.IMAGE) is True
        assert await second.accepts(SEES, Modality.IMAGE) is True
        assert await second.accepts(BLIND, Modality.IMAGE) is False
    assert len(fake_openrouter.models_requests) == 1


async def test_a_model_the_list_does_not_name_is_unknown(
    open_catalog: OpenCatalog, fake_openrouter: FakeOpenRouter
):
    async with open_catalog() as catalog:
        assert await catalog.accepts("someone/unlisted", Modality.IMAGE) is None
        assert await catalog.accepts("openai/text-embedding-3-small", Modality.TEXT) is None
    assert len(fake_openrouter.models_requests) == 1


async def test_the_list_is_fetched_again_once_the_hour_is_over(
    open_catalog: OpenCatalog,
    fake_openrouter: FakeOpenRouter,
    redis_client: RedisClient,
    clock: FakeClock,
):
    async with open_catalog() as catalog:
        assert await catalog.accepts(BLIND, Modality.IMAGE) is False
        fake_openrouter.list_model(BLIND, inputs=("text", "image"))
        await time_passes(redis_client, clock, HOUR - 1)
        assert await catalog.accepts(BLIND, Modality.IMAGE) is False  # a second before: cached
        assert len(fake_openrouter.models_requests) == 1
        await time_passes(redis_client, clock, 1)
        assert await catalog.accepts(BLIND, Modality.IMAGE) is True  # at the hour: fetched
        assert len(fake_openrouter.models_requests) == 2
        await time_passes(redis_client, clock, 1)
        assert await catalog.accepts(BLIND, Modality.IMAGE) is True  # a second after: cached
    assert len(fake_openrouter.models_requests) == 2


async def test_a_replica_that_read_the_copy_later_drops_it_when_the_copy_expires(
    open_catalog: OpenCatalog,
    fake_openrouter: FakeOpenRouter,
    redis_client: RedisClient,
    clock: FakeClock,
):
    async with open_catalog() as first, open_catalog() as second:
        await first.accepts(SEES, Modality.IMAGE)
        await time_passes(redis_client, clock, 1000)
        await second.accepts(SEES, Modality.IMAGE)  # reads the copy, 2600 s from its end
        fake_openrouter.list_model(BLIND, inputs=("text", "image"))
        await time_passes(redis_client, clock, HOUR - 1000 - 1)
        assert await second.accepts(BLIND, Modality.IMAGE) is False
        assert len(fake_openrouter.models_requests) == 1
        await time_passes(redis_client, clock, 1)
        assert await second.accepts(BLIND, Modality.IMAGE) is True
        assert await first.accepts(BLIND, Modality.IMAGE) is True  # found in Redis
    assert len(fake_openrouter.models_requests) == 2


async def test_when_the_fetch_fails_the_stale_copy_answers(
    open_catalog: OpenCatalog,
    fake_openrouter: FakeOpenRouter,
    redis_client: RedisClient,
    clock: FakeClock,
):
    async with open_catalog() as catalog:
        assert await catalog.accepts(SEES, Modality.IMAGE) is True
        fake_openrouter.unlist_model(SEES).fail_models_list(503, times=ATTEMPTS)
        await time_passes(redis_client, clock, HOUR + 1)
        with capture_logs() as logs:
            assert await catalog.accepts(SEES, Modality.IMAGE) is True
    assert len(fake_openrouter.models_requests) == 1 + ATTEMPTS
    assert {"event": "model_catalog_fetch_failed", "error": "model_unavailable", "stale": True,
            "log_level": "warning"} in logs  # fmt: skip
    assert await redis_client.exists(CATALOG_KEY) == 0  # nothing stale is written back


async def test_when_the_fetch_times_out_the_stale_copy_answers_and_the_new_one_lands_later(
    open_catalog: OpenCatalog,
    fake_openrouter: FakeOpenRouter,
    redis_client: RedisClient,
    clock: FakeClock,
):
    gate = asyncio.Event()
    async with open_catalog(wait_seconds=0.05) as catalog:
        assert await catalog.accepts(BLIND, Modality.IMAGE) is False
        fake_openrouter.list_model(BLIND, inputs=("text", "image")).hold_models_list(gate)
        await time_passes(redis_client, clock, HOUR)
        assert await catalog.accepts(BLIND, Modality.IMAGE) is False  # stale, not waited for
        gate.set()
        await stored_in(redis_client)
        assert await catalog.accepts(BLIND, Modality.IMAGE) is True
    assert len(fake_openrouter.models_requests) == 2


async def test_without_any_copy_a_failed_fetch_answers_unknown(
    open_catalog: OpenCatalog, fake_openrouter: FakeOpenRouter
):
    fake_openrouter.fail_models_list(503, times=ATTEMPTS)
    async with open_catalog() as catalog:
        assert await catalog.accepts(SEES, Modality.IMAGE) is None


async def test_without_any_copy_a_timed_out_fetch_answers_unknown(
    open_catalog: OpenCatalog, fake_openrouter: FakeOpenRouter
):
    fake_openrouter.hold_models_list(asyncio.Event())  # never answers
    async with open_catalog(wait_seconds=0.05) as catalog:
        assert await catalog.accepts(SEES, Modality.IMAGE) is None
        # Past the wait, later lookups answer without waiting, and ask for nothing more.
        assert await catalog.accepts(SEES, Modality.IMAGE) is None
    assert len(fake_openrouter.models_requests) == 1
    # aclose() stopped the fetch still waiting: nothing is left running.


async def test_after_a_failed_fetch_openrouter_is_asked_again_only_a_minute_later(
    open_catalog: OpenCatalog, fake_openrouter: FakeOpenRouter, clock: FakeClock
):
    fake_openrouter.fail_models_list(503, times=ATTEMPTS)
    async with open_catalog(retry_after_failure=60.0) as catalog:
        assert await catalog.accepts(SEES, Modality.IMAGE) is None
        clock.advance(59.999)
        assert await catalog.accepts(SEES, Modality.IMAGE) is None
        assert len(fake_openrouter.models_requests) == ATTEMPTS
        clock.advance(0.001)
        assert await catalog.accepts(SEES, Modality.IMAGE) is True
        assert len(fake_openrouter.models_requests) == ATTEMPTS + 1


async def test_after_a_failed_fetch_a_copy_another_replica_stored_is_used(
    open_catalog: OpenCatalog, fake_openrouter: FakeOpenRouter
):
    fake_openrouter.fail_models_list(503, times=ATTEMPTS)
    async with open_catalog() as failing, open_catalog() as other:
        assert await failing.accepts(SEES, Modality.IMAGE) is None
        assert await other.accepts(SEES, Modality.IMAGE) is True
        assert await failing.accepts(SEES, Modality.IMAGE) is True  # read from Redis
    assert len(fake_openrouter.models_requests) == ATTEMPTS + 1


async def test_many_lookups_at_once_make_one_fetch(
    open_catalog: OpenCatalog, fake_openrouter: FakeOpenRouter
):
    gate = asyncio.Event()
    fake_openrouter.hold_models_list(gate)
    async with open_catalog() as catalog:
        lookups = [
            asyncio.create_task(catalog.accepts(SEES if n % 2 else BLIND, Modality.IMAGE))
            for n in range(100)
        ]
        await until(lambda: fake_openrouter.models_requests, what="the fetch")
        gate.set()
        answers = await asyncio.gather(*lookups)
    assert answers == [n % 2 == 1 for n in range(100)]
    assert len(fake_openrouter.models_requests) == 1


async def test_a_stored_copy_this_version_cannot_read_is_fetched_anew_and_replaced(
    open_catalog: OpenCatalog, fake_openrouter: FakeOpenRouter, redis_client: RedisClient
):
    await redis_client.set(CATALOG_KEY, '{"v": 0, "everything": "else"}', ex=HOUR)
    async with open_catalog() as catalog:
        assert await catalog.accepts(SEES, Modality.IMAGE) is True
    assert len(fake_openrouter.models_requests) == 1
    assert decoded(await redis_client.get(CATALOG_KEY)) is not None


async def test_with_redis_down_the_list_still_comes_from_openrouter_once(
    open_catalog: OpenCatalog, fake_openrouter: FakeOpenRouter, own_redis: RedisProcess
):
    down = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    own_redis.stop()
    try:
        async with open_catalog(redis=down) as catalog:
            with capture_logs() as logs:
                assert await catalog.accepts(SEES, Modality.IMAGE) is True
                assert await catalog.accepts(BLIND, Modality.IMAGE) is False
    finally:
        await down.aclose()
    assert len(fake_openrouter.models_requests) == 1
    assert [entry["step"] for entry in logs if entry["event"] == "model_catalog_redis_failed"] == [
        "read",
        "write",
    ]
