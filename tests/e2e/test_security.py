"""Secrets and isolation across every front: `python -m bots` with Telegram, Discord, the HTTP
API and the terminal at once, on the strict fakes and a real Redis.

1. A run of every front at `LOG_LEVEL=DEBUG`, with every secret set and faults that make errors
   get logged, writes no secret (nor its percent-encoded or base64 form) to stdout or stderr.
   `test_service.py::test_no_secret_reaches_stdout_or_stderr` covers start-up and a Redis
   outage; this one drives traffic through every front.
2. User ids are qualified by their front (`telegram:42`, `discord:42`, `cli:42`; the HTTP API's
   as given): the same number on each front is a different user with sessions of its own, and a
   user's JWT reaches no session of another front's user, even by its id, nor acts in its name.
   `test_http_api.py` proves the JWT rules between HTTP users; here the victims are chat users.
3. A user's JWT adds only what the user may say, as often as they may take a turn (issue 15:
   150 assistant messages of 60,000 characters went in through the HTTP API's message door).
   `test_message_door.py` proves each rule at its boundary; here on `python -m bots` as deployed.
"""

from __future__ import annotations

import base64
import secrets
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest
import redis.asyncio as aioredis

from core.messages import ENGLISH, text
from tests.e2e.conftest import RunCli, Service, StartService, poll_status, service_env
from tests.e2e.discord_support import Person, answer_text
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.fakes.telegram_server import FakeTelegram, StoredMessage
from tests.redis_process import RedisProcess

API_TOKEN = "e2e-SECRET-api-token-every-front-5e1a"
JWT_SECRET = "e2e-SECRET-jwt-secret-every-front-0123456789abcdef"
WEBHOOK_SECRET = "e2e-SECRET-webhook_4b8f"
# A "/" and an "@": the URL holds it percent-encoded, Redis gets it decoded; both must stay out.
REDIS_PASSWORD = "e2e-SECRET/redis@password-7c2d"
WEBHOOK_URL = "https://bot.example.test/tg/hook"
WEBHOOK_PATH = "/tg/hook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TELEGRAM_USER = 1001
SAME_NUMBER = 42
DEFAULT_MODEL = "test/model"
EDIT_ROUTE = r"/channels/\d+/messages/\d+"
# What the faults log: proof that the error paths the search covers did run.
FAULTS_LOGGED = ("model_retry", "discord.final_retry", "redis.unavailable")
WAIT_SECONDS = 15.0

# --- the service with every front ------------------------------------------------------------


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15.0) as client:
        yield client


@dataclass
class Fronts:
    """The fakes every front talks to, and `python -m bots` started on all of them at once:
    Telegram, Discord and the HTTP API with API_TOKEN and JWT_SECRET."""

    telegram: FakeTelegram
    discord: FakeDiscord
    openrouter: FakeOpenRouter
    start_service: StartService

    def env(self, **variables: str) -> dict[str, str]:
        """The service's environment; keywords are more variables (REDIS_URL at least)."""
        fronts = {
            "TELEGRAM_BOT_TOKEN": self.telegram.token,
            "TELEGRAM_API_BASE_URL": self.telegram.base_url,
            "TELEGRAM_EDIT_INTERVAL": "0.2",
            "DISCORD_BOT_TOKEN": self.discord.token,
            "DISCORD_API_BASE_URL": self.discord.api_base_url,
            "DISCORD_GATEWAY_URL": self.discord.gateway_url,
            "DISCORD_EDIT_INTERVAL": "0.2",
            "OPENROUTER_API_KEY": self.openrouter.api_key,
            "OPENROUTER_BASE_URL": self.openrouter.base_url,
            "DEFAULT_MODEL": DEFAULT_MODEL,
            "API_TOKEN": API_TOKEN,
            "JWT_SECRET": JWT_SECRET,
        }
        return service_env(**(fronts | variables))

    async def start(self, **variables: str) -> Service:
        """Start the service with `env(**variables)`; returns once both bots run."""
        service = await self.start_service(self.env(**variables))
        await service.wait_for_event("telegram.started")
        await service.wait_for_event("discord.ready")
        return service


