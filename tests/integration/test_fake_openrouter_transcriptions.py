"""The fake OpenRouter's transcription endpoint is as strict as the real one, over raw HTTP.

What it refuses, and with which status and body, is what OpenRouter documents for
`POST /api/v1/audio/transcriptions` (tests/fakes/openrouter_transcriptions.py says where a
status is our reading rather than OpenRouter's word).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.fakes.openrouter_server import FAKE_API_KEY, FakeOpenRouter
from tests.fakes.openrouter_transcriptions import FORMATS, MAX_AUDIO_BYTES

pytest_plugins = ("tests.fakes.openrouter_server",)

MODEL = "openai/whisper-1"
SPOKEN = b"hello from a voice note"
AUTH = {"Authorization": f"Bearer {FAKE_API_KEY}"}


def body_for(audio: bytes = SPOKEN, **changes: Any) -> dict[str, Any]:
    input_audio = {"data": base64.b64encode(audio).decode(), "format": "ogg"}
    return {"model": MODEL, "input_audio": input_audio, **changes}


@pytest.fixture
async def raw(fake_openrouter: FakeOpenRouter) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fake_openrouter.base_url, timeout=10) as client:
        yield client


async def transcribe(raw: httpx.AsyncClient, body: Any, **options: Any) -> httpx.Response:
    options.setdefault("headers", AUTH)
    return await raw.post("/audio/transcriptions", json=body, **options)


async def test_it_answers_the_audio_read_as_text_with_usage_and_a_generation_id(
    fake_openrouter: FakeOpenRouter, raw: httpx.AsyncClient
) -> None:
    response = await transcribe(raw, body_for())

    assert response.status_code == 200
    assert response.json()["text"] == SPOKEN.decode()
    assert set(response.json()["usage"]) == {"seconds", "cost"}
    assert response.headers["X-Generation-Id"].startswith("gen-stt-fake-")
    (recorded,) = fake_openrouter.transcriptions.requests
    assert recorded.body == body_for()
    assert recorded.headers["Authorization"] == f"Bearer {FAKE_API_KEY}"


async def test_its_transcript_and_usage_are_configurable(
    fake_openrouter: FakeOpenRouter, raw: httpx.AsyncClient
) -> None:
    fake_openrouter.transcriptions.text = "scripted words"
    fake_openrouter.transcriptions.reports_usage = False

    response = await transcribe(raw, body_for())

    assert response.json() == {"text": "scripted words"}


@pytest.mark.parametrize("audio_format", sorted(FORMATS))
async def test_every_documented_format_is_taken(raw: httpx.AsyncClient, audio_format: str) -> None:
    body = body_for()
    body["input_audio"]["format"] = audio_format

    assert (await transcribe(raw, body)).status_code == 200


BAD_BODIES: dict[str, Any] = {
    "no_model": {"input_audio": body_for()["input_audio"]},
    "blank_model": body_for(model="  "),
    "chat_model": body_for(model="openai/gpt-4o-mini"),
    "no_input_audio": {"model": MODEL},
    "input_audio_not_an_object": body_for(input_audio="aGVsbG8="),
    "no_data": body_for(input_audio={"format": "ogg"}),
    "empty_data": body_for(input_audio={"data": "", "format": "ogg"}),
    "bad_base64": body_for(input_audio={"data": "not base64!", "format": "ogg"}),
    "data_url": body_for(input_audio={"data": "data:audio/ogg;base64,aGVsbG8=", "format": "ogg"}),
    "no_format": body_for(input_audio={"data": "aGVsbG8="}),
    "unsupported_format": body_for(input_audio={"data": "aGVsbG8=", "format": "opus"}),
    "mime_type_as_format": body_for(input_audio={"data": "aGVsbG8=", "format": "audio/ogg"}),
    "not_an_object": ["model", MODEL],
}


@pytest.mark.parametrize("case", BAD_BODIES)
async def test_a_body_the_real_endpoint_refuses_is_a_400_with_its_error_body(
    fake_openrouter: FakeOpenRouter, raw: httpx.AsyncClient, case: str
) -> None:
    fake_openrouter.transcriptions.rate_limit()  # a refused body consumes no fault

    response = await transcribe(raw, BAD_BODIES[case])

    assert response.status_code == 400
    assert response.json()["error"]["code"] == 400
    assert response.json()["error"]["message"]
    assert (await transcribe(raw, body_for())).status_code == 429


async def test_a_body_that_is_not_json_is_a_400(raw: httpx.AsyncClient) -> None:
    response = await raw.post(
        "/audio/transcriptions", content=b"model=openai/whisper-1", headers=AUTH
    )

    assert response.status_code == 400


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer sk-or-v1-wrong"}, {"Authorization": FAKE_API_KEY}],
    ids=["missing", "wrong", "not_bearer"],
)
async def test_a_request_without_the_key_is_a_401(
    raw: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await transcribe(raw, body_for(), headers=headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == 401


async def test_audio_up_to_the_documented_25_mb_is_taken_and_past_it_is_a_413(
    fake_openrouter: FakeOpenRouter, raw: httpx.AsyncClient
) -> None:
    fake_openrouter.transcriptions.text = "long"  # not the 25 MB read back as text
    below, at, above = (b"\0" * size for size in (MAX_AUDIO_BYTES - 1, MAX_AUDIO_BYTES,
                                                  MAX_AUDIO_BYTES + 1))  # fmt: skip

    assert (await transcribe(raw, body_for(below))).status_code == 200
    assert (await transcribe(raw, body_for(at))).status_code == 200
    refused = await transcribe(raw, body_for(above))
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == 413


async def test_faults_are_consumed_in_order_and_never_by_the_chat_endpoint(
    fake_openrouter: FakeOpenRouter, raw: httpx.AsyncClient
) -> None:
    fake_openrouter.transcriptions.rate_limit(retry_after=3).server_error(502).reject(402)
    chat = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}

    assert (await raw.post("/chat/completions", json=chat, headers=AUTH)).status_code == 200
    limited = await transcribe(raw, body_for())
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "3"
    assert [(await transcribe(raw, body_for())).status_code for _ in range(3)] == [502, 402, 200]


async def test_a_held_answer_waits_for_its_gate(
    fake_openrouter: FakeOpenRouter, raw: httpx.AsyncClient
) -> None:
    gate = asyncio.Event()
    fake_openrouter.transcriptions.hold(gate)

    pending = asyncio.create_task(transcribe(raw, body_for()))
    await fake_openrouter.transcriptions.received.wait()
    assert not pending.done()
    gate.set()

    assert (await pending).status_code == 200


async def test_a_dropped_request_gets_no_answer(
    fake_openrouter: FakeOpenRouter, raw: httpx.AsyncClient
) -> None:
    fake_openrouter.transcriptions.drop_after_request()

    with pytest.raises(httpx.RemoteProtocolError):
        await transcribe(raw, body_for())
    assert len(fake_openrouter.transcriptions.requests) == 1
