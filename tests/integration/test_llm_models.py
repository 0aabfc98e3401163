"""OpenRouter's models list, read by the client from the strict fake OpenRouter on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from pydantic import SecretStr

from core.errors import ModelRejected, ModelUnavailable
from core.llm.openrouter import OpenRouterClient, RetryPolicy
from tests.fakes.openrouter_server import FAKE_API_KEY, FakeOpenRouter

SEES = "openai/gpt-4o-mini"
BLIND = "meta-llama/llama-3.1-8b-instruct"
ATTEMPTS = 3
FAST_RETRY = RetryPolicy(attempts=ATTEMPTS, base_delay=0.01, max_delay=0.02)


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