@pytest.fixture
def fronts(
    fake_telegram: FakeTelegram,
    fake_discord: FakeDiscord,
    fake_openrouter: FakeOpenRouter,
    start_service: StartService,  # last, so the service stops before the fakes close
) -> Fronts:
    return Fronts(fake_telegram, fake_discord, fake_openrouter, start_service)


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test that requires REDIS_PASSWORD."""
    server = RedisProcess(tmp_path / "redis-with-password", "--requirepass", REDIS_PASSWORD)
    server.start()
    yield server
    server.stop()


def url_with_password(server: RedisProcess) -> str:
    return f"redis://:{quote(REDIS_PASSWORD, safe='')}@127.0.0.1:{server.port}/0"


# --- the people ------------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def user_jwt(user_id: str, *, secret: str = JWT_SECRET, expires_in: int = 600) -> str:
    return jwt.encode({"sub": user_id, "exp": int(time.time()) + expires_in}, secret, "HS256")


async def telegram_asks(
    fake: FakeTelegram, said: str, expected: str, *, user_id: int = TELEGRAM_USER
) -> StoredMessage:
    """A private message from `user_id` (by long polling); the bot's message reading `expected`."""
    fake.user_says(said, user_id=user_id, username=f"user{user_id}")
    return await shown_on_telegram(fake, user_id, expected)


async def shown_on_telegram(fake: FakeTelegram, chat_id: int, expected: str) -> StoredMessage:
    def found() -> list[StoredMessage]:
        return [m for m in fake.messages(chat_id) if m.visible_text == expected]

    try:
        return (await fake.wait_for(found, WAIT_SECONDS))[-1]
    except TimeoutError:
        shown = [m.visible_text for m in fake.messages(chat_id)]
        pytest.fail(f"the Telegram chat never read {expected!r}; it shows {shown!r}")


async def telegram_sees(fake: FakeTelegram, said: str, *, user_id: int) -> str:
    """Send a command; the text of the bot's next message."""
    before = len(fake.messages(user_id))
    fake.user_says(said, user_id=user_id, username=f"user{user_id}")
    new = await fake.wait_for(lambda: fake.messages(user_id)[before:], WAIT_SECONDS)
    return new[0].visible_text


async def discord_asks(person: Person, said: str) -> str:
    """A DM to the bot; the finished answer as the user reads it (footer left out)."""
    channel = person.fake.dm_channel_of(person.user_id)
    before = len(person.fake.messages(channel)) if channel is not None else 0
    person.posts(said)
    return answer_text(await person.finished_answer(after=before))


# --- 1. no secret in any log -----------------------------------------------------------------


def encodings(value: str) -> set[str]:
    """The value as it could slip out: itself, percent-encoded, and in base64."""
    raw = value.encode()
    return {
        value,
        quote(value, safe=""),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }


def leaked(secret_values: dict[str, str], output: str) -> list[str]:
    """Which secret, in which form, `output` holds."""
    return [
        f"{name} as {form!r}"
        for name, value in secret_values.items()
        for form in encodings(value)
        if form in output
    ]


async def webhook_post(
    http: httpx.AsyncClient, service: Service, body: Any, secret: str
) -> httpx.Response:
    """What Telegram does with an update: POST it to the webhook with the secret header."""
    url = f"{service.local_url}{WEBHOOK_PATH}"
    if isinstance(body, bytes):
        return await http.post(url, content=body, headers={SECRET_HEADER: secret})
    return await http.post(url, json=body, headers={SECRET_HEADER: secret})


