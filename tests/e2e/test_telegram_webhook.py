"""The Telegram front in webhook mode, end to end: `python -m bots` with TELEGRAM_WEBHOOK_URL.

Telegram would POST each update to the webhook URL; here the test posts the Update JSON the fake
Bot API builds (`user_says` returns it) to the service's own HTTP server, and reads the answers
the service sends through the fake. Long polling is in `test_telegram.py`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from core.messages import ENGLISH, help_text, text
from tests.e2e.conftest import Service
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.fakes.telegram_server import DEFAULT_USER_ID, FakeTelegram, StoredMessage, Webhook

WEBHOOK_URL = "https://bot.example.test/tg/hook"
WEBHOOK_PATH = "/tg/hook"
SECRET = "webhook-Secret_0123456789"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TELEGRAMS_SECRET_RULE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
USER = DEFAULT_USER_ID

StartBot = Callable[..., Awaitable[Service]]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


@pytest.fixture
def start_bot(start_telegram_service: StartBot) -> StartBot:
    """Start the service on the fakes; keyword arguments are extra environment variables."""

    async def start(**variables: str) -> Service:
        defaults = {"TELEGRAM_WEBHOOK_URL": WEBHOOK_URL, "TELEGRAM_EDIT_INTERVAL": "0.2"}
        return await start_telegram_service(**(defaults | variables))

    return start


async def post(
    http: httpx.AsyncClient, service: Service, update: dict[str, Any], secret: str | None
) -> httpx.Response:
    """What Telegram does with an update: POST it to the webhook, with the secret header."""
    headers = {} if secret is None else {SECRET_HEADER: secret}
    return await http.post(f"{service.local_url}{WEBHOOK_PATH}", json=update, headers=headers)


async def answer_to(fake: FakeTelegram, before: int, *, what: str) -> StoredMessage:
    new = await fake.wait_for(lambda: fake.messages(USER)[before:], what=what)
    return new[0]


async def test_webhook_mode_sets_the_webhook_with_its_secret_and_never_polls(
    start_bot: StartBot, fake_telegram: FakeTelegram, http: httpx.AsyncClient
) -> None:
    service = await start_bot(TELEGRAM_WEBHOOK_SECRET=SECRET)

    # A served update proves the service is up and past the point where it would poll.
    response = await post(http, service, fake_telegram.user_says("/help"), SECRET)
    await answer_to(fake_telegram, 0, what="the help")

    assert response.status_code == 200
    assert fake_telegram.webhook == Webhook(WEBHOOK_URL, SECRET, ["message", "callback_query"])
    assert fake_telegram.calls_to("getUpdates") == []
    assert "telegram (webhook)" in service.started["adapters"]


async def test_an_update_posted_with_the_secret_is_answered_through_the_bot_api(
    start_bot: StartBot, fake_telegram: FakeTelegram, http: httpx.AsyncClient
) -> None:
    service = await start_bot(TELEGRAM_WEBHOOK_SECRET=SECRET)

    await post(http, service, fake_telegram.user_says("/help"), SECRET)
    helped = await answer_to(fake_telegram, 0, what="the help")
    await post(http, service, fake_telegram.user_says("hello webhook"), SECRET)
    answer = await answer_to(fake_telegram, 1, what="the model's answer")
    await fake_telegram.wait_for(lambda: answer.visible_text == "echo: hello webhook")

    assert helped.visible_text == help_text(ENGLISH).replace("*", "")
    assert answer.parse_mode == "HTML"


async def test_a_post_with_a_wrong_or_missing_secret_is_refused_and_does_nothing(
    start_bot: StartBot,
    fake_telegram: FakeTelegram,
    fake_openrouter: FakeOpenRouter,
    http: httpx.AsyncClient,
) -> None:
    service = await start_bot(TELEGRAM_WEBHOOK_SECRET=SECRET)

    wrong = await post(http, service, fake_telegram.user_says("/new Forged"), "not-the-secret")
    missing = await post(http, service, fake_telegram.user_says("hello"), None)
    await post(http, service, fake_telegram.user_says("/sessions"), SECRET)
    listing = await answer_to(fake_telegram, 0, what="the listing")

    assert (wrong.status_code, missing.status_code) == (403, 403)
    assert len(fake_telegram.messages(USER)) == 1
    assert listing.visible_text == text(ENGLISH, "sessions_empty")  # /new Forged never ran
    assert fake_openrouter.requests == []


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'{"message": {}}', b'{"update_id": 7, "message": "hi"}'],
    ids=["not-json", "a-list", "no-update-id", "a-message-of-the-wrong-type"],
)
async def test_a_body_that_is_no_update_is_refused_with_400_and_logs_no_error(
    start_bot: StartBot, http: httpx.AsyncClient, body: bytes
) -> None:
    service = await start_bot(TELEGRAM_WEBHOOK_SECRET=SECRET)

    refused = await http.post(
        f"{service.local_url}{WEBHOOK_PATH}", content=body, headers={SECRET_HEADER: SECRET}
    )

    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "bad_request"
    assert service.events("http.unhandled") == []


async def test_without_a_configured_secret_one_derived_from_the_token_is_required(
    start_bot: StartBot, fake_telegram: FakeTelegram, http: httpx.AsyncClient
) -> None:
    service = await start_bot()
    assert fake_telegram.webhook is not None
    derived = fake_telegram.webhook.secret_token
    assert derived is not None
    assert TELEGRAMS_SECRET_RULE.match(derived)
    assert fake_telegram.token not in derived

    missing = await post(http, service, fake_telegram.user_says("/help"), None)
    accepted = await post(http, service, fake_telegram.user_says("/help"), derived)
    await answer_to(fake_telegram, 0, what="the help")

    assert (missing.status_code, accepted.status_code) == (403, 200)
    assert len(fake_telegram.messages(USER)) == 1
