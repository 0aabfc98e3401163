"""Schemathesis against the running service: no 5xx, and every response as the document says.

The service runs as `python -m bots` (a child process) on the test Redis, answered by the fake
OpenRouter running on a thread of its own, because schemathesis calls the API synchronously.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from bots.http.openapi import openapi_document
from core.settings import Settings
from tests.e2e.conftest import child_env
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.redis_process import RedisProcess, free_port

EXAMPLES_PER_OPERATION = 30
STARTUP_TIMEOUT = 20.0


class ThreadedFakeOpenRouter:
    """The fake OpenRouter on its own event loop, so a synchronous test can block freely."""

    def __init__(self) -> None:
        self.fake = FakeOpenRouter()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> FakeOpenRouter:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self._loop).result(timeout=10)
        return self.fake

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture(scope="module")
def live_service(redis_server: RedisProcess) -> Iterator[str]:
    """`python -m bots` on a free port; yields its base URL."""
    port = free_port()
    with (
        ThreadedFakeOpenRouter() as fake,
        tempfile.TemporaryDirectory() as cwd,
        Path(cwd, "service.log").open("w") as log,
    ):
        env = child_env(
            REDIS_URL=redis_server.url,
            OPENROUTER_API_KEY=fake.api_key,
            OPENROUTER_BASE_URL=fake.base_url,
            HTTP_PORT=str(port),
            LOG_LEVEL="WARNING",
            # The notices test below: a context that four long questions overflow, unsummarised.
            CONTEXT_TOKENS="6000",
            SUMMARIES="off",
        )
        child = subprocess.Popen(
            [sys.executable, "-m", "bots"], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
            stderr=log,
        )  # fmt: skip
        try:
            base_url = f"http://127.0.0.1:{port}"
            _wait_until_healthy(base_url, child)
            yield base_url
        finally:
            child.terminate()
            child.wait(timeout=15)


# The service runs with default limits, so the document built here from defaults is the one it
# serves (test_the_served_document_is_the_one_tested checks it). Loading it from the live URL
# would need schemathesis's lazy fixture loader, which does not run on pytest 9.
DOCUMENT = openapi_document(Settings(_env_file=None))  # type: ignore[call-arg]
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_served_document_is_the_one_tested(live_service: str) -> None:
    assert httpx.get(f"{live_service}/api/openapi.json").json() == DOCUMENT


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,  # the same examples on every run, so CI is repeatable
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_conforms_to_the_openapi_document(
    case: schemathesis.Case, live_service: str
) -> None:
    # Files are valid by what their bytes are (a PNG, a PDF with text), which no schema says:
    # random base64 is refused, with a documented 4xx, as it should be.
    has_files = isinstance(case.body, dict) and bool(case.body.get("attachments"))
    excluded = [positive_data_acceptance] if has_files else []
    case.call_and_validate(base_url=live_service, excluded_checks=excluded)


# --- the notices of a reply ------------------------------------------------------------------

# The model's context keeps 6,000 tokens (CONTEXT_TOKENS above): three 4,000-character questions
# (500 and 1,000 tokens) and their echoes fit, the fourth turn leaves the first question out and
# says so (`context_lost`, SUMMARIES=off).
LONG_QUESTIONS = [letter * 4000 for letter in "abcd"]


def test_a_reply_telling_a_notice_is_a_chat_reply_as_documented_streamed_or_not(
    live_service: str,
) -> None:
    chat = schema["/api/chat/session"]["POST"]
    with httpx.Client(base_url=live_service, timeout=30) as client:
        created = client.post("/api/sessions", json={"userId": "conformance-notices"})
        session_id = created.json()["id"]
        replies = []
        for number, question in enumerate(LONG_QUESTIONS):
            body = {"sessionId": session_id, "message": question, "stream": number == 3}
            replies.append(client.post("/api/chat/session", json=body))
    for response in replies[:3]:
        chat.validate_response(response)
        assert response.json()["notices"] == []
    done = json.loads(replies[3].text.split("event: done\ndata: ", 1)[1])
    assert chat.is_valid_response(as_json_reply(done))  # the `done` event's data: a ChatReply
    assert done["notices"] == ["context_lost"]


def test_the_document_holds_a_reply_to_its_known_notices() -> None:
    chat = schema["/api/chat/session"]["POST"]
    reply = {"id": "s-2", "role": "assistant", "content": "hi", "model": None,
             "timestamp": "2026-12-01T00:00:00.000Z", "usage": None, "stopped": False,
             "attachments": []}  # fmt: skip
    session = {"id": "s", "userId": "u", "title": "", "model": "m/x", "messageCount": 2,
               "createdAt": reply["timestamp"], "updatedAt": reply["timestamp"],
               "systemPrompt": None}  # fmt: skip

    def reply_with(**extra: Any) -> httpx.Response:
        return as_json_reply({"session": session, "reply": reply, **extra})

    assert chat.is_valid_response(reply_with(notices=["previous_session_expired"]))
    assert not chat.is_valid_response(reply_with(notices=["told_nothing"]))
    assert not chat.is_valid_response(reply_with())  # `notices` is always there


def as_json_reply(body: object) -> httpx.Response:
    """`body` as the JSON answer of a chat turn (200), for the document to judge."""
    request = httpx.Request("POST", "http://127.0.0.1/api/chat/session")
    response = httpx.Response(200, json=body, request=request)
    response.elapsed = datetime.timedelta(0)  # as if received: schemathesis reads it
    return response


def _wait_until_healthy(base_url: str, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if child.poll() is not None:
            pytest.fail(f"the service exited with {child.returncode} before serving")
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail("the service did not answer /health in time")
