"""The HTTP API served in-process, on the test's event loop, over a real socket.

Within `async with serving_api(...) as serve:`, each `await serve(**settings)` builds `Settings`
(no developer variable and no `.env` leaks in), opens the core with `bots.runtime.open_core`,
serves `bots.http.app.build_app` on 127.0.0.1 at a free port and returns a `RunningApi` whose
`client` is an `httpx.AsyncClient` bound to it. Every client, runner and core is closed when the
block ends, last opened first closed. The fixtures live in tests/e2e/test_http_api.py, and
so do the tests; below are the helpers they share (JSON shapes, error checks, SSE parsing).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web

from bots.http.app import build_app
from bots.runtime import Services, open_services
from core.settings import Settings
from tests.fakes.openrouter_server import FAKE_API_KEY, FakeOpenRouter

TEST_MODEL = "test/model"
TEST_SYSTEM_PROMPT = "Be brief."
CLIENT_TIMEOUT = 15.0
SHUTDOWN_TIMEOUT = 1.0
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
SESSION_FIELDS = {"id", "userId", "title", "model", "createdAt", "updatedAt", "messageCount"}
SESSION_FIELDS |= {"systemPrompt"}
MESSAGE_FIELDS = {"id", "role", "content", "model", "timestamp", "usage", "stopped", "attachments"}
# What must never reach a client: tracebacks, source paths, upstream bodies, keys.
LEAKS = ("Traceback", 'File "', ".py", "/work/", "site-packages", "Fake failure", FAKE_API_KEY)
JSON_HEADERS = {"Content-Type": "application/json"}
POLL_INTERVAL = 0.05
POLL_WITHIN = 10.0


@dataclass
class RunningApi:
    """One served app: its base URL, a client bound to it, and the core behind it."""

    url: str
    client: httpx.AsyncClient
    services: Services
    runner: web.AppRunner

    @property
    def settings(self) -> Settings:
        return self.services.settings

    async def stop(self) -> None:
        """Stop serving; in-flight handlers get SHUTDOWN_TIMEOUT to finish. Idempotent."""
        await stop_runner(self.runner)


async def stop_runner(runner: web.AppRunner) -> None:
    if runner.server is not None:  # None again once cleaned up
        await runner.cleanup()


ServeApi = Callable[..., Awaitable[RunningApi]]


def api_settings(*, redis_url: str, fake: FakeOpenRouter, **overrides: Any) -> Settings:
    """Settings with every field that matters given here; `overrides` win."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "redis_host": None,
        "redis_password": None,
        "session_ttl": 3600,
        "max_sessions_per_user": 5,
        "max_messages_per_session": 100,
        "max_message_length": 4000,
        "session_limit_policy": "reject",
        "openrouter_api_key": fake.api_key,
        "openrouter_base_url": fake.base_url,
        "default_model": TEST_MODEL,
        "fallback_models": (),
        "system_prompt": TEST_SYSTEM_PROMPT,
        "telegram_bot_token": None,
        "discord_bot_token": None,
        "http_host": "127.0.0.1",
        "http_port": 0,
        "api_token": None,
        "jwt_secret": None,
        "log_level": "WARNING",
        "log_format": "console",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def forget_chatbridge_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop every variable that names a setting (pydantic-settings ignores their case)."""
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)


@asynccontextmanager
async def serving_api(
    redis_url: str, fake: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ServeApi]:
    """`serve(**settings)` serves one more app until the block ends (`redis_url=` overrides)."""
    forget_chatbridge_environment(monkeypatch)
    async with AsyncExitStack() as stack:

        async def serve(*, redis_url: str = redis_url, **overrides: Any) -> RunningApi:
            settings = api_settings(redis_url=redis_url, fake=fake, **overrides)
            services = await stack.enter_async_context(open_services(settings))
            runner = web.AppRunner(build_app(services), shutdown_timeout=SHUTDOWN_TIMEOUT)
            await runner.setup()
            stack.push_async_callback(stop_runner, runner)
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            host, port = runner.addresses[0][:2]
            url = f"http://{host}:{port}"
            client = httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT)
            await stack.enter_async_context(client)
            return RunningApi(url=url, client=client, services=services, runner=runner)

        yield serve


# --- helpers for the tests ---------------------------------------------------------------------


def assert_nothing_leaks(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} leaked into {text!r}"


def assert_error(response: httpx.Response, status: int, code: str | set[str]) -> str:
    """The response is the API's error JSON with this status and code; returns its message."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] in ({code} if isinstance(code, str) else code), body
    message = body["error"]["message"]
    assert isinstance(message, str), body
    assert message, body
    assert_nothing_leaks(response.text)
    return message


def assert_iso_utc(value: str) -> datetime:
    """ISO 8601 in UTC with milliseconds and a trailing Z, e.g. 2026-01-31T12:00:00.000Z."""
    assert ISO_UTC.match(value), value
    moment = datetime.fromisoformat(value)
    assert moment.utcoffset() == timedelta(0), value
    return moment


def assert_session_shape(session: dict[str, Any]) -> None:
    assert set(session) == SESSION_FIELDS, session
    assert SESSION_ID.match(session["id"]), session
    assert isinstance(session["messageCount"], int), session
    assert assert_iso_utc(session["createdAt"]) <= assert_iso_utc(session["updatedAt"]), session


def assert_message_shape(message: dict[str, Any]) -> None:
    assert set(message) == MESSAGE_FIELDS, message
    assert message["role"] in {"user", "assistant", "system"}, message
    assert isinstance(message["id"], str), message
    assert message["id"], message
    assert_iso_utc(message["timestamp"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create_session(
    client: httpx.AsyncClient, user_id: str = "ana", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    response = await client.post("/api/sessions", json={"userId": user_id}, headers=headers)
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()
    return session


async def add_messages(
    client: httpx.AsyncClient, session_id: str, count: int, prefix: str = "m"
) -> None:
    """`count` user messages `m0`, `m1`, ... stored one after the other (no model call); each
    counts against RATE_LIMIT_MESSAGES like a turn."""
    for index in range(count):
        response = await client.post(
            f"/api/sessions/{session_id}/messages",
            json={"role": "user", "content": f"{prefix}{index}"},
        )
        assert response.status_code == 201, response.text


async def all_messages(
    client: httpx.AsyncClient, session_id: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    response = await client.get(
        f"/api/sessions/{session_id}/messages", params={"limit": 100}, headers=headers
    )
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """(event, parsed data) for every event of a text/event-stream body."""
    events = []
    for block in response.text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def poll_status(
    client: httpx.AsyncClient, path: str, status: int, *, within: float = POLL_WITHIN
) -> httpx.Response:
    """GET `path` until it answers `status`; fail with the last answer after `within` s."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        response = await client.get(path)
        if response.status_code == status:
            return response
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{path} did not answer {status} in {within:g} s: {response.text}")
        await asyncio.sleep(POLL_INTERVAL)