async def drive_the_http_api(
    http: httpx.AsyncClient, service: Service, fake_openrouter: FakeOpenRouter
) -> list[str]:
    """Good and bad credentials, turns that succeed and fail; returns the JWTs it signed."""
    url, ana, bob, expired = (
        service.local_url,
        user_jwt("ana"),
        user_jwt("bob"),
        user_jwt("ana", expires_in=-60),
    )
    started = await http.post(
        f"{url}/api/chat/session/start",
        json={"userId": "ana", "initialMessage": "hello over http"},
        headers=bearer(API_TOKEN),
    )
    assert started.status_code == 201, started.text
    session_id = started.json()["session"]["id"]
    turn = {"sessionId": session_id, "message": "stream it", "stream": True}
    streamed = await http.post(f"{url}/api/chat/session", json=turn, headers=bearer(ana))
    assert "event: done" in streamed.text, streamed.text
    fake_openrouter.reject(401)  # the key refused: the model client's error path
    refused = await http.post(
        f"{url}/api/chat/session",
        json={"sessionId": session_id, "message": "x"},
        headers=bearer(ana),
    )
    assert refused.status_code == 502, refused.text
    fake_openrouter.server_error(502, times=3)  # every retry fails
    failed = await http.post(
        f"{url}/api/chat/session",
        json={"sessionId": session_id, "message": "y"},
        headers=bearer(ana),
    )
    assert failed.status_code in (502, 503), failed.text
    bad_credentials = [
        bearer("not-the-token"),
        bearer(API_TOKEN + "x"),
        bearer(user_jwt("ana", secret="another-secret-of-at-least-32-bytes!!")),
        bearer(expired),
        {"Authorization": f"Basic {API_TOKEN}"},
    ]
    for headers in bad_credentials:
        response = await http.get(f"{url}/api/sessions/{session_id}", headers=headers)
        assert response.status_code == 401, response.text
    someone_else = await http.get(f"{url}/api/sessions/{session_id}", headers=bearer(bob))
    assert someone_else.status_code == 404
    metrics = await http.get(f"{url}/metrics", headers=bearer(ana))
    assert metrics.status_code == 403
    return [ana, bob, expired]


async def drive_telegram(
    http: httpx.AsyncClient, service: Service, fake_telegram: FakeTelegram
) -> None:
    """A conversation by webhook, a forged update and a broken body."""
    await webhook_post(http, service, fake_telegram.user_says("/new Tides"), WEBHOOK_SECRET)
    created = text(ENGLISH, "session_created", title="Tides").replace("*", "")  # bold, as shown
    await shown_on_telegram(fake_telegram, TELEGRAM_USER, created)
    update = fake_telegram.user_says("hello telegram")
    await webhook_post(http, service, update, WEBHOOK_SECRET)
    await shown_on_telegram(fake_telegram, TELEGRAM_USER, "echo: hello telegram")
    forged = await webhook_post(http, service, fake_telegram.user_says("/help"), "not-the-secret")
    assert forged.status_code == 403
    broken = await webhook_post(http, service, b"{not json", WEBHOOK_SECRET)
    assert broken.status_code == 400


async def drive_discord(person: Person, model: FakeOpenRouter) -> list[str]:
    """A DM, a slash command, a failed edit and a dropped gateway; returns interaction tokens."""
    assert await discord_asks(person, "hello discord") == "echo: hello discord"
    interaction = person.runs("sessions")
    listing = await person.answer_to(interaction)
    assert "hello discord" in listing.content
    # A pause after the first words: they are shown (0.5 s in), and the rest comes before the
    # next edit slot (0.5 + DISCORD_EDIT_INTERVAL): the whole text is the one edit, and fails.
    model.stall(after_deltas=1, seconds=0.6)
    person.fake.fail("PATCH", EDIT_ROUTE, status=503, message="503: Service Unavailable")
    assert await discord_asks(person, "after a failed edit") == "echo: after a failed edit"
    await person.fake.drop_gateway()  # discord.py resumes: the token goes out again
    assert await discord_asks(person, "after a resume") == "echo: after a resume"
    return [interaction["token"]]


