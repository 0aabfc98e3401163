"""The OpenRouter client against the strict fake OpenRouter, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from core.conversation import Usage
from core.errors import (
    ModelCircuitOpen,
    ModelEmptyAnswer,
    ModelError,
    ModelNotConfigured,
    ModelRateLimited,
    ModelRejected,
    ModelStreamBroken,
    ModelTimeout,
    ModelUnavailable,
)
from core.llm.breaker import ModelBreaker
from core.llm.openrouter import OpenRouterClient, RetryPolicy
from core.llm.wire import ChatMessage, Completion, CompletionDone, StreamEvent, TextDelta
from core.settings import Settings
from tests.fakes.openrouter_server import FAKE_API_KEY, FakeOpenRouter

pytest_plugins = ("tests.fakes.openrouter_server",)

MODEL = "openai/gpt-4o-mini"
FALLBACKS = ("anthropic/claude-3.5-haiku", "meta-llama/llama-3.1-8b-instruct")
MESSAGES = (ChatMessage("system", "Answer briefly."), ChatMessage("user", "hello there"))
ECHO = "echo: hello there"
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, max_retry_after=5.0)


@asynccontextmanager
async def open_client(
    base_url: str, *, api_key: str | None = FAKE_API_KEY, **options: Any
) -> AsyncIterator[OpenRouterClient]:
    options.setdefault("retry", FAST_RETRY)
    client = OpenRouterClient(
        api_key=None if api_key is None else SecretStr(api_key), base_url=base_url, **options
    )
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def client(fake_openrouter: FakeOpenRouter) -> AsyncIterator[OpenRouterClient]:
    async with open_client(fake_openrouter.base_url) as opened:
        yield opened


async def collect(client: OpenRouterClient, model: str = MODEL) -> list[StreamEvent]:
    return [event async for event in client.stream(MESSAGES, model=model)]


async def reply_text(client: OpenRouterClient, *, is_streaming: bool) -> str:
    if not is_streaming:
        return (await client.complete(MESSAGES, model=MODEL)).text
    return "".join(e.text for e in await collect(client) if isinstance(e, TextDelta))


async def stream_until_failure(client: OpenRouterClient) -> tuple[list[StreamEvent], ModelError]:
    """The events a failing stream yielded, and the error it ended with."""
    received: list[StreamEvent] = []
    try:
        async for event in client.stream(MESSAGES, model=MODEL):
            received.append(event)
    except ModelError as error:
        return received, error
    raise AssertionError("the stream ended without an error")


def texts_of(events: list[StreamEvent]) -> list[str]:
    return [event.text for event in events if isinstance(event, TextDelta)]


both_modes = pytest.mark.parametrize("is_streaming", [False, True], ids=["complete", "stream"])


# Replies


async def test_complete_returns_the_reply_its_model_and_usage(client: OpenRouterClient) -> None:
    completion = await client.complete(MESSAGES, model=MODEL)

    assert completion == Completion(
        text=ECHO,
        model=MODEL,
        usage=Usage(prompt_tokens=4, completion_tokens=3, cost=1e-5),
        finish_reason="stop",
    )


async def test_stream_deltas_join_to_the_reply_and_end_with_completion_done(
    client: OpenRouterClient,
) -> None:
    events = await collect(client)

    assert len(texts_of(events)) > 1
    assert "".join(texts_of(events)) == ECHO
    assert events[-1] == CompletionDone(
        model=MODEL,
        usage=Usage(prompt_tokens=4, completion_tokens=3, cost=1e-5),
        finish_reason="stop",
    )
    assert all(isinstance(event, TextDelta) for event in events[:-1])


async def test_processing_comments_between_chunks_are_ignored(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.sends_comment_between_chunks = True

    events = await collect(client)

    assert "".join(texts_of(events)) == ECHO
    assert not any("OPENROUTER" in text for text in texts_of(events))


@both_modes
async def test_usage_without_cost_reports_cost_as_none(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient, is_streaming: bool
) -> None:
    fake_openrouter.reports_cost = False

    if is_streaming:
        done = (await collect(client))[-1]
        assert isinstance(done, CompletionDone)
        usage = done.usage
    else:
        usage = (await client.complete(MESSAGES, model=MODEL)).usage

    assert usage == Usage(prompt_tokens=4, completion_tokens=3, cost=None)


async def test_scripted_reply_text_is_streamed_in_several_deltas(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.reply_text = "Paris is the capital of France."

    events = await collect(client)

    assert "".join(texts_of(events)) == "Paris is the capital of France."


# What goes over the wire


@both_modes
async def test_requests_carry_the_key_referer_and_title_headers(
    fake_openrouter: FakeOpenRouter, is_streaming: bool
) -> None:
    async with open_client(
        fake_openrouter.base_url, app_url="https://example.org/bridge", app_title="bridge-test"
    ) as client:
        await reply_text(client, is_streaming=is_streaming)

    (request,) = fake_openrouter.requests
    assert request.path == "/api/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {FAKE_API_KEY}"
    assert request.headers["HTTP-Referer"] == "https://example.org/bridge"
    assert request.headers["X-Title"] == "bridge-test"


@both_modes
async def test_body_names_the_model_and_asks_for_usage_without_a_models_list(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient, is_streaming: bool
) -> None:
    await reply_text(client, is_streaming=is_streaming)

    (request,) = fake_openrouter.requests
    assert request.body == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "hello there"},
        ],
        "stream": is_streaming,
        "usage": {"include": True},
    }


@both_modes
async def test_max_tokens_is_sent_and_caps_the_answer(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient, is_streaming: bool
) -> None:
    fake_openrouter.reply_text = "Paris is the capital of France."

    if is_streaming:
        events = [e async for e in client.stream(MESSAGES, model=MODEL, max_tokens=3)]
        text, done = "".join(texts_of(events)), events[-1]
        assert isinstance(done, CompletionDone)
        finish_reason = done.finish_reason
    else:
        completion = await client.complete(MESSAGES, model=MODEL, max_tokens=3)
        text, finish_reason = completion.text, completion.finish_reason

    assert fake_openrouter.requests[-1].body["max_tokens"] == 3
    assert (text, finish_reason) == ("Paris is the", "length")


@pytest.mark.parametrize("max_tokens", [0, -1])
async def test_a_max_tokens_openrouter_would_refuse_is_refused_by_the_fake(
    client: OpenRouterClient, max_tokens: int
) -> None:
    with pytest.raises(ModelRejected) as rejected:
        await client.complete(MESSAGES, model=MODEL, max_tokens=max_tokens)
    assert rejected.value.params["status"] == 400


async def test_an_error_once_the_model_had_the_request_says_so_and_what_it_reported(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.empty_answer(with_usage=True).empty_answer().cut_stream(after_deltas=1)
    fake_openrouter.server_error(500)

    reported = [(await stream_until_failure(client))[1] for _ in range(4)]

    assert [(e.reached_model, e.reported_tokens) for e in reported] == [
        (True, 4), (True, None), (True, None), (False, None),
    ]  # fmt: skip


async def test_body_lists_the_model_then_the_fallbacks_when_fallbacks_are_configured(
    fake_openrouter: FakeOpenRouter,
) -> None:
    async with open_client(fake_openrouter.base_url, fallback_models=FALLBACKS) as client:
        await client.complete(MESSAGES, model=MODEL)

    (request,) = fake_openrouter.requests
    assert request.body["model"] == MODEL
    assert request.body["models"] == [MODEL, *FALLBACKS]


@both_modes
async def test_reply_names_the_fallback_model_that_actually_answered(
    fake_openrouter: FakeOpenRouter, is_streaming: bool
) -> None:
    fake_openrouter.primary_fails()

    async with open_client(fake_openrouter.base_url, fallback_models=FALLBACKS) as client:
        if is_streaming:
            answer: Completion | StreamEvent = (await collect(client))[-1]
        else:
            answer = await client.complete(MESSAGES, model=MODEL)

    assert isinstance(answer, Completion | CompletionDone)
    assert answer.model == FALLBACKS[0]


async def test_from_settings_uses_the_key_base_url_and_fallback_models(
    fake_openrouter: FakeOpenRouter,
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        openrouter_api_key=SecretStr(FAKE_API_KEY),
        openrouter_base_url=fake_openrouter.base_url,
        fallback_models=FALLBACKS,
    )
    client = OpenRouterClient.from_settings(settings)
    try:
        completion = await client.complete(MESSAGES, model=MODEL)
    finally:
        await client.aclose()

    assert completion.text == ECHO
    assert client.is_configured
    assert fake_openrouter.requests[0].body["models"] == [MODEL, *FALLBACKS]


# Retries


@both_modes
async def test_rate_limited_request_is_retried_after_retry_after(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient, is_streaming: bool
) -> None:
    fake_openrouter.rate_limit(retry_after=1)

    with capture_logs() as logs:
        text = await reply_text(client, is_streaming=is_streaming)

    assert text == ECHO
    assert len(fake_openrouter.requests) == 2
    (retry,) = [log for log in logs if log["event"] == "model_retry"]
    assert retry["status"] == 429
    assert retry["delay"] == 1.0


@both_modes
async def test_retry_after_beyond_the_cap_raises_rate_limited_at_once(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient, is_streaming: bool
) -> None:
    fake_openrouter.rate_limit(retry_after=60)

    with pytest.raises(ModelRateLimited) as caught:
        await reply_text(client, is_streaming=is_streaming)

    assert caught.value.retry_after == 60
    assert len(fake_openrouter.requests) == 1


async def test_retry_after_given_as_an_http_date_is_understood(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.rate_limit(retry_after=120, as_http_date=True)

    with pytest.raises(ModelRateLimited) as caught:
        await client.complete(MESSAGES, model=MODEL)

    assert caught.value.retry_after is not None
    assert 100 < caught.value.retry_after <= 121
    assert len(fake_openrouter.requests) == 1


async def test_rate_limited_every_time_raises_rate_limited_after_all_attempts(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.rate_limit(retry_after=0, times=FAST_RETRY.attempts + 2)

    with pytest.raises(ModelRateLimited) as caught:
        await client.complete(MESSAGES, model=MODEL)

    assert caught.value.retry_after == 0
    assert len(fake_openrouter.requests) == FAST_RETRY.attempts


@both_modes
async def test_server_errors_twice_then_success_is_retried(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient, is_streaming: bool
) -> None:
    fake_openrouter.server_error(502).server_error(503)

    assert await reply_text(client, is_streaming=is_streaming) == ECHO
    assert len(fake_openrouter.requests) == 3


@pytest.mark.parametrize("status", [502, 503])
async def test_server_error_every_time_raises_unavailable_after_all_attempts(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient, status: int
) -> None:
    fake_openrouter.server_error(status, times=FAST_RETRY.attempts + 2)

    with pytest.raises(ModelUnavailable):
        await client.complete(MESSAGES, model=MODEL)

    assert len(fake_openrouter.requests) == FAST_RETRY.attempts


async def test_attempts_in_the_retry_policy_bound_the_requests(
    fake_openrouter: FakeOpenRouter,
) -> None:
    fake_openrouter.server_error(502, times=10)
    policy = RetryPolicy(attempts=5, base_delay=0.001, max_delay=0.002)

    async with open_client(fake_openrouter.base_url, retry=policy) as client:
        with pytest.raises(ModelUnavailable):
            await collect(client)

    assert len(fake_openrouter.requests) == 5


@both_modes
@pytest.mark.parametrize(
    ("status", "error"), [(408, ModelTimeout), (500, ModelUnavailable), (504, ModelUnavailable)]
)
async def test_a_status_that_may_come_after_the_model_worked_is_not_retried(
    fake_openrouter: FakeOpenRouter,
    client: OpenRouterClient,
    status: int,
    error: type[ModelError],
    is_streaming: bool,
) -> None:
    fake_openrouter.server_error(status, times=FAST_RETRY.attempts)

    with pytest.raises(error):
        await reply_text(client, is_streaming=is_streaming)

    assert len(fake_openrouter.requests) == 1


@both_modes
@pytest.mark.parametrize("status", [400, 401, 402, 403, 404])
async def test_client_errors_are_rejected_without_retry(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient, status: int, is_streaming: bool
) -> None:
    fake_openrouter.reject(status)

    with pytest.raises(ModelRejected) as caught:
        await reply_text(client, is_streaming=is_streaming)

    assert caught.value.params["status"] == status
    assert len(fake_openrouter.requests) == 1


async def test_wrong_api_key_is_rejected_as_401_without_retry(
    fake_openrouter: FakeOpenRouter,
) -> None:
    async with open_client(fake_openrouter.base_url, api_key="sk-or-v1-not-the-key") as client:
        with pytest.raises(ModelRejected) as caught:
            await client.complete(MESSAGES, model=MODEL)

    assert caught.value.params["status"] == 401
    assert len(fake_openrouter.requests) == 1


async def test_refused_connection_raises_unavailable_after_all_attempts() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    async with open_client(f"http://127.0.0.1:{closed_port}/api/v1") as client:
        with capture_logs() as logs, pytest.raises(ModelUnavailable):
            await client.complete(MESSAGES, model=MODEL)

    retries = [log for log in logs if log["event"] == "model_retry"]
    assert len(retries) == FAST_RETRY.attempts - 1


async def test_retries_are_logged_with_status_attempt_and_delay_but_never_the_key(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.server_error(503).server_error(502)

    with capture_logs() as logs:
        await client.complete(MESSAGES, model=MODEL)

    retries = [log for log in logs if log["event"] == "model_retry"]
    assert [(log["status"], log["attempt"]) for log in retries] == [(503, 1), (502, 2)]
    assert all(0 <= log["delay"] <= FAST_RETRY.max_delay for log in retries)
    assert all(log["log_level"] == "warning" for log in retries)
    assert FAKE_API_KEY not in repr(logs)


# Timeouts and broken streams


@both_modes
async def test_response_slower_than_the_read_timeout_raises_timeout(
    fake_openrouter: FakeOpenRouter, is_streaming: bool
) -> None:
    fake_openrouter.slow(5)

    async with open_client(fake_openrouter.base_url, read_timeout=0.2) as client:
        with pytest.raises(ModelTimeout):
            await reply_text(client, is_streaming=is_streaming)


async def test_first_token_slower_than_the_read_timeout_raises_timeout(
    fake_openrouter: FakeOpenRouter,
) -> None:
    fake_openrouter.slow_first_token(5)

    async with open_client(fake_openrouter.base_url, read_timeout=0.2) as client:
        with pytest.raises(ModelTimeout):
            await collect(client)


async def test_stream_stalling_after_some_text_raises_stream_broken_with_that_text(
    fake_openrouter: FakeOpenRouter,
) -> None:
    fake_openrouter.stall(after_deltas=3, seconds=5)

    async with open_client(fake_openrouter.base_url, read_timeout=0.2) as client:
        received, error = await stream_until_failure(client)

    assert len(texts_of(received)) == len(received) == 3
    assert isinstance(error, ModelStreamBroken)
    assert error.partial_text == "".join(texts_of(received))
    assert len(fake_openrouter.requests) == 1


async def test_stream_cut_mid_reply_raises_stream_broken_with_the_partial_text(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.cut_stream(after_deltas=2)

    received, error = await stream_until_failure(client)

    assert len(texts_of(received)) == len(received) == 2
    assert isinstance(error, ModelStreamBroken)
    assert error.partial_text == "".join(texts_of(received))
    assert ECHO.startswith(error.partial_text)
    assert len(fake_openrouter.requests) == 1


async def test_stream_cut_before_any_text_is_not_retried(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.cut_stream(after_deltas=0, times=FAST_RETRY.attempts)

    with pytest.raises(ModelUnavailable):
        await collect(client)

    assert len(fake_openrouter.requests) == 1


@both_modes
@pytest.mark.parametrize(
    ("is_reset", "seen_as"),
    [(False, httpx.RemoteProtocolError), (True, httpx.ReadError)],
    ids=["closed", "reset"],
)
async def test_a_connection_lost_after_the_request_was_sent_is_not_retried(
    fake_openrouter: FakeOpenRouter,
    client: OpenRouterClient,
    is_reset: bool,
    seen_as: type[httpx.HTTPError],
    is_streaming: bool,
) -> None:
    # The fake read the whole request, then went away before answering: the model may be
    # generating, and a second request would be a second bill.
    fake_openrouter.drop_after_request(is_reset=is_reset, times=FAST_RETRY.attempts)

    with capture_logs() as logs, pytest.raises(ModelUnavailable) as caught:
        await reply_text(client, is_streaming=is_streaming)

    assert isinstance(caught.value.__cause__, seen_as)
    assert len(fake_openrouter.requests) == 1
    assert not [log for log in logs if log["event"] == "model_retry"]


async def test_error_chunk_raises_stream_broken_and_its_text_is_never_yielded(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.error_chunk(after_deltas=2, code=502, message="UPSTREAM-EXPLODED")

    received, error = await stream_until_failure(client)

    assert len(texts_of(received)) == len(received) == 2
    assert isinstance(error, ModelStreamBroken)
    assert error.partial_text == "".join(texts_of(received))
    assert not any("UPSTREAM-EXPLODED" in text for text in texts_of(received))
    assert "UPSTREAM-EXPLODED" not in str(error)
    assert len(fake_openrouter.requests) == 1


async def test_error_chunk_before_any_text_is_not_retried_and_fails_as_its_code_says(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.error_chunk(after_deltas=0, code=502, times=FAST_RETRY.attempts)

    with pytest.raises(ModelUnavailable):
        await collect(client)

    assert len(fake_openrouter.requests) == 1


async def test_error_chunk_before_any_text_with_a_string_code_is_a_broken_stream(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.error_chunk(after_deltas=0, code="server_error")

    with pytest.raises(ModelStreamBroken) as caught:
        await collect(client)

    assert caught.value.partial_text == ""
    assert len(fake_openrouter.requests) == 1


async def test_error_in_a_whole_reply_is_not_retried_and_fails_as_its_code_says(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.error_chunk(after_deltas=0, code=503, times=FAST_RETRY.attempts)

    with pytest.raises(ModelUnavailable):
        await client.complete(MESSAGES, model=MODEL)

    assert len(fake_openrouter.requests) == 1


# Empty answers

EMPTY_ANSWERS: dict[str, Callable[[FakeOpenRouter], object]] = {
    "done_alone": lambda fake: fake.empty_answer(times=FAST_RETRY.attempts),
    "finish_reason_alone": lambda fake: setattr(fake, "reply_text", ""),
    "whitespace_only": lambda fake: setattr(fake, "reply_text", " \n\t \n"),
}


@both_modes
@pytest.mark.parametrize("answer", EMPTY_ANSWERS)
async def test_an_answer_without_text_is_an_empty_answer_and_not_retried(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient, answer: str, is_streaming: bool
) -> None:
    EMPTY_ANSWERS[answer](fake_openrouter)

    with pytest.raises(ModelEmptyAnswer):
        await reply_text(client, is_streaming=is_streaming)

    assert len(fake_openrouter.requests) == 1  # the model had the request: asking again bills


@both_modes
async def test_empty_answers_count_as_failures_for_the_models_breaker(
    fake_openrouter: FakeOpenRouter, is_streaming: bool
) -> None:
    breaker = ModelBreaker(failures=2, cooldown=60)
    fake_openrouter.empty_answer(times=3)

    async with open_client(fake_openrouter.base_url, breaker=breaker) as client:
        for _ in range(2):
            with pytest.raises(ModelEmptyAnswer):
                await reply_text(client, is_streaming=is_streaming)
        assert breaker.state(MODEL) == "open"
        with pytest.raises(ModelCircuitOpen):
            await reply_text(client, is_streaming=is_streaming)

    assert len(fake_openrouter.requests) == 2


async def test_leaving_a_stream_early_releases_the_connection(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    events = client.stream(MESSAGES, model=MODEL)
    first = await anext(events)
    await events.aclose()

    assert isinstance(first, TextDelta)
    assert (await client.complete(MESSAGES, model=MODEL)).text == ECHO


# Configuration and secrecy


@both_modes
@pytest.mark.parametrize("api_key", [None, "", "   "], ids=["none", "empty", "blank"])
async def test_missing_api_key_raises_not_configured_without_a_request(
    fake_openrouter: FakeOpenRouter, api_key: str | None, is_streaming: bool
) -> None:
    async with open_client(fake_openrouter.base_url, api_key=api_key) as client:
        assert not client.is_configured
        with pytest.raises(ModelNotConfigured):
            await reply_text(client, is_streaming=is_streaming)

    assert fake_openrouter.requests == []


FAULTS: dict[str, Callable[[FakeOpenRouter], object]] = {
    "rate_limited_over_cap": lambda fake: fake.rate_limit(retry_after=60),
    "rate_limited_always": lambda fake: fake.rate_limit(retry_after=0, times=9),
    "server_error_always": lambda fake: fake.server_error(500, times=9),
    "rejected": lambda fake: fake.reject(400),
    "unauthorized": lambda fake: fake.reject(401),
    "slow": lambda fake: fake.slow(5),
    "cut_mid_stream": lambda fake: fake.cut_stream(after_deltas=2, times=9),
    "error_chunk": lambda fake: fake.error_chunk(after_deltas=1, message=FAKE_API_KEY, times=9),
}


@both_modes
@pytest.mark.parametrize("fault", FAULTS)
async def test_errors_never_contain_the_api_key_or_the_response_body(
    fake_openrouter: FakeOpenRouter, fault: str, is_streaming: bool
) -> None:
    FAULTS[fault](fake_openrouter)

    async with open_client(fake_openrouter.base_url, read_timeout=0.2) as client:
        with pytest.raises(ModelError) as caught:
            await reply_text(client, is_streaming=is_streaming)

    shown = f"{caught.value} {caught.value!r} {caught.value.params}"
    assert FAKE_API_KEY not in shown
    assert "Bearer" not in shown
    assert "Fake failure" not in shown
    assert "Rate limit exceeded" not in shown


# The fake itself: as strict as the real service


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": "hi"}]},
        {"model": MODEL},
        {"model": MODEL, "messages": []},
        {"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]},
        {"model": MODEL, "messages": [{"role": "user"}]},
        {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "models": []},
    ],
    ids=["no_model", "no_messages", "empty_messages", "bad_role", "no_content", "empty_models"],
)
async def test_fake_refuses_malformed_requests_with_400(
    fake_openrouter: FakeOpenRouter, body: dict[str, Any]
) -> None:
    async with httpx.AsyncClient() as raw:
        response = await raw.post(
            f"{fake_openrouter.base_url}/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {FAKE_API_KEY}"},
        )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == 400
    assert len(fake_openrouter.requests) == 1


async def test_fake_refuses_a_missing_key_with_401(fake_openrouter: FakeOpenRouter) -> None:
    async with httpx.AsyncClient() as raw:
        response = await raw.post(
            f"{fake_openrouter.base_url}/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == 401
