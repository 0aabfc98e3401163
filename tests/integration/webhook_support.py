"""Shared pieces of the webhook tests: fast delivery clocks, receivers, replicas, turns."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from core.chat import ChatService, TurnSettings
from core.events.publisher import EVENTS_STREAM_KEY, RedisEventPublisher, group_name
from core.events.webhooks import DeliveryTiming, Webhooks
from core.llm.openrouter import OpenRouterClient
from core.sessions.limits import SessionLimits
from core.sessions.store import SessionStore
from core.storage.connection import RedisClient
from tests.fakes.webhook_receiver import FakeWebhookReceiver

SECRET = "test-webhook-secret-0123456789"
# Every clock of the delivery shrunk: attempts time out after 0.5 s, retries wait 0.05 s,
# 0.1 s, 0.2 s, 0.4 s..., and entries idle for 1.2 s are another consumer's to claim.
FAST = DeliveryTiming(
    post_timeout=0.5, backoff_base=0.05, backoff_cap=0.4, claim_idle=1.2, poll=0.05, stop_wait=0.2
)

StartReplica = Callable[..., Webhooks]


@contextlib.asynccontextmanager
async def listening_receiver() -> AsyncIterator[FakeWebhookReceiver]:
    fake = FakeWebhookReceiver(SECRET)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@contextlib.asynccontextmanager
async def replicas() -> AsyncIterator[StartReplica]:
    """Start replicas' webhook delivery (each its own consumer); all stopped at the end."""
    started: list[Webhooks] = []

    def start(
        redis: RedisClient,
        urls: Sequence[str],
        *,
        max_attempts: int = 8,
        consumer: str | None = None,
        listens_for_expiry: bool = False,
        timing: DeliveryTiming = FAST,
    ) -> Webhooks:
        webhooks = Webhooks(
            redis,
            RedisEventPublisher(redis, urls),
            urls,
            SECRET,
            max_attempts=max_attempts,
            timing=timing,
            consumer=consumer,
            listens_for_expiry=listens_for_expiry,
        )
        webhooks.start()
        started.append(webhooks)
        return webhooks

    try:
        yield start
    finally:
        for webhooks in started:
            await webhooks.stop()


def chat_with_events(
    redis: RedisClient,
    model_client: OpenRouterClient,
    urls: Sequence[str],
    limits: SessionLimits | None = None,
) -> ChatService:
    """The real store and chat service, publishing to the events stream for `urls`."""
    store = SessionStore(redis, limits or SessionLimits(), events=RedisEventPublisher(redis, urls))
    settings = TurnSettings(system_prompt="Be brief.", default_model="test/model")
    return ChatService(store, model_client, settings)


async def run_turn(chat: ChatService, text: str, user: str, **options: Any) -> str:
    async with chat.turn(text, user_id=user, **options) as turn:
        return "".join([delta async for delta in turn.deltas()])


async def pending(redis: RedisClient, url: str) -> int:
    return int((await redis.xpending(EVENTS_STREAM_KEY, group_name(url)))["pending"])


async def wait_settled(redis: RedisClient, url: str, *, left_pending: int = 0) -> None:
    """Until the receiver's group holds only `left_pending` entries (the last XACK follows the
    2xx)."""
    for _ in range(200):
        if await pending(redis, url) == left_pending:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"pending entries not down to {left_pending} after 10 s")