async def test_a_debug_run_of_every_front_with_faults_writes_no_secret_to_any_output(
    fronts: Fronts, run_cli: RunCli, redis_with_password: RedisProcess, http: httpx.AsyncClient
) -> None:
    """Why a leak would show: every value below is unique to this run and long enough for a
    substring search, and the search covers the whole of both processes' stdout and stderr,
    tracebacks included, for each value as is, percent-encoded and in base64. The faults (a
    refused model key, model 5xx, a forged and a broken webhook POST, a Discord 503 and gateway
    drop, a Redis restart, bad credentials) make the error paths log, where URLs, headers and
    reprs tend to slip out; FAULTS_LOGGED checks they did. Checked by hand: a `print` of
    API_TOKEN, a debug log of the Authorization header (a user's JWT) and a log of the Discord
    token in base64, each injected into the child through a sitecustomize, fail this test."""
    redis_url = url_with_password(redis_with_password)
    secret_variables = {
        "REDIS_URL": redis_url,
        "REDIS_PASSWORD": REDIS_PASSWORD,
        "OPENROUTER_API_KEY": fronts.openrouter.api_key,
        "TELEGRAM_BOT_TOKEN": fronts.telegram.token,
        "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "DISCORD_BOT_TOKEN": fronts.discord.token,
        "API_TOKEN": API_TOKEN,
        "JWT_SECRET": JWT_SECRET,
    }
    variables = secret_variables | {"LOG_LEVEL": "DEBUG", "TELEGRAM_WEBHOOK_URL": WEBHOOK_URL}
    service = await fronts.start(**variables)

    jwts = await drive_the_http_api(http, service, fronts.openrouter)
    await drive_telegram(http, service, fronts.telegram)
    interaction_tokens = await drive_discord(Person(fronts.discord), fronts.openrouter)
    fronts.openrouter.reject(401)
    terminal = await run_cli(
        "chat", "--user", "x", env=fronts.env(**variables),
        stdin="/new Notes\nrefused by the model\nhello terminal\n/sessions\n\n",
    )  # fmt: skip
    redis_with_password.kill()  # the Redis error paths, at DEBUG
    await poll_status(http, f"{service.local_url}/health", 503)
    redis_with_password.start()
    await poll_status(http, f"{service.local_url}/health", 200)
    assert await service.stop(signal.SIGTERM) == 0, service.output

    assert terminal.returncode == 0, terminal.output
    assert "echo: hello terminal" in terminal.stdout, terminal.output
    token_secret = fronts.telegram.token.split(":", 1)[1]  # what follows the bot's public id
    discord_hmac = fronts.discord.token.rsplit(".", 1)[1]  # the first part is the bot's id
    searched = secret_variables | {
        "REDIS_PASSWORD (percent-encoded)": quote(REDIS_PASSWORD, safe=""),
        "TELEGRAM_BOT_TOKEN's secret part": token_secret,
        "DISCORD_BOT_TOKEN's signature": discord_hmac,
        **{f"a user's JWT ({n})": token for n, token in enumerate(jwts)},
        **{f"an interaction token ({n})": t for n, t in enumerate(interaction_tokens)},
    }
    for output in (service.output, terminal.output):
        found = leaked(searched, output)
        assert not found, f"leaked: {found}\n{output}"
    assert [name for name in FAULTS_LOGGED if not service.events(name)] == [], service.output


# --- 2. isolation across fronts --------------------------------------------------------------


async def sessions_of(http: httpx.AsyncClient, service: Service, user_id: str) -> list[Any]:
    """The user's sessions, as the service token sees them."""
    response = await http.get(
        f"{service.local_url}/api/users/{user_id}/sessions", headers=bearer(API_TOKEN)
    )
    assert response.status_code == 200, response.text
    sessions: list[Any] = response.json()["sessions"]
    return sessions


async def contents_of(http: httpx.AsyncClient, service: Service, session_id: str) -> list[str]:
    response = await http.get(
        f"{service.local_url}/api/sessions/{session_id}/messages", headers=bearer(API_TOKEN)
    )
    assert response.status_code == 200, response.text
    return [message["content"] for message in response.json()["messages"]]


