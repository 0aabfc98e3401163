"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright).

The app is served in-process on 127.0.0.1 with auth on, real turns go through the HTTP API to
the fake OpenRouter (one of them fails, one is refused by the rate limit), the counts are
flushed, and the page — signed in with the API token — must show exactly those figures, load
nothing from anywhere but this app, and log no error. A screenshot is saved for people.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis.asyncio as aioredis
from playwright.async_api import Browser, ConsoleMessage, Page, Request, async_playwright

from tests.e2e.conftest import ROOT
from tests.e2e.http_app import RunningApi, ServeApi, assert_error, bearer
from tests.fakes.openrouter_server import FakeOpenRouter

CHROMIUM_VARIABLE = "CHROMIUM_PATH"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
API_TOKEN = "dashboard-test-service-token"
JWT_SECRET = "a-jwt-secret-of-at-least-32-bytes-for-hs256"
MODEL = "test/model"
SCREENSHOT_DIR = ROOT / "test-output"
WAIT_MS = 15_000
UNAUTHORIZED_LOG = (
    "console error: Failed to load resource: the server responded with a status of 401 "
    "(Unauthorized)"
)
# Settings as for a service reachable from other hosts (the app itself is served on 127.0.0.1).
WILDCARD = "0.0.0.0"  # noqa: S104  (only a setting here: nothing binds it)


@pytest.fixture
def chromium_path() -> str:
    path = os.environ.get(CHROMIUM_VARIABLE, DEFAULT_CHROMIUM)
    if not Path(path).is_file():
        pytest.fail(
            f"no Chromium at {path}: install it with `apt-get install chromium` "
            f"(or point {CHROMIUM_VARIABLE} at one)"
        )
    return path


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    # Never `playwright install` (a CDN download): the system's Chromium, headless.
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium_path, headless=True)
        yield launched
        await launched.close()


