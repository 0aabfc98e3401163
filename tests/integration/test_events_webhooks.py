"""Event webhooks: what is published, and how it is delivered, signed, retried, dead-lettered.

Events come from real turns (ChatService, the real store, the fake OpenRouter) and from the
store's session operations; they are delivered by the real dispatcher over HTTP to a real
receiver on 127.0.0.1 (tests/fakes/webhook_receiver.py) that checks every signature.
The delivery's clocks are shrunk (webhook_support.FAST); everything else is as in production.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator, Iterable
from itertools import pairwise
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from structlog.testing import capture_logs

from core.chat import ChatService
from core.errors import ModelUnavailable, NothingToRetry
from core.events.publisher import (
    DEAD_LETTER_STREAM_KEY,
    EVENTS_STREAM_KEY,
    EventType,
    RedisEventPublisher,
    group_name,
)
from core.events.signing import DELIVERY_HEADER, EVENT_HEADER, TIMESTAMP_HEADER
from core.llm.openrouter import OpenRouterClient
from core.sessions.limits import SessionLimits
from core.settings import SessionLimitPolicy
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.fakes.webhook_receiver import FakeWebhookReceiver
from tests.integration.webhook_support import (
    FAST,
    StartReplica,
    chat_with_events,
    listening_receiver,
    run_turn,
    wait_settled,
)
from tests.redis_process import RedisProcess
from tests.waiting import until

ANA = "telegram:42"
ISO_MS_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def dead_letters(redis: aioredis.Redis) -> list[dict[str, str]]:
    return [fields for _id, fields in await redis.xrange(DEAD_LETTER_STREAM_KEY)]


async def wait_for_dead_letters(redis: aioredis.Redis) -> list[dict[str, str]]:
    """The dead-letter stream once it holds something (fails after 10 s)."""
    for _ in range(500):
        if letters := await dead_letters(redis):
            return letters
        await asyncio.sleep(0.02)
    pytest.fail("no dead letter within 10 s")


async def publish_one(redis: aioredis.Redis, url: str) -> None:
    await RedisEventPublisher(redis, [url]).publish(
        EventType.SESSION_DELETED, {"sessionId": "s", "userId": "u"}
    )


async def backlog_of_an_outage(
    redis: aioredis.Redis, url: str, consumer: str, *, size: int, due_at: Iterable[int]
) -> list[str]:
    """What a receiver outage leaves pending: `size` events, each tried once by `consumer` and
    failed; those at the positions `due_at` are past their backoff (idle for over an hour), the
    others are backing off (idle since just now). Returns the event ids of the due ones."""
    for _ in range(size):
        await publish_one(redis, url)
    reply = await redis.xreadgroup(group_name(url), consumer, {EVENTS_STREAM_KEY: ">"}, count=size)
    [(_stream, entries)] = reply
    due = [entries[position] for position in due_at]
    # As the dispatcher schedules a retry: XCLAIM IDLE, JUSTID so that no attempt is counted.
    await redis.xclaim(
        EVENTS_STREAM_KEY, group_name(url), consumer, 0, [stream_id for stream_id, _ in due],
        idle=3_600_000, justid=True,
    )  # fmt: skip
    return [fields["id"] for _stream_id, fields in due]


@pytest.fixture
async def recording_client(
    redis_server: RedisProcess, redis_client: aioredis.Redis
) -> AsyncIterator[tuple[aioredis.Redis, list[bytes]]]:
    """A client on the test Redis (emptied by `redis_client`) and what each of its socket
    writes carried: one write is one round trip (a pipeline is one write)."""
    writes: list[bytes] = []

    class RecordingConnection(Connection):
        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            if isinstance(command, str):
                command = command.encode()
            writes.append(command if isinstance(command, bytes) else b"".join(command))
            await super().send_packed_command(command, check_health)

    client = aioredis.Redis.from_url(
        redis_server.url, decode_responses=True, connection_class=RecordingConnection
    )
    yield client, writes
    await client.aclose()


async def test_every_event_of_a_session_and_its_turns_arrives_signed_with_its_data(
    redis_client: aioredis.Redis,
    model_client: OpenRouterClient,
    fake_openrouter: FakeOpenRouter,
    receiver: FakeWebhookReceiver,
    start_replica: StartReplica,
):
    start_replica(redis_client, [receiver.url])
    chat = chat_with_events(redis_client, model_client, [receiver.url])
    explicit = await chat.store.create_session(ANA, title="Tides", default_model="test/model")
    async with chat.turn("how do tides work?", user_id=ANA, front="telegram") as turn:
        _ = [delta async for delta in turn.deltas()]
    fake_openrouter.server_error(502, times=3)
    with pytest.raises(ModelUnavailable):
        await run_turn(chat, "and waves?", ANA, front="telegram")
    await chat.store.delete_session(explicit.id, owner=ANA)

    await until(lambda: len(receiver.accepted) == 4, what="four events delivered")
    assert all(d.is_signed_correctly for d in receiver.requests)
    for delivery in receiver.accepted:
        event = delivery.event
        assert delivery.headers[EVENT_HEADER] == event["type"]
        assert delivery.headers[DELIVERY_HEADER] == event["id"]
        assert delivery.headers[TIMESTAMP_HEADER].isdigit()
        assert ISO_MS_UTC.match(event["createdAt"])
        assert b"tides work" not in delivery.body  # never the messages' content
    assert receiver.accepted_of_type("session.created")[0]["data"] == {
        "sessionId": explicit.id, "userId": ANA, "title": "Tides", "model": "test/model",
    }  # fmt: skip
    assert turn.reply is not None
    assert turn.reply.usage is not None
    assert receiver.accepted_of_type("turn.completed")[0]["data"] == {
        "sessionId": explicit.id,
        "userId": ANA,
        "front": "telegram",
        "model": "test/model",
        "promptTokens": turn.reply.usage.prompt_tokens,
        "completionTokens": turn.reply.usage.completion_tokens,
        "cost": turn.reply.usage.cost,
    }
    assert receiver.accepted_of_type("turn.failed")[0]["data"] == {
        "sessionId": explicit.id, "userId": ANA, "front": "telegram", "error": "model_unavailable",
    }  # fmt: skip
    assert receiver.accepted_of_type("session.deleted")[0]["data"] == {
        "sessionId": explicit.id, "userId": ANA,
    }  # fmt: skip
    assert len(set(receiver.accepted_ids())) == 4


async def test_a_first_message_that_creates_the_session_sends_session_created_then_the_turn(
    redis_client: aioredis.Redis,
    model_client: OpenRouterClient,
    receiver: FakeWebhookReceiver,
    start_replica: StartReplica,
):
    start_replica(redis_client, [receiver.url])
    chat = chat_with_events(redis_client, model_client, [receiver.url])
    await run_turn(chat, "hello", ANA, front="cli")
    await run_turn(chat, "again", ANA, front="cli")  # same session: no second session.created

    await until(lambda: len(receiver.accepted) == 3, what="created + two turns delivered")
    session = await chat.store.active_session(ANA)
    assert session is not None
    created = receiver.accepted_of_type("session.created")
    assert [event["data"]["sessionId"] for event in created] == [session.id]
    assert created[0]["data"]["title"] == "hello"  # cut from the first message, as stored
    assert len(receiver.accepted_of_type("turn.completed")) == 2


async def test_a_turn_refused_before_any_session_is_reported_without_a_session(
    redis_client: aioredis.Redis,
    model_client: OpenRouterClient,
    receiver: FakeWebhookReceiver,
    start_replica: StartReplica,
):
    start_replica(redis_client, [receiver.url])
    chat = chat_with_events(redis_client, model_client, [receiver.url])
    with pytest.raises(NothingToRetry):
        async with chat.retry(user_id=ANA, front="discord"):
            pass
    await until(lambda: receiver.accepted, what="turn.failed delivered")
    assert receiver.accepted[0].event["data"] == {
        "sessionId": None, "userId": ANA, "front": "discord", "error": "nothing_to_retry",
    }  # fmt: skip


async def test_sessions_evicted_by_the_limit_are_reported_as_deleted(
    redis_client: aioredis.Redis,
    model_client: OpenRouterClient,
    receiver: FakeWebhookReceiver,
    start_replica: StartReplica,
):
    start_replica(redis_client, [receiver.url])
    limits = SessionLimits(max_sessions_per_user=1, policy=SessionLimitPolicy.EVICT_OLDEST)
    chat = chat_with_events(redis_client, model_client, [receiver.url], limits)
    oldest = await chat.store.create_session(ANA, default_model="m/x")
    newest = await chat.store.create_session(ANA, default_model="m/x")

    await until(lambda: len(receiver.accepted) == 3, what="two created, one deleted")
    assert [e["data"] for e in receiver.accepted_of_type("session.deleted")] == [
        {"sessionId": oldest.id, "userId": ANA}
    ]
    created = {e["data"]["sessionId"] for e in receiver.accepted_of_type("session.created")}
    assert created == {oldest.id, newest.id}


async def test_with_webhooks_off_nothing_is_written_for_events(
    redis_client: aioredis.Redis, chat: ChatService
):
    # conftest's store and chat service, built as without WEBHOOK_URLS: no publisher given.
    session = await chat.store.create_session(ANA, default_model="m/x")
    await run_turn(chat, "hello", ANA)
    await chat.store.delete_session(session.id)
    assert [key async for key in redis_client.scan_iter("events:*")] == []


async def test_a_publish_redis_refuses_is_logged_and_the_turn_completes(
    redis_client: aioredis.Redis, model_client: OpenRouterClient
):
    chat = chat_with_events(redis_client, model_client, [])
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    chat.store.events = chat.events = RedisEventPublisher(
        dead, ["http://127.0.0.1:9/h?token=tok-0d1e2f"]
    )
    with capture_logs() as logs:
        assert await run_turn(chat, "still answered?", ANA) == "echo: still answered?"
    await dead.aclose()
    failures = [entry for entry in logs if entry["event"] == "webhooks.publish_failed"]
    assert {entry["event_type"] for entry in failures} == {"session.created", "turn.completed"}
    assert "tok-0d1e2f" not in str(logs)


async def test_a_failing_receiver_gets_the_event_again_after_a_growing_backoff(
    redis_client: aioredis.Redis, receiver: FakeWebhookReceiver, start_replica: StartReplica
):
    receiver.fail(500)
    receiver.answer_slowly(FAST.post_timeout + 1.0)  # beyond the sender's timeout
    receiver.drop_connection()
    with capture_logs() as logs:
        start_replica(redis_client, [receiver.url], max_attempts=8)
        await publish_one(redis_client, receiver.url)
        await until(lambda: receiver.accepted, what="delivered on the fourth attempt")

    attempts = receiver.requests
    assert [d.status for d in attempts] == [500, 0, 0, 200]
    assert len({d.event_id for d in attempts}) == 1
    assert all(d.is_signed_correctly for d in attempts)
    failed = [e for e in logs if e["event"] == "webhooks.attempt_failed"]
    assert [e["reason"] for e in failed] == ["HTTP 500", "timeout", "RemoteProtocolError"]
    backoffs = [e["retry_in"] for e in failed]
    assert backoffs == [FAST.backoff(1), FAST.backoff(2), FAST.backoff(3)] == [0.05, 0.1, 0.2]
    # The receiver sees each attempt at least the backoff after the one before.
    waits = [later.received_at - earlier.received_at for earlier, later in pairwise(attempts)]
    assert all(wait >= backoff for wait, backoff in zip(waits, backoffs, strict=True))
    await wait_settled(redis_client, receiver.url)  # the XACK follows the receiver's 2xx
    assert await redis_client.xpending(EVENTS_STREAM_KEY, group_name(receiver.url)) == {
        "pending": 0, "min": None, "max": None, "consumers": [],
    }  # fmt: skip


async def test_a_refused_connection_is_retried_until_the_receiver_listens_again(
    redis_client: aioredis.Redis, receiver: FakeWebhookReceiver, start_replica: StartReplica
):
    await receiver.stop()
    start_replica(redis_client, [receiver.url])
    with capture_logs() as logs:
        await publish_one(redis_client, receiver.url)
        await until(
            lambda: sum(e["event"] == "webhooks.attempt_failed" for e in logs) >= 2,
            what="two refused attempts",
        )
    await receiver.start()
    await until(lambda: receiver.accepted, what="delivered once the receiver is back")
    assert {e["reason"] for e in logs if e["event"] == "webhooks.attempt_failed"} == {
        "ConnectError"
    }


@pytest.mark.parametrize(
    ("failures", "is_delivered"),
    [(2, True), (3, False), (None, False)],
    ids=["max-1 failures: delivered", "max failures: dead-lettered", "always failing"],
)
async def test_an_event_is_dead_lettered_after_exactly_the_maximum_attempts(
    redis_client: aioredis.Redis,
    receiver: FakeWebhookReceiver,
    start_replica: StartReplica,
    failures: int | None,
    is_delivered: bool,
):
    max_attempts = 3
    if failures is None:
        receiver.fail_always(503)
    else:
        receiver.fail(503, times=failures)
    start_replica(redis_client, [receiver.url], max_attempts=max_attempts)
    await publish_one(redis_client, receiver.url)

    if is_delivered:
        await until(lambda: receiver.accepted, what="delivered on the last attempt")
        assert len(receiver.requests) == max_attempts
        assert await dead_letters(redis_client) == []
        return
    await until(lambda: len(receiver.requests) == max_attempts, what="every attempt made")
    letters = await wait_for_dead_letters(redis_client)
    # Long enough for any further attempt: a claim after claim_idle, and its backoff.
    await asyncio.sleep(FAST.claim_idle + FAST.backoff_cap)
    assert len(receiver.requests) == max_attempts  # never max + 1
    assert receiver.accepted == []
    (letter,) = letters
    assert letter["attempts"] == str(max_attempts)
    assert letter["lastError"] == "HTTP 503"
    assert letter["eventId"] == receiver.requests[0].event_id
    assert letter["receiver"] == receiver.url
    pending = await redis_client.xpending(EVENTS_STREAM_KEY, group_name(receiver.url))
    assert pending["pending"] == 0


async def test_an_event_trimmed_from_the_stream_while_awaiting_its_retry_is_logged_and_dropped(
    redis_client: aioredis.Redis, receiver: FakeWebhookReceiver, start_replica: StartReplica
):
    receiver.fail_always(503)
    with capture_logs() as logs:
        start_replica(redis_client, [receiver.url])
        await publish_one(redis_client, receiver.url)
        await until(lambda: receiver.requests, what="the first attempt")
        event_id = receiver.requests[0].event_id
        # What XADD MAXLEN does once enough newer events pile up behind a receiver that is down.
        await redis_client.xtrim(EVENTS_STREAM_KEY, maxlen=0)
        await until(
            lambda: any(e["event"] == "webhooks.event_trimmed" for e in logs),
            what="the trimmed event logged",
        )
    attempts = len(receiver.requests)
    await asyncio.sleep(FAST.claim_idle + FAST.backoff_cap)  # time for any further attempt
    assert len(receiver.requests) == attempts
    assert {d.event_id for d in receiver.requests} == {event_id}
    assert (await redis_client.xpending(EVENTS_STREAM_KEY, group_name(receiver.url)))[
        "pending"
    ] == 0
    assert await dead_letters(redis_client) == []


async def test_an_event_trimmed_while_its_attempt_is_in_flight_is_logged_and_dropped(
    redis_client: aioredis.Redis, receiver: FakeWebhookReceiver, start_replica: StartReplica
):
    # Trimmed between the request and its 503: the sender's XCLAIM for the retry finds it gone
    # (Redis 7 drops it from the pending list there, so no later XAUTOCLAIM names it).
    receiver.fail(503)
    receiver.before_next_answer(lambda: redis_client.xtrim(EVENTS_STREAM_KEY, maxlen=0))
    with capture_logs() as logs:
        start_replica(redis_client, [receiver.url])
        await publish_one(redis_client, receiver.url)
        await until(
            lambda: any(e["event"] == "webhooks.event_trimmed" for e in logs),
            what="the trimmed event logged",
        )
    await asyncio.sleep(FAST.claim_idle + FAST.backoff_cap)  # time for any further attempt
    assert len(receiver.requests) == 1
    assert (await redis_client.xpending(EVENTS_STREAM_KEY, group_name(receiver.url)))[
        "pending"
    ] == 0
    assert await dead_letters(redis_client) == []


async def test_a_backlog_mostly_backing_off_posts_its_due_events_and_dead_letters_none(
    redis_client: aioredis.Redis,
    recording_client: tuple[aioredis.Redis, list[bytes]],
    receiver: FakeWebhookReceiver,
    start_replica: StartReplica,
):
    # The due events spread over the backlog: a claim names ids with backing-off ones between.
    consumer = "replica-a"
    due = await backlog_of_an_outage(
        redis_client, receiver.url, consumer, size=40, due_at=(0, 13, 26, 39)
    )
    client, writes = recording_client
    # claim_idle far longer than the test: the 36 others stay backing off throughout.
    timing = dataclasses.replace(FAST, claim_idle=600.0)
    start_replica(client, [receiver.url], consumer=consumer, timing=timing)
    await wait_settled(redis_client, receiver.url, left_pending=36)

    assert await dead_letters(redis_client) == []
    assert len(receiver.requests) == 4
    assert sorted(receiver.accepted_ids()) == sorted(due)
    backing_off = await redis_client.xpending_range(
        EVENTS_STREAM_KEY, group_name(receiver.url), min="-", max="+", count=100
    )
    assert {row["times_delivered"] for row in backing_off} == {1}  # not one of them attempted
    # The four attempt numbers were read in one round trip, each exactly (XPENDING id id 1).
    reading_attempts = [write for write in writes if b"XPENDING" in write]
    assert len(reading_attempts) == 1
    assert reading_attempts[0].count(b"XPENDING") == 4


async def test_the_dead_letter_names_the_receiver_without_its_credentials(
    redis_client: aioredis.Redis, start_replica: StartReplica
):
    async with listening_receiver() as fake:
        fake.fail_always(500)
        url = fake.url.replace("http://", "http://hook-user:hook-pass@") + "?token=s3cr3t-token"
        with capture_logs() as logs:
            start_replica(redis_client, [url], max_attempts=1)
            await publish_one(redis_client, url)
            await until(lambda: fake.requests, what="the one attempt")
            letters = await wait_for_dead_letters(redis_client)
    assert letters[0]["receiver"] == fake.url
    assert fake.requests[0].is_signed_correctly
    logged = str(logs)
    assert "hook-pass" not in logged
    assert "s3cr3t-token" not in logged
    assert fake.url in logged
