"""Model faults end to end: the real client and chat turn, the fake OpenRouter, the test Redis.

Storms of 429s, 5xx, timeouts and cut streams make a bounded number of requests, open the
model's circuit breaker, and then make none; every fault keeps the user's message for /retry
and stores no partial answer. The breaker's clock is a FakeClock, so cool-downs pass at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from core.chat import ChatService, TurnSettings
from core.errors import (
    ChatbridgeError,
    ModelCircuitOpen,
    ModelEmptyAnswer,
    ModelError,
    ModelRateLimited,
    ModelRejected,
    ModelStreamBroken,
    ModelTimeout,
    ModelUnavailable,
    TurnTimeout,
)
from core.llm.breaker import PROBE_WAIT_SECONDS, ModelBreaker
from core.llm.openrouter import OpenRouterClient, RetryPolicy
from core.observability.metrics import Metrics
from core.sessions.store import SessionStore
from tests.fakes.clock import FakeClock
from tests.fakes.openrouter_server import FAKE_API_KEY, FakeOpenRouter
from tests.waiting import until

MODEL = "test/model"
USER = "telegram:42"
FAILURES = 5  # failed requests in a row that open the breaker
COOLDOWN = 30.0
READ_TIMEOUT = 0.2
RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, max_retry_after=5.0)
STORM = 1000  # more faults queued than any test consumes
ANSWER = "ALPHA BRAVO CHARLIE DELTA"  # four deltas: "ALPHA B", "RAVO CH", "ARLIE D", "ELTA"
CONCURRENT_USERS = 50
NO_HANG_WITHIN = 20.0  # seconds; each of these batches takes well under one


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def breaker(clock: FakeClock, metrics: Metrics) -> ModelBreaker:
    return ModelBreaker(failures=FAILURES, cooldown=COOLDOWN, clock=clock, metrics=metrics)


def guarded_client(
    base_url: str, breaker: ModelBreaker, read_timeout: float = READ_TIMEOUT
) -> OpenRouterClient:
    return OpenRouterClient(
        api_key=SecretStr(FAKE_API_KEY),
        base_url=base_url,
        read_timeout=read_timeout,
        retry=RETRY,
        breaker=breaker,
    )


@pytest.fixture
async def guarded_chat(
    store: SessionStore,
    fake_openrouter: FakeOpenRouter,
    breaker: ModelBreaker,
    turn_settings: TurnSettings,
    metrics: Metrics,
) -> AsyncIterator[ChatService]:
    """Turns through a client whose breaker opens after FAILURES failed requests."""
    client = guarded_client(fake_openrouter.base_url, breaker)
    yield ChatService(store, client, turn_settings, metrics)
    await client.aclose()


async def run_turn(chat: ChatService, text: str, user: str = USER, **options: str) -> str:
    async with chat.turn(text, user_id=user, **options) as turn:  # type: ignore[arg-type]
        return "".join([delta async for delta in turn.deltas()])


async def outcome_of(
    chat: ChatService, text: str, user: str = USER, seen: list[str] | None = None
) -> str | ChatbridgeError:
    """The answer, or the error the turn ended with; `seen` gets the text that arrived first."""
    try:
        async with chat.turn(text, user_id=user) as turn:
            async for delta in turn.deltas():
                if seen is not None:
                    seen.append(delta)
    except ChatbridgeError as error:
        return error
    reply, _ = turn.outcome()
    return reply.content


async def retry_turn(chat: ChatService, user: str = USER) -> str:
    async with chat.retry(user_id=user) as turn:
        return "".join([delta async for delta in turn.deltas()])


async def history(chat: ChatService, user: str = USER) -> list[tuple[str, str]]:
    session = await chat.store.active_session(user)
    assert session is not None
    page = await chat.store.read_messages(session.id, limit=100)
    return [(m.role.value, m.content) for m in page.messages]


async def everything_in_redis(redis_client: aioredis.Redis) -> str:
    """Every key and value in the database, as one text to search."""
    parts: list[str] = []
    async for key in redis_client.scan_iter():
        kind = await redis_client.type(key)
        readers = {
            "string": redis_client.get,
            "hash": redis_client.hgetall,
            "list": lambda k: redis_client.lrange(k, 0, -1),
            "set": redis_client.smembers,
            "zset": lambda k: redis_client.zrange(k, 0, -1),
        }
        parts.append(f"{key} {await readers[kind](key)!r}")
    return "\n".join(parts)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


# --- storms: bounded requests, then none while the breaker is open --------------------------------


@dataclass(frozen=True)
class Storm:
    arrange: Callable[[FakeOpenRouter], object]
    error: type[ModelError]  # what each turn before the breaker opens ends with


STORMS = {
    "429": Storm(lambda fake: fake.rate_limit(retry_after=0, times=STORM), ModelRateLimited),
    "500": Storm(lambda fake: fake.server_error(500, times=STORM), ModelUnavailable),
    "502": Storm(lambda fake: fake.server_error(502, times=STORM), ModelUnavailable),
    "503": Storm(lambda fake: fake.server_error(503, times=STORM), ModelUnavailable),
    "504": Storm(lambda fake: fake.server_error(504, times=STORM), ModelUnavailable),
    "slow response": Storm(lambda fake: fake.slow(5, times=STORM), ModelTimeout),
    "slow first token": Storm(lambda fake: fake.slow_first_token(5, times=STORM), ModelTimeout),
    "cut stream": Storm(
        lambda fake: fake.cut_stream(after_deltas=2, times=STORM), ModelStreamBroken
    ),
    "error chunk": Storm(
        lambda fake: fake.error_chunk(after_deltas=1, times=STORM), ModelStreamBroken
    ),
    "empty answer": Storm(lambda fake: fake.empty_answer(times=STORM), ModelEmptyAnswer),
}


@pytest.mark.parametrize("storm", STORMS.values(), ids=STORMS.keys())
async def test_a_storm_opens_the_breaker_after_the_failed_requests_and_then_sends_none(
    guarded_chat: ChatService,
    fake_openrouter: FakeOpenRouter,
    breaker: ModelBreaker,
    storm: Storm,
):
    storm.arrange(fake_openrouter)
    endings: list[str | ChatbridgeError] = []
    while breaker.state(MODEL) != "open":
        assert len(endings) < FAILURES, "the breaker never opened"
        sent_before = len(fake_openrouter.requests)
        endings.append(await outcome_of(guarded_chat, f"message {len(endings)}"))
        assert len(fake_openrouter.requests) - sent_before <= RETRY.attempts  # bounded per turn

    # Every failed request counted, retries included: the breaker opened at the FAILURES-th,
    # and a retry the turn still had left was refused unsent.
    assert len(fake_openrouter.requests) == FAILURES
    assert all(isinstance(e, storm.error) for e in endings[:-1])
    assert isinstance(endings[-1], storm.error | ModelCircuitOpen)

    refusals = [await outcome_of(guarded_chat, f"while open {n}") for n in range(10)]
    assert all(isinstance(r, ModelCircuitOpen) and r.retry_after == COOLDOWN for r in refusals)
    assert len(fake_openrouter.requests) == FAILURES  # not one more while open
    stored = await history(guarded_chat)
    assert len(stored) == len(endings) + len(refusals)
    assert {role for role, _ in stored} == {"user"}  # every message kept, no answer stored


async def test_the_failure_that_opens_the_breaker_ends_its_turn_without_waiting_to_retry(
    store: SessionStore,
    fake_openrouter: FakeOpenRouter,
    turn_settings: TurnSettings,
    clock: FakeClock,
):
    breaker = ModelBreaker(failures=1, cooldown=COOLDOWN, clock=clock)
    patient = RetryPolicy(attempts=3, max_retry_after=60.0)  # would wait out a 30 s Retry-After
    client = OpenRouterClient(
        api_key=SecretStr(FAKE_API_KEY), base_url=fake_openrouter.base_url, retry=patient,
        breaker=breaker,
    )  # fmt: skip
    chat = ChatService(store, client, turn_settings)
    fake_openrouter.rate_limit(retry_after=30, times=RETRY.attempts)
    try:
        ending = await asyncio.wait_for(outcome_of(chat, "hello"), timeout=5)
    finally:
        await client.aclose()

    assert isinstance(ending, ModelCircuitOpen)
    assert ending.retry_after == COOLDOWN
    assert len(fake_openrouter.requests) == 1


async def test_requests_dropped_on_connect_open_the_breaker_after_the_failed_connections(
    store: SessionStore, breaker: ModelBreaker, turn_settings: TurnSettings
):
    connections = 0

    async def drop(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()  # no response at all: a connection error for the client

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = guarded_client(f"http://127.0.0.1:{port}/api/v1", breaker)
    chat = ChatService(store, client, turn_settings)
    try:
        # Connected, then dropped: the request may have gone out, so each turn tries once.
        failed = [await outcome_of(chat, f"turn {n}") for n in range(FAILURES)]
        refused = await outcome_of(chat, "one more")
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()

    assert all(type(ending) is ModelUnavailable for ending in failed)
    assert isinstance(refused, ModelCircuitOpen)
    assert connections == FAILURES


@pytest.mark.parametrize("is_reset", [False, True], ids=["closed", "reset"])
async def test_a_connection_lost_after_the_request_was_sent_fails_the_turn_keeping_the_question(
    guarded_chat: ChatService, fake_openrouter: FakeOpenRouter, is_reset: bool
):
    fake_openrouter.drop_after_request(is_reset=is_reset)

    ending = await outcome_of(guarded_chat, "are you there?")

    assert type(ending) is ModelUnavailable
    assert len(fake_openrouter.requests) == 1  # not asked again: it may be answering (and billing)
    assert await history(guarded_chat) == [("user", "are you there?")]
    assert await retry_turn(guarded_chat) == "echo: are you there?"
    assert len(fake_openrouter.requests) == 2


async def test_rejections_of_the_requests_content_never_open_the_breaker(
    guarded_chat: ChatService, fake_openrouter: FakeOpenRouter, breaker: ModelBreaker
):
    fake_openrouter.reject(400, times=FAILURES * 2)

    endings = [await outcome_of(guarded_chat, f"bad {n}") for n in range(FAILURES * 2)]

    assert all(isinstance(e, ModelRejected) for e in endings)
    assert len(fake_openrouter.requests) == FAILURES * 2  # one each, never retried
    assert breaker.state(MODEL) == "closed"
    assert await run_turn(guarded_chat, "fine now") == "echo: fine now"


async def test_a_model_whose_breaker_is_open_leaves_the_other_models_answering(
    guarded_chat: ChatService, fake_openrouter: FakeOpenRouter, breaker: ModelBreaker
):
    fake_openrouter.server_error(502, times=FAILURES)
    while breaker.state(MODEL) != "open":
        await outcome_of(guarded_chat, "default model")

    answer = await run_turn(guarded_chat, "other model", model="other/model")

    assert answer == "echo: other model"
    assert fake_openrouter.requests[-1].body["model"] == "other/model"
    assert isinstance(await outcome_of(guarded_chat, "default again"), ModelCircuitOpen)


async def test_a_fallback_model_that_answers_keeps_the_breaker_closed(
    store: SessionStore,
    fake_openrouter: FakeOpenRouter,
    breaker: ModelBreaker,
    turn_settings: TurnSettings,
):
    client = OpenRouterClient(
        api_key=SecretStr(FAKE_API_KEY), base_url=fake_openrouter.base_url,
        fallback_models=["backup/model"], retry=RETRY, breaker=breaker,
    )  # fmt: skip
    chat = ChatService(store, client, turn_settings)
    fake_openrouter.primary_fails(times=FAILURES * 2)
    try:
        answers = [await run_turn(chat, f"turn {n}") for n in range(FAILURES * 2)]
    finally:
        await client.aclose()

    assert answers == [f"echo: turn {n}" for n in range(FAILURES * 2)]
    assert breaker.state(MODEL) == "closed"


# --- the user's message is kept; a cut stream's text is never stored ------------------------------


def open_the_breaker(_fake: FakeOpenRouter, breaker: ModelBreaker) -> None:
    for _ in range(FAILURES):
        breaker.admit(MODEL).failed()


FAULTS: dict[str, Callable[[FakeOpenRouter, ModelBreaker], object]] = {
    "timeout": lambda fake, _: fake.slow(5),
    "slow first token": lambda fake, _: fake.slow_first_token(5),
    "5xx": lambda fake, _: fake.server_error(502, times=RETRY.attempts),
    "429": lambda fake, _: fake.rate_limit(retry_after=0, times=RETRY.attempts),
    "429 over the wait cap": lambda fake, _: fake.rate_limit(retry_after=120),
    "cut stream": lambda fake, _: fake.cut_stream(after_deltas=2),
    "stall after text": lambda fake, _: fake.stall(after_deltas=2, seconds=5),
    "error chunk after text": lambda fake, _: fake.error_chunk(after_deltas=2),
    "empty answer": lambda fake, _: fake.empty_answer(),
    "breaker open": open_the_breaker,
}


@pytest.mark.parametrize("fault", FAULTS)
async def test_every_model_fault_keeps_the_message_for_retry_and_stores_no_partial_answer(
    *,
    guarded_chat: ChatService,
    fake_openrouter: FakeOpenRouter,
    breaker: ModelBreaker,
    clock: FakeClock,
    redis_client: aioredis.Redis,
    fault: str,
):
    fake_openrouter.reply_text = ANSWER
    FAULTS[fault](fake_openrouter, breaker)
    seen: list[str] = []

    ending = await outcome_of(guarded_chat, "tell me the code words", seen=seen)

    assert isinstance(ending, ModelError)
    partial = "".join(seen)
    if isinstance(ending, ModelStreamBroken):
        assert partial == ending.partial_text == "ALPHA BRAVO CH"  # shown, marked incomplete
    else:
        assert partial == ""
    assert await history(guarded_chat) == [("user", "tell me the code words")]
    assert "ALPHA" not in await everything_in_redis(redis_client)  # not a byte of it stored

    clock.advance(COOLDOWN)  # an open breaker lets a probe through; for the others, no-op
    assert await retry_turn(guarded_chat) == ANSWER
    asked = fake_openrouter.requests[-1].body["messages"][-1]
    assert asked == {"role": "user", "content": "tell me the code words"}
    assert await history(guarded_chat) == [
        ("user", "tell me the code words"),
        ("assistant", ANSWER),
    ]


async def test_a_stream_kept_alive_past_turn_timeout_ends_keeping_the_question_and_freeing_it(
    store: SessionStore,
    fake_openrouter: FakeOpenRouter,
    breaker: ModelBreaker,
    redis_client: aioredis.Redis,
):
    """Processing comments every 50 ms keep the 0.2 s read timeout from ever firing: only
    TURN_TIMEOUT (1 s here) ends the turn."""
    fake_openrouter.reply_text = ANSWER
    fake_openrouter.keep_alive_forever(after_deltas=2)
    client = guarded_client(fake_openrouter.base_url, breaker)
    chat = ChatService(store, client, TurnSettings("", MODEL, turn_timeout_seconds=1.0))
    seen: list[str] = []

    ending = await outcome_of(chat, "tell me the code words", seen=seen)

    assert isinstance(ending, TurnTimeout)
    assert ending.partial_text == "".join(seen) == "ALPHA BRAVO CH"
    assert await history(chat) == [("user", "tell me the code words")]
    assert "ALPHA" not in await everything_in_redis(redis_client)
    assert [key async for key in redis_client.scan_iter(match="session:*:lock")] == []
    assert await retry_turn(chat) == ANSWER
    await client.aclose()


# --- many turns at once ---------------------------------------------------------------------------


@pytest.fixture
async def patient_guarded_chat(
    store: SessionStore,
    fake_openrouter: FakeOpenRouter,
    breaker: ModelBreaker,
    turn_settings: TurnSettings,
    metrics: Metrics,
) -> AsyncIterator[ChatService]:
    """As guarded_chat, but a held probe outlasts 49 refused turns on a busy machine: with the
    0.2 s read timeout it timed out there, and its failure reopened the breaker."""
    client = guarded_client(fake_openrouter.base_url, breaker, read_timeout=NO_HANG_WITHIN)
    yield ChatService(store, client, turn_settings, metrics)
    await client.aclose()


async def test_fifty_concurrent_turns_on_a_failing_model_are_bounded_answered_and_recover(
    patient_guarded_chat: ChatService,
    fake_openrouter: FakeOpenRouter,
    breaker: ModelBreaker,
    clock: FakeClock,
    metrics: Metrics,
):
    guarded_chat = patient_guarded_chat
    users = [f"discord:{n}" for n in range(CONCURRENT_USERS)]
    fake_openrouter.server_error(502, times=STORM)

    async def everyone(text: str, who: list[str]) -> list[str | ChatbridgeError]:
        turns = (outcome_of(guarded_chat, text, user) for user in who)
        return await asyncio.wait_for(asyncio.gather(*turns), NO_HANG_WITHIN)

    # Failing: every caller gets an error; the breaker cuts the retries short.
    failing = await everyone("hello", users)
    assert all(isinstance(ending, ModelUnavailable) for ending in failing)
    assert any(isinstance(ending, ModelCircuitOpen) for ending in failing)
    sent = len(fake_openrouter.requests)
    # At most every first attempt plus the retries started before the FAILURES-th failure;
    # without the breaker it would be CONCURRENT_USERS * RETRY.attempts = 150.
    assert sent <= CONCURRENT_USERS + FAILURES - 1
    assert breaker.state(MODEL) == "open"

    # Open: fifty more turns, answered at once, without a single request.
    refused = await everyone("again", users)
    assert all(isinstance(r, ModelCircuitOpen) and r.retry_after == COOLDOWN for r in refused)
    assert len(fake_openrouter.requests) == sent

    # Cool-down over and the provider back: one probe goes out; the rest wait for it.
    fake_openrouter.clear_faults()
    clock.advance(COOLDOWN)
    gate = asyncio.Event()
    fake_openrouter.hold(gate)
    probe = asyncio.create_task(run_turn(guarded_chat, "probe", users[0]))
    await until(lambda: len(fake_openrouter.requests) == sent + 1, what="the probe request")
    while_probing = await everyone("meanwhile", users[1:])
    # Refused at once, without a request, and told to try again in a second.
    assert all(
        isinstance(r, ModelCircuitOpen) and r.retry_after == PROBE_WAIT_SECONDS
        for r in while_probing
    ), while_probing
    assert len(fake_openrouter.requests) == sent + 1
    assert not probe.done()
    gate.set()
    assert await asyncio.wait_for(probe, NO_HANG_WITHIN) == "echo: probe"
    assert breaker.state(MODEL) == "closed"

    # Closed: everyone is answered again, one request each.
    answered = await everyone("and now?", users[1:])
    assert answered == ["echo: and now?"] * (CONCURRENT_USERS - 1)
    assert len(fake_openrouter.requests) == sent + CONCURRENT_USERS
    for user in users[1:]:
        assert [role for role, _ in await history(guarded_chat, user)] == [
            "user", "user", "user", "user", "assistant",
        ]  # fmt: skip
    assert sample(metrics, "chatbridge_model_breaker_opens_total", model=MODEL) == 1
    assert sample(metrics, "chatbridge_model_breakers_open") == 0
    refusals = sample(metrics, "chatbridge_model_breaker_refusals_total", model=MODEL)
    assert refusals >= 2 * CONCURRENT_USERS - 1  # the 50 while open and the 49 while probing
    turns_refused = sample(
        metrics, "chatbridge_turns_total", front="unknown", outcome="model_circuit_open"
    )
    assert turns_refused >= 2 * CONCURRENT_USERS - 1


async def test_a_failed_probe_opens_the_breaker_for_another_cooldown(
    guarded_chat: ChatService,
    fake_openrouter: FakeOpenRouter,
    breaker: ModelBreaker,
    clock: FakeClock,
):
    fake_openrouter.server_error(503, times=STORM)
    while breaker.state(MODEL) != "open":
        await outcome_of(guarded_chat, "failing")
    sent = len(fake_openrouter.requests)

    clock.advance(COOLDOWN)
    probe = await outcome_of(guarded_chat, "probe")

    # The probe failed: its retry was refused by the breaker it reopened.
    assert isinstance(probe, ModelCircuitOpen)
    assert probe.retry_after == COOLDOWN
    assert len(fake_openrouter.requests) == sent + 1
    clock.advance(COOLDOWN - 1)
    assert isinstance(await outcome_of(guarded_chat, "still open"), ModelCircuitOpen)
    assert len(fake_openrouter.requests) == sent + 1


async def test_with_a_real_clock_the_breaker_closes_after_its_cooldown(
    store: SessionStore, fake_openrouter: FakeOpenRouter, turn_settings: TurnSettings
):
    """The one test on the real monotonic clock, with a cool-down of a fifth of a second."""
    breaker = ModelBreaker(failures=1, cooldown=0.2)
    client = guarded_client(fake_openrouter.base_url, breaker)
    chat = ChatService(store, client, turn_settings)
    fake_openrouter.server_error(502)
    try:
        assert isinstance(await outcome_of(chat, "fails"), ModelCircuitOpen)
        assert len(fake_openrouter.requests) == 1
        await asyncio.sleep(0.25)
        assert await run_turn(chat, "works") == "echo: works"
    finally:
        await client.aclose()
    assert breaker.state(MODEL) == "closed"