async def test_the_same_number_on_every_front_is_a_different_user_with_its_own_sessions(
    fronts: Fronts,
    run_cli: RunCli,
    redis_server: RedisProcess,
    redis_client: aioredis.Redis,  # an empty database for this test
    http: httpx.AsyncClient,
) -> None:
    service = await fronts.start(REDIS_URL=redis_server.url)
    on_discord = Person(fronts.discord, user_id=SAME_NUMBER, username="fortytwo")
    said = {
        "telegram:42": "from telegram",
        "discord:42": "from discord",
        "cli:42": "from the terminal",
        "42": "from http",
    }

    await telegram_asks(
        fronts.telegram, "from telegram", "echo: from telegram", user_id=SAME_NUMBER
    )
    assert await discord_asks(on_discord, "from discord") == "echo: from discord"
    terminal = await run_cli(
        "chat", "--user", str(SAME_NUMBER), env=fronts.env(REDIS_URL=redis_server.url),
        stdin="from the terminal\n",
    )  # fmt: skip
    assert "echo: from the terminal" in terminal.stdout, terminal.output
    started = await http.post(
        f"{service.local_url}/api/chat/session/start",
        json={"userId": "42", "initialMessage": "from http"},
        headers=bearer(user_jwt("42")),
    )
    assert started.status_code == 201, started.text

    for user_id, words in said.items():
        (session,) = await sessions_of(http, service, user_id)
        assert session["userId"] == user_id
        assert await contents_of(http, service, session["id"]) == [words, f"echo: {words}"]
    for request in fronts.openrouter.requests:  # no front's words in another front's context
        contents = {m["content"] for m in request.body["messages"] if m["role"] == "user"}
        assert len(contents & set(said.values())) == 1, request.body["messages"]
    telegram_listing = await telegram_sees(fronts.telegram, "/sessions", user_id=SAME_NUMBER)
    discord_listing = (await on_discord.command("sessions")).content
    http_listing = await http.get(
        f"{service.local_url}/api/users/42/sessions", headers=bearer(user_jwt("42"))
    )
    assert [s["title"] for s in http_listing.json()["sessions"]] == ["from http"]
    for listing, own in ((telegram_listing, "from telegram"), (discord_listing, "from discord")):
        assert [words for words in said.values() if words in listing] == [own], listing


async def test_a_users_jwt_reaches_no_session_of_a_chat_user_and_learns_nothing_from_trying(
    fronts: Fronts,
    redis_server: RedisProcess,
    redis_client: aioredis.Redis,  # an empty database for this test
    http: httpx.AsyncClient,
) -> None:
    """Mallory (and the HTTP user "42") know the session ids of telegram:42 and discord:42.
    Every session-scoped call answers the 404 a session that never existed answers, and the
    listing of another user the 403 a user with no sessions gets."""
    service = await fronts.start(REDIS_URL=redis_server.url)
    await telegram_asks(
        fronts.telegram, "my telegram secret", "echo: my telegram secret", user_id=SAME_NUMBER
    )
    on_discord = Person(fronts.discord, user_id=SAME_NUMBER, username="fortytwo")
    assert await discord_asks(on_discord, "my discord secret") == "echo: my discord secret"
    victims = {
        user_id: (await sessions_of(http, service, user_id))[0]["id"]
        for user_id in ("telegram:42", "discord:42")
    }
    requests_before = len(fronts.openrouter.requests)

    for attacker in ("mallory", "42"):
        headers = bearer(user_jwt(attacker))
        for user_id, session_id in victims.items():
            never_existed = session_id[:4] + secrets.token_hex(14)  # the same tag, even
            calls = zip(session_calls(session_id), session_calls(never_existed), strict=True)
            for (method, path, body), (_, missing_path, missing_body) in calls:
                url = service.local_url
                victim = await http.request(method, url + path, json=body, headers=headers)
                missing = await http.request(
                    method, url + missing_path, json=missing_body, headers=headers
                )
                assert victim.status_code == 404, (attacker, method, path, victim.text)
                assert victim.json() == missing.json(), (method, path)
                assert "secret" not in victim.text
            listing = await http.get(
                f"{service.local_url}/api/users/{user_id}/sessions", headers=headers
            )
            nobody = await http.get(
                f"{service.local_url}/api/users/telegram:43/sessions", headers=headers
            )
            assert (listing.status_code, listing.json()) == (403, nobody.json()), listing.text

    assert len(fronts.openrouter.requests) == requests_before
    for user_id, session_id in victims.items():
        front = user_id.split(":")[0]
        expected = [f"my {front} secret", f"echo: my {front} secret"]
        assert await contents_of(http, service, session_id) == expected


