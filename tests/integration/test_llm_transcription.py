"""OpenRouterClient.transcribe against the strict fake OpenRouter, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from core.errors import ModelCircuitOpen, TranscriptionEmpty, TranscriptionFailed
from core.llm.breaker import ModelBreaker
from core.llm.openrouter import OpenRouterClient
from core.llm.transcription import MAX_AUDIO_BYTES, Transcript, TranscriptUsage
from core.llm.wire import ChatMessage
from core.settings import Settings
from tests.fakes.openrouter_server import FAKE_API_KEY, FakeOpenRouter
from tests.integration.test_llm_openrouter import FAST_RETRY, open_client

pytest_plugins = ("tests.fakes.openrouter_server",)

WHISPER = "openai/whisper-1"
SPOKEN = b"what is the weather like in Lisbon"
VOICE_NOTE = "audio/ogg"


@pytest.fixture
async def client(fake_openrouter: FakeOpenRouter) -> AsyncIterator[OpenRouterClient]:
    async with open_client(fake_openrouter.base_url) as opened:
        yield opened


async def failure_of(
    client: OpenRouterClient, audio: bytes = SPOKEN, media_type: str = VOICE_NOTE
) -> TranscriptionFailed:
    with pytest.raises(TranscriptionFailed) as caught:
        await client.transcribe(audio, media_type)
    return caught.value


# Transcripts


async def test_the_transcript_comes_with_its_model_usage_and_generation_id(
    client: OpenRouterClient,
) -> None:
    transcript = await client.transcribe(SPOKEN, VOICE_NOTE)

    assert transcript == Transcript(
        text=SPOKEN.decode(),
        model=WHISPER,
        usage=TranscriptUsage(seconds=0.002, cost=2e-7),
        generation_id="gen-stt-fake-1",
    )


async def test_the_request_is_the_model_and_the_audio_in_base64_with_its_format(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    await client.transcribe(SPOKEN, VOICE_NOTE)

    (request,) = fake_openrouter.transcriptions.requests
    assert request.body == {
        "model": WHISPER,
        "input_audio": {"data": base64.b64encode(SPOKEN).decode(), "format": "ogg"},
    }
    assert request.headers["Authorization"] == f"Bearer {FAKE_API_KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Title"] == "chatbridge"


@pytest.mark.parametrize(
    ("media_type", "audio_format"),
    [("audio/ogg", "ogg"), ("audio/ogg; codecs=opus", "ogg"), ("AUDIO/OGG", "ogg"),
     ("audio/mpeg", "mp3"), ("audio/x-wav", "wav"), ("audio/wav", "wav"), ("audio/flac", "flac"),
     ("audio/mp4", "m4a"), ("audio/x-m4a", "m4a"), ("audio/webm", "webm"), ("audio/aac", "aac")],
)  # fmt: skip
async def test_each_media_type_is_sent_as_the_format_openrouter_names_it(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient, media_type: str, audio_format: str
) -> None:
    await client.transcribe(SPOKEN, media_type)

    (request,) = fake_openrouter.transcriptions.requests
    assert request.body["input_audio"]["format"] == audio_format


async def test_a_model_given_overrides_the_transcription_model(
    fake_openrouter: FakeOpenRouter,
) -> None:
    async with open_client(fake_openrouter.base_url, transcription_model="deepgram/nova-3") as c:
        assert (await c.transcribe(SPOKEN, VOICE_NOTE)).model == "deepgram/nova-3"
        assert (await c.transcribe(SPOKEN, VOICE_NOTE, model="google/chirp-3")).model == (
            "google/chirp-3"
        )

    models = [request.body["model"] for request in fake_openrouter.transcriptions.requests]
    assert models == ["deepgram/nova-3", "google/chirp-3"]


async def test_from_settings_transcribes_with_transcription_model(
    fake_openrouter: FakeOpenRouter,
) -> None:
    settings = Settings(
        openrouter_api_key=SecretStr(FAKE_API_KEY),
        openrouter_base_url=fake_openrouter.base_url,
        transcription_model="openai/gpt-4o-transcribe",
    )
    client = OpenRouterClient.from_settings(settings)
    try:
        transcript = await client.transcribe(SPOKEN, VOICE_NOTE)
    finally:
        await client.aclose()

    assert transcript.model == "openai/gpt-4o-transcribe"


async def test_the_transcript_is_trimmed_and_usage_may_be_missing(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.transcriptions.text = "  Hello there.\n"
    fake_openrouter.transcriptions.reports_usage = False

    transcript = await client.transcribe(SPOKEN, VOICE_NOTE)

    assert (transcript.text, transcript.usage) == ("Hello there.", None)


# Refused before sending


@pytest.mark.parametrize("size", [999, 1000], ids=["below", "at"])
async def test_audio_up_to_the_limit_is_sent(fake_openrouter: FakeOpenRouter, size: int) -> None:
    fake_openrouter.transcriptions.text = "words"

    async with open_client(fake_openrouter.base_url, max_audio_bytes=1000) as client:
        assert (await client.transcribe(b"a" * size, VOICE_NOTE)).text == "words"

    assert len(fake_openrouter.transcriptions.requests) == 1


async def test_audio_over_the_limit_is_refused_without_a_request(
    fake_openrouter: FakeOpenRouter,
) -> None:
    async with open_client(fake_openrouter.base_url, max_audio_bytes=1000) as client:
        error = await failure_of(client, b"a" * 1001)

    assert error.reason == "too_large"
    assert error.params == {"reason": "too_large", "size": 1001, "limit": 1000}
    assert fake_openrouter.requests == []


async def test_the_default_limit_is_openrouters_25_mb_at_which_audio_is_sent_and_taken(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.transcriptions.text = "a long recording"

    assert client.max_audio_bytes == MAX_AUDIO_BYTES == 25_000_000
    assert (await client.transcribe(b"\0" * MAX_AUDIO_BYTES, VOICE_NOTE)).text == (
        "a long recording"
    )
    error = await failure_of(client, b"\0" * (MAX_AUDIO_BYTES + 1))
    assert (error.reason, error.params["size"]) == ("too_large", MAX_AUDIO_BYTES + 1)
    assert len(fake_openrouter.transcriptions.requests) == 1


@pytest.mark.parametrize("media_type", ["video/mp4", "audio/x-tracker", "text/plain", ""])
async def test_a_media_type_openrouter_does_not_take_is_refused_without_a_request(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient, media_type: str
) -> None:
    error = await failure_of(client, media_type=media_type)

    assert error.reason == "unsupported_format"
    assert error.params["media_type"] == (media_type or "?")
    assert fake_openrouter.requests == []


async def test_no_audio_at_all_is_an_empty_transcription_without_a_request(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    with pytest.raises(TranscriptionEmpty):
        await client.transcribe(b"", VOICE_NOTE)

    assert fake_openrouter.requests == []


@pytest.mark.parametrize("api_key", [None, "", "   "], ids=["none", "empty", "blank"])
async def test_without_a_key_nothing_is_sent(
    fake_openrouter: FakeOpenRouter, api_key: str | None
) -> None:
    async with open_client(fake_openrouter.base_url, api_key=api_key) as client:
        assert (await failure_of(client)).reason == "not_configured"

    assert fake_openrouter.requests == []


# Empty transcripts


@pytest.mark.parametrize("heard", ["", "   \n\t"], ids=["nothing", "whitespace"])
async def test_a_transcript_without_words_is_an_empty_transcription_and_not_retried(
    fake_openrouter: FakeOpenRouter, heard: str
) -> None:
    fake_openrouter.transcriptions.text = heard
    breaker = ModelBreaker(failures=1, cooldown=60)

    async with open_client(fake_openrouter.base_url, breaker=breaker) as client:
        with pytest.raises(TranscriptionEmpty) as caught:
            await client.transcribe(SPOKEN, VOICE_NOTE)

    assert caught.value.code == "transcription_empty"
    assert len(fake_openrouter.transcriptions.requests) == 1
    assert breaker.state(WHISPER) == "closed"  # silence is no fault of the provider's


# Failures, each mapped to its reason


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 422])
async def test_a_refusal_is_rejected_with_its_status_and_not_retried(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient, status: int
) -> None:
    fake_openrouter.transcriptions.reject(status, times=3)

    error = await failure_of(client)

    assert (error.reason, error.params["status"]) == ("rejected", status)
    assert len(fake_openrouter.transcriptions.requests) == 1


async def test_openrouters_own_size_refusal_is_too_large_without_sizes(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.transcriptions.reject(413)

    error = await failure_of(client)

    assert error.params == {"reason": "too_large"}
    assert len(fake_openrouter.transcriptions.requests) == 1


async def test_a_chat_model_as_transcription_model_is_rejected_by_openrouter(
    fake_openrouter: FakeOpenRouter,
) -> None:
    async with open_client(fake_openrouter.base_url, transcription_model="openai/gpt-4o") as c:
        error = await failure_of(c)

    assert (error.reason, error.params["status"]) == ("rejected", 400)


async def test_a_wrong_key_is_rejected_as_401(fake_openrouter: FakeOpenRouter) -> None:
    async with open_client(fake_openrouter.base_url, api_key="sk-or-v1-not-the-key") as client:
        error = await failure_of(client)

    assert (error.reason, error.params["status"]) == ("rejected", 401)
    assert len(fake_openrouter.transcriptions.requests) == 1


async def test_rate_limited_then_answered_is_retried_after_retry_after_into_one_transcript(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.transcriptions.rate_limit(retry_after=0)

    with capture_logs() as logs:
        transcript = await client.transcribe(SPOKEN, VOICE_NOTE)

    assert transcript.text == SPOKEN.decode()
    assert len(fake_openrouter.transcriptions.requests) == 2
    (retry,) = [log for log in logs if log["event"] == "model_retry"]
    assert (retry["status"], retry["delay"]) == (429, 0.0)


async def test_rate_limited_every_time_is_rate_limited_after_all_attempts(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.transcriptions.rate_limit(retry_after=0, times=FAST_RETRY.attempts + 2)

    error = await failure_of(client)

    assert (error.reason, error.retry_after) == ("rate_limited", 0)
    assert len(fake_openrouter.transcriptions.requests) == FAST_RETRY.attempts


async def test_a_retry_after_beyond_the_cap_is_rate_limited_at_once_with_that_wait(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.transcriptions.rate_limit(retry_after=60)

    error = await failure_of(client)

    assert (error.reason, error.retry_after) == ("rate_limited", 60)
    assert len(fake_openrouter.transcriptions.requests) == 1


async def test_bad_gateway_then_unavailable_then_answered_is_retried(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.transcriptions.server_error(502).server_error(503)

    assert (await client.transcribe(SPOKEN, VOICE_NOTE)).text == SPOKEN.decode()
    assert len(fake_openrouter.transcriptions.requests) == 3


@pytest.mark.parametrize(
    ("status", "reason"), [(500, "unavailable"), (504, "unavailable"), (408, "timeout")]
)
async def test_a_status_that_may_come_after_the_model_heard_the_audio_is_not_retried(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient, status: int, reason: str
) -> None:
    fake_openrouter.transcriptions.server_error(status, times=FAST_RETRY.attempts)

    assert (await failure_of(client)).reason == reason
    assert len(fake_openrouter.transcriptions.requests) == 1


async def test_an_answer_slower_than_the_transcription_timeout_is_a_timeout_not_retried(
    fake_openrouter: FakeOpenRouter,
) -> None:
    fake_openrouter.transcriptions.slow(5, times=FAST_RETRY.attempts)

    async with open_client(fake_openrouter.base_url, transcription_timeout=0.2) as client:
        error = await failure_of(client)

    assert error.reason == "timeout"
    assert len(fake_openrouter.transcriptions.requests) == 1


async def test_the_transcription_timeout_is_its_own_not_the_chat_read_timeout(
    fake_openrouter: FakeOpenRouter,
) -> None:
    fake_openrouter.transcriptions.slow(0.3)

    async with open_client(
        fake_openrouter.base_url, read_timeout=0.1, transcription_timeout=10
    ) as client:
        assert (await client.transcribe(SPOKEN, VOICE_NOTE)).text == SPOKEN.decode()


@pytest.mark.parametrize("is_reset", [False, True], ids=["closed", "reset"])
async def test_a_connection_lost_after_the_audio_was_sent_is_unavailable_not_retried(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient, is_reset: bool
) -> None:
    fake_openrouter.transcriptions.drop_after_request(is_reset=is_reset, times=3)

    assert (await failure_of(client)).reason == "unavailable"
    assert len(fake_openrouter.transcriptions.requests) == 1


async def test_a_refused_connection_is_unavailable_after_all_attempts() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    async with open_client(f"http://127.0.0.1:{closed_port}/api/v1") as client:
        with capture_logs() as logs:
            error = await failure_of(client)

    assert error.reason == "unavailable"
    assert len([log for log in logs if log["event"] == "model_retry"]) == FAST_RETRY.attempts - 1


async def test_an_unreadable_answer_is_unavailable_and_not_retried(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.transcriptions.garbled_answer(times=3)

    assert (await failure_of(client)).reason == "unavailable"
    assert len(fake_openrouter.transcriptions.requests) == 1


async def test_the_failure_behind_a_transcription_failure_is_its_cause(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.transcriptions.reject(402)

    error = await failure_of(client)

    assert type(error.__cause__).__name__ == "ModelRejected"


# The circuit breaker


async def test_repeated_failures_open_the_transcription_models_circuit_and_not_the_chats(
    fake_openrouter: FakeOpenRouter,
) -> None:
    breaker = ModelBreaker(failures=2, cooldown=60)
    fake_openrouter.transcriptions.server_error(500, times=2)

    async with open_client(fake_openrouter.base_url, breaker=breaker) as client:
        for _ in range(2):
            assert (await failure_of(client)).reason == "unavailable"
        refused = await failure_of(client)
        reply = await client.complete([ChatMessage("user", "hi")], model="openai/gpt-4o-mini")

    assert (refused.reason, refused.retry_after) == ("unavailable", 60)
    assert isinstance(refused.__cause__, ModelCircuitOpen)
    assert len(fake_openrouter.transcriptions.requests) == 2
    assert reply.text == "echo: hi"
    assert breaker.state(WHISPER) == "open"
    assert breaker.state("openai/gpt-4o-mini") == "closed"


async def test_refusals_of_the_audio_do_not_count_against_the_circuit(
    fake_openrouter: FakeOpenRouter,
) -> None:
    breaker = ModelBreaker(failures=1, cooldown=60)
    fake_openrouter.transcriptions.reject(400)

    async with open_client(fake_openrouter.base_url, breaker=breaker) as client:
        await failure_of(client)

    assert breaker.state(WHISPER) == "closed"


# Secrets and what was said never reach errors or logs

FAULTS: dict[str, Callable[[FakeOpenRouter], object]] = {
    "rate_limited": lambda fake: fake.transcriptions.rate_limit(retry_after=0, times=9),
    "server_error": lambda fake: fake.transcriptions.server_error(500),
    "unavailable": lambda fake: fake.transcriptions.server_error(503, times=9),
    "rejected": lambda fake: fake.transcriptions.reject(402),
    "slow": lambda fake: fake.transcriptions.slow(5),
    "dropped": lambda fake: fake.transcriptions.drop_after_request(),
    "garbled": lambda fake: fake.transcriptions.garbled_answer(),
}


@pytest.mark.parametrize("fault", FAULTS)
async def test_no_key_audio_or_upstream_body_is_in_the_error_or_the_logs(
    fake_openrouter: FakeOpenRouter, fault: str
) -> None:
    FAULTS[fault](fake_openrouter)

    async with open_client(fake_openrouter.base_url, transcription_timeout=0.2) as client:
        with capture_logs() as logs:
            error = await failure_of(client)

    shown = f"{error} {error!r} {error.params} {error.__cause__!r} {logs!r}"
    assert FAKE_API_KEY not in shown
    assert "Bearer" not in shown
    assert base64.b64encode(SPOKEN).decode() not in shown
    assert SPOKEN.decode() not in shown
    assert "Fake failure" not in shown
    assert "Rate limit exceeded" not in shown


async def test_a_transcript_is_never_logged(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.transcriptions.rate_limit(retry_after=0)

    with capture_logs() as logs:
        await client.transcribe(SPOKEN, VOICE_NOTE)

    assert logs  # the retry was logged
    assert SPOKEN.decode() not in repr(logs)
    assert FAKE_API_KEY not in repr(logs)
