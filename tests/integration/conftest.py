"""Fixtures shared by the webhook tests (test_webhooks, test_webhook_replicas, and
test_operations_topologies): receivers on 127.0.0.1 and replicas' delivery."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.webhook_receiver import FakeWebhookReceiver
from tests.integration.webhook_support import StartReplica, listening_receiver, replicas


@pytest.fixture
async def receiver() -> AsyncIterator[FakeWebhookReceiver]:
    async with listening_receiver() as fake:
        yield fake


@pytest.fixture
async def other_receiver() -> AsyncIterator[FakeWebhookReceiver]:
    async with listening_receiver() as fake:
        yield fake


@pytest.fixture
async def start_replica() -> AsyncIterator[StartReplica]:
    async with replicas() as start:
        yield start