def session_calls(session_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every call on one session: read it, list, page and export its messages, store one, chat
    in it (streamed or not), delete it."""
    turn = {"sessionId": session_id, "message": "injected"}
    return [
        ("GET", f"/api/sessions/{session_id}", None),
        ("GET", f"/api/sessions/{session_id}/messages", None),
        ("GET", f"/api/chat/session/{session_id}/history", None),
        ("GET", f"/api/sessions/{session_id}/export", None),
        ("POST", f"/api/sessions/{session_id}/messages", {"role": "user", "content": "injected"}),
        ("POST", "/api/chat/session", turn),
        ("POST", "/api/chat/session", turn | {"stream": True}),
        ("DELETE", f"/api/sessions/{session_id}", None),
    ]


async def test_an_http_user_may_not_act_under_another_fronts_user_id(
    fronts: Fronts,
    redis_server: RedisProcess,
    redis_client: aioredis.Redis,  # an empty database for this test
    http: httpx.AsyncClient,
) -> None:
    service = await fronts.start(REDIS_URL=redis_server.url)
    mallory, url = bearer(user_jwt("mallory")), service.local_url

    claims = [
        await http.post(f"{url}/api/sessions", json={"userId": "telegram:42"}, headers=mallory),
        await http.post(
            f"{url}/api/chat/session/start",
            json={"userId": "discord:42", "initialMessage": "in your name"},
            headers=mallory,
        ),
        await http.get(f"{url}/api/users/cli:42/sessions", headers=mallory),
    ]

    for response in claims:
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "forbidden"
    assert fronts.openrouter.requests == []
    for user_id in ("telegram:42", "discord:42", "cli:42"):
        assert await sessions_of(http, service, user_id) == []
    nothing = text(ENGLISH, "sessions_empty")
    assert await telegram_sees(fronts.telegram, "/sessions", user_id=SAME_NUMBER) == nothing
    on_discord = Person(fronts.discord, user_id=SAME_NUMBER, username="fortytwo")
    assert (await on_discord.command("sessions")).content == nothing
    assert [key async for key in redis_client.scan_iter(match="*:42*")] == []


# --- 3. the message door ---------------------------------------------------------------------


async def test_a_users_jwt_cannot_fill_a_session_through_the_message_door(
    start_service: StartService,
    fake_openrouter: FakeOpenRouter,
    redis_server: RedisProcess,
    redis_client: aioredis.Redis,  # an empty database for this test
    http: httpx.AsyncClient,
) -> None:
    service = await start_service(
        service_env(
            REDIS_URL=redis_server.url, API_TOKEN=API_TOKEN, JWT_SECRET=JWT_SECRET,
            OPENROUTER_API_KEY=fake_openrouter.api_key,
            OPENROUTER_BASE_URL=fake_openrouter.base_url, RATE_LIMIT_MESSAGES="5",
        )
    )  # fmt: skip
    mallory, url = bearer(user_jwt("mallory")), service.local_url
    created = await http.post(f"{url}/api/sessions", json={"userId": "mallory"}, headers=mallory)
    messages = f"{url}/api/sessions/{created.json()['id']}/messages"

    async def add(role: str, content: str) -> httpx.Response:
        return await http.post(messages, json={"role": role, "content": content}, headers=mallory)

    huge = "x" * 60_000
    as_the_model = [await add(role, huge) for role in ("assistant", "system")]
    too_long = await add("user", huge)
    within = [await add("user", f"note {number}") for number in range(5)]
    past_the_rate = await add("user", "note 5")
    turn = await http.post(
        f"{url}/api/chat/session",
        json={"sessionId": created.json()["id"], "message": "and a turn"},
        headers=mallory,
    )

    for response in as_the_model:
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "forbidden"
    assert too_long.status_code == 422, too_long.text
    assert too_long.json()["error"]["code"] == "message_too_long"
    assert [response.status_code for response in within] == [201] * 5
    for refused in (past_the_rate, turn):
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
    page = await http.get(messages, headers=mallory)
    assert [m["content"] for m in page.json()["messages"]] == [f"note {n}" for n in range(5)]
    assert fake_openrouter.requests == []