class WatchedPage:
    """A page whose every request and console error is recorded."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.requests: list[str] = []
        self.problems: list[str] = []
        page.on("request", self._on_request)
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    def _on_request(self, request: Request) -> None:
        self.requests.append(request.url)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type in {"error", "warning"}:
            self.problems.append(f"console {message.type}: {message.text}")

    async def value(self, selector: str) -> str:
        found = await self.page.get_attribute(selector, "data-value", timeout=WAIT_MS)
        assert found is not None, selector
        return found

    async def count(self, selector: str) -> int:
        return int(await self.value(selector))


async def open_watched(browser: Browser, url: str) -> WatchedPage:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    watched = WatchedPage(await context.new_page())
    await watched.page.goto(url + "/dashboard")
    return watched


# --- traffic ------------------------------------------------------------------------------------


async def generate_traffic(api: RunningApi, fake: FakeOpenRouter) -> int:
    """Six turns by two users: four answered, one failed by the model, one rate limited.

    Returns the tokens the answers reported."""
    client, headers = api.client, bearer(API_TOKEN)
    tokens = 0
    sessions = {}
    for user in ("ana", "bob"):
        started = await client.post(
            "/api/chat/session/start",
            json={"userId": user, "initialMessage": f"hello from {user}"},
            headers=headers,
        )
        assert started.status_code == 201, started.text
        sessions[user] = started.json()["session"]["id"]
        tokens += started.json()["reply"]["usage"]["totalTokens"]
    for text in ("how are tides made", "and waves"):
        tokens += await chat(api, sessions["ana"], text)
    refused = await client.post(
        "/api/chat/session", json={"sessionId": sessions["ana"], "message": "one more"},
        headers=headers,
    )  # fmt: skip
    assert_error(refused, 429, "rate_limited")  # RATE_LIMIT_MESSAGES=3
    fake.reject(400)
    failed = await client.post(
        "/api/chat/session", json={"sessionId": sessions["bob"], "message": "fail"},
        headers=headers,
    )  # fmt: skip
    assert failed.status_code >= 400, failed.text
    return tokens


async def chat(api: RunningApi, session_id: str, text: str) -> int:
    response = await api.client.post(
        "/api/chat/session",
        json={"sessionId": session_id, "message": text},
        headers=bearer(API_TOKEN),
    )
    assert response.status_code == 200, response.text
    total: int = response.json()["reply"]["usage"]["totalTokens"]
    return total


async def serve_with_auth(serve_api: ServeApi) -> RunningApi:
    """Auth on, as a service reachable from other hosts must be."""
    return await serve_api(
        api_token=API_TOKEN, jwt_secret=JWT_SECRET, http_host=WILDCARD, rate_limit_messages=3
    )


# --- the browser ----------------------------------------------------------------------------------


async def test_the_dashboard_shows_the_figures_of_the_traffic_it_was_given(
    serve_api: ServeApi,
    fake_openrouter: FakeOpenRouter,
    redis_client: aioredis.Redis,
    browser: Browser,
    tmp_path: Path,
) -> None:
    api = await serve_with_auth(serve_api)
    tokens = await generate_traffic(api, fake_openrouter)
    assert api.services.analytics is not None
    assert await api.services.analytics.flush()

    watched = await open_watched(browser, api.url)
    page = watched.page
    await page.wait_for_selector("#login-form", state="visible", timeout=WAIT_MS)
    await page.fill("#token", API_TOKEN)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector('#status[data-state="ok"]', timeout=WAIT_MS)

    for window in ("day", "hour"):  # the hour last: the screenshot shows it
        await page.click(f'.tab[data-window="{window}"]')
        await page.wait_for_selector(f'#dashboard[data-window="{window}"]', timeout=WAIT_MS)
        await assert_figures(watched, tokens)
    assert await watched.count("#active-sessions") == 2
    memory = await redis_client.info("memory")
    assert await watched.count("#redis-memory") > 0
    assert await page.get_attribute("#redis-memory", "data-max-bytes") == str(memory["maxmemory"])
    assert await page.locator("#chart-turns svg rect").count() >= 1
    assert await page.locator("#chart-latency svg path").count() == 2  # p50 and p95

    await save_screenshot(page, tmp_path)
    assert_only_this_app(watched, api.url)
    # The one complaint expected: Chromium logs the API's 401 before signing in (which is what
    # shows the form) as a failed resource.
    assert watched.problems == [UNAUTHORIZED_LOG], watched.problems


async def assert_figures(watched: WatchedPage, tokens: int) -> None:
    assert await watched.count("#turns") == 6
    assert await watched.count("#active-users") == 2
    assert await watched.count("#errors") == 2
    assert await watched.count("#refusals") == 1
    assert await watched.count("#tokens") == tokens
    row = 'tr[data-model="test/model"]'
    assert await watched.count(f'{row} td[data-field="calls"]') == 5  # four answers, one failure
    for field in ("latencyP50", "latencyP95", "ttftP50", "ttftP95"):
        assert float(await watched.value(f'{row} td[data-field="{field}"]')) > 0
    assert await watched.count('#turns-by-front tr[data-front="http"] td[data-field="count"]') == 6
    outcomes = "#turns-by-outcome tr[data-outcome='{}'] td[data-field='count']"
    assert await watched.count(outcomes.format("completed")) == 4
    assert await watched.count(outcomes.format("rate_limited")) == 1
    assert (
        await watched.count('#errors-by-kind tr[data-kind="rate_limited"] td[data-field="count"]')
        == 1
    )
    assert (
        await watched.count('#refusals-by-source tr[data-source="user"] td[data-field="count"]')
        == 1
    )


async def save_screenshot(page: Page, tmp_path: Path) -> None:
    SCREENSHOT_DIR.mkdir(exist_ok=True)
    for folder in (tmp_path, SCREENSHOT_DIR):
        path = folder / "dashboard.png"
        await page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 0
        print(f"dashboard screenshot: {path}")


def assert_only_this_app(watched: WatchedPage, url: str) -> None:
    assert watched.requests, "the page made no request"
    strangers = [seen for seen in watched.requests if not seen.startswith(url + "/")]
    assert strangers == [], f"requests to anything but {url}: {strangers}"


async def test_in_open_loopback_mode_the_page_loads_without_signing_in(
    serve_api: ServeApi, browser: Browser
) -> None:
    api = await serve_api()  # no API_TOKEN, no JWT_SECRET: loopback only

    watched = await open_watched(browser, api.url)

    await watched.page.wait_for_selector('#status[data-state="ok"]', timeout=WAIT_MS)
    assert await watched.page.is_hidden("#login")
    assert await watched.count("#turns") == 0
    assert watched.problems == []
    assert_only_this_app(watched, api.url)


# --- the HTTP side --------------------------------------------------------------------------------


async def test_the_figures_need_the_service_token_and_a_users_token_is_forbidden(
    serve_api: ServeApi,
) -> None:
    api = await serve_with_auth(serve_api)
    user_token = jwt.encode({"sub": "ana", "exp": int(time.time()) + 60}, JWT_SECRET)

    assert_error(await api.client.get("/api/dashboard"), 401, "unauthorized")
    assert_error(
        await api.client.get("/api/dashboard", headers=bearer("wrong")), 401, "unauthorized"
    )
    assert_error(
        await api.client.get("/api/dashboard", headers=bearer(user_token)), 403, "forbidden"
    )
    answer = await api.client.get("/api/dashboard", headers=bearer(API_TOKEN))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert [len(body["hour"]["points"]), len(body["day"]["points"])] == [60, 24]
    assert body["sessions"]["windowSeconds"] == api.settings.session_ttl


async def test_the_page_and_its_assets_are_public_and_say_where_they_may_load_from(
    serve_api: ServeApi,
) -> None:
    api = await serve_with_auth(serve_api)

    for path, kind in (
        ("/dashboard", "text/html"),
        ("/dashboard/dashboard.js", "text/javascript"),
        ("/dashboard/dashboard.css", "text/css"),
    ):
        answer = await api.client.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["Content-Type"].startswith(kind), answer.headers
        assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
        assert "://" not in answer.text.replace("http://www.w3.org/2000/svg", ""), path
    for missing in ("/dashboard/index.html", "/dashboard/nope.js", "/dashboard/..%2Fapi_auth.py"):
        assert_error(await api.client.get(missing), 404, "not_found")
