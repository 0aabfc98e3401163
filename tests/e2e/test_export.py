"""/export end to end on every front: a Telegram document, a Discord attachment, an HTTP
download and a file written by the terminal, each holding the user's session as Markdown.

The chat fronts run as `python -m bots` on the strict fakes (which keep what was uploaded);
the HTTP API runs in-process (tests/e2e/http_app.py). Expected sentences come from the
core's catalogue.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis.asyncio as aioredis

from core.messages import ENGLISH, PORTUGUESE, text
from core.sessions.keys import session_key
from tests.e2e.conftest import RunCli, Service, child_env
from tests.e2e.discord_support import Person, StartBot
from tests.e2e.http_app import RunningApi, ServeApi, assert_error, bearer
from tests.fakes.discord_payloads import StoredMessage as DiscordMessage
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.fakes.telegram_server import DEFAULT_USER_ID, FakeTelegram, StoredMessage
from tests.redis_process import RedisProcess

MODEL = "test/default-model"
WAIT_SECONDS = 10.0


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def assert_transcript(markdown: str, title: str, *pairs: tuple[str, str]) -> None:
    """The export of `title` holding these (speaker, content) messages, in this order."""
    assert markdown.startswith(f"# {title}\n\n"), markdown
    assert f" · {len(pairs)} messages\n\n---\n\n" in markdown, markdown
    position = 0
    for speaker, content in pairs:
        found = markdown.index(f"### {speaker} · ", position)
        position = markdown.index(f"\n\n{content}", found)
    assert markdown.endswith("\n")


# --- Telegram ----------------------------------------------------------------------------------


@pytest.fixture
async def telegram(start_telegram_service: Callable[..., Awaitable[Service]]) -> Service:
    return await start_telegram_service(DEFAULT_MODEL=MODEL, TELEGRAM_EDIT_INTERVAL="0.2")


async def telegram_asks(
    fake: FakeTelegram, said: str, shown: Callable[[StoredMessage], bool], **who: Any
) -> StoredMessage:
    """Say something; the bot's first later message in that chat for which `shown` holds."""
    chat = who.get("user_id", DEFAULT_USER_ID)
    before = len(fake.messages(chat))
    fake.user_says(said, **who)
    found = await fake.wait_for(
        lambda: [m for m in fake.messages(chat)[before:] if shown(m)], WAIT_SECONDS, what=said
    )
    return found[0]


def telegram_file(fake: FakeTelegram, message: StoredMessage) -> tuple[dict[str, Any], str]:
    document = message.extra["document"]
    return document, fake.files[document["file_id"]].decode()


def is_document(message: StoredMessage) -> bool:
    return "document" in message.extra


async def test_telegram_export_sends_the_session_as_a_markdown_document(
    telegram: Service, fake_telegram: FakeTelegram
) -> None:
    await telegram_asks(fake_telegram, "/new Tides", lambda m: "Tides" in m.visible_text)
    await telegram_asks(
        fake_telegram, "How do tides work?", lambda m: m.visible_text == "echo: How do tides work?"
    )

    sent = await telegram_asks(fake_telegram, "/export", is_document)

    document, markdown = telegram_file(fake_telegram, sent)
    assert document["file_name"] == f"chatbridge-tides-{today()}.md"
    assert document["file_size"] == len(markdown.encode())
    assert sent.visible_text == "Tides as Markdown (2 messages)."
    assert {"type": "bold", "offset": 0, "length": len("Tides")} in sent.current.entities
    assert sent.extra["reply_to_message"]["text"] == "/export"
    assert_transcript(
        markdown, "Tides", ("You", "How do tides work?"),
        ("Assistant", "echo: How do tides work?"),
    )  # fmt: skip
    assert f" · {MODEL} · " in markdown


async def test_telegram_export_of_an_empty_session_in_portuguese(
    telegram: Service, fake_telegram: FakeTelegram
) -> None:
    who = {"language_code": "pt-br"}
    await telegram_asks(fake_telegram, "/new Vazia", lambda m: "Vazia" in m.visible_text, **who)

    sent = await telegram_asks(fake_telegram, "/export", is_document, **who)

    _, markdown = telegram_file(fake_telegram, sent)
    assert sent.visible_text == text(PORTUGUESE, "export_caption", title="Vazia", count=0).replace(
        "*", ""
    )
    assert markdown.startswith("# Vazia\n\nModelo ")
    assert markdown.endswith(f"_{text(PORTUGUESE, 'history_empty')}_\n")


async def test_telegram_export_without_a_session_answers_in_text(
    telegram: Service, fake_telegram: FakeTelegram
) -> None:
    answer = await telegram_asks(fake_telegram, "/export", lambda m: True)

    assert answer.visible_text == text(ENGLISH, "no_session")
    assert fake_telegram.calls_to("sendDocument") == []


async def test_telegram_users_export_only_their_own_session(
    telegram: Service, fake_telegram: FakeTelegram
) -> None:
    bob = {"user_id": 2002, "username": "bob"}
    await telegram_asks(fake_telegram, "bob's secret", lambda m: "echo" in m.visible_text, **bob)
    await telegram_asks(fake_telegram, "/new Alice's", lambda m: "Alice" in m.visible_text)

    sent = await telegram_asks(fake_telegram, "/export", is_document)

    _, markdown = telegram_file(fake_telegram, sent)
    assert "bob's secret" not in markdown
    assert markdown.startswith("# Alice's\n")


# --- Discord -----------------------------------------------------------------------------------


@pytest.fixture
async def discord_bot(start_discord_service: StartBot) -> Service:
    return await start_discord_service(DEFAULT_MODEL=MODEL, DISCORD_EDIT_INTERVAL="0.2")


def discord_file(fake: FakeDiscord, message: DiscordMessage) -> tuple[dict[str, Any], str]:
    [attachment] = message.attachments
    return attachment, fake.files[int(attachment["id"])].decode()


async def discord_chat(person: Person, said: str) -> None:
    """A DM to the bot, waited for until its answer is finished (its footer shows)."""
    channel = person.fake.dm_channel_of(person.user_id)
    before = len(person.fake.messages(channel)) if channel is not None else 0
    person.posts(said)
    await person.finished_answer(after=before)


async def test_discord_export_answers_privately_with_the_session_as_an_attachment(
    discord_bot: Service, fake_discord: FakeDiscord
) -> None:
    alice = Person(fake_discord)
    await discord_chat(alice, "How do tides work?")

    interaction = alice.runs("export")
    answer = await alice.answer_to(interaction)

    attachment, markdown = discord_file(fake_discord, answer)
    title = "How do tides work?"  # an untitled session is named after its first message
    assert fake_discord.responses(interaction["id"]).is_ephemeral
    assert answer.content == text(ENGLISH, "export_caption", title=title, count=2)
    assert attachment["filename"] == f"chatbridge-how-do-tides-work-{today()}.md"
    assert attachment["content_type"] == "text/markdown; charset=utf-8"
    assert_transcript(markdown, title, ("You", title), ("Assistant", f"echo: {title}"))


async def test_discord_export_typed_in_a_dm_arrives_as_an_attachment_there(
    discord_bot: Service, fake_discord: FakeDiscord
) -> None:
    alice = Person(fake_discord)
    await discord_chat(alice, "hello")
    channel = alice.where
    before = len(fake_discord.messages(channel))

    alice.posts("/export")
    [sent] = await fake_discord.wait_for(
        lambda: [m for m in fake_discord.messages(channel)[before:] if m.attachments],
        WAIT_SECONDS,
    )

    _, markdown = discord_file(fake_discord, sent)
    assert_transcript(markdown, "hello", ("You", "hello"), ("Assistant", "echo: hello"))


async def test_discord_export_without_a_session_says_so(
    discord_bot: Service, fake_discord: FakeDiscord
) -> None:
    answer = await Person(fake_discord).command("export")

    assert answer.content == text(ENGLISH, "no_session")
    assert answer.attachments == []


# --- HTTP ---------------------------------------------------------------------------------------


API_TOKEN = "service-token-for-the-export-tests"
JWT_SECRET = "jwt-secret-of-the-export-tests-0123456789ab"


async def session_with_messages(api: RunningApi, title: str, *messages: dict[str, Any]) -> str:
    created = await api.client.post("/api/sessions", json={"userId": "ana", "title": title})
    session_id: str = created.json()["id"]
    for message in messages:
        added = await api.client.post(f"/api/sessions/{session_id}/messages", json=message)
        assert added.status_code == 201, added.text
    return session_id


async def test_http_export_downloads_the_session_as_a_markdown_attachment(
    serve_api: ServeApi,
) -> None:
    api = await serve_api()
    session_id = await session_with_messages(
        api, "Trip plans",
        {"role": "user", "content": "Where to?"},
        {"role": "assistant", "content": "Lisbon.", "model": "test/other"},
    )  # fmt: skip

    response = await api.client.get(f"/api/sessions/{session_id}/export")

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "text/markdown; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="chatbridge-trip-plans-{today()}.md"'
    )
    assert_transcript(response.text, "Trip plans", ("You", "Where to?"), ("Assistant", "Lisbon."))
    assert "### Assistant · " in response.text
    assert " · test/other · ? tokens" in response.text  # stored without usage


async def test_http_export_speaks_the_accept_language(serve_api: ServeApi) -> None:
    api = await serve_api()
    session_id = await session_with_messages(api, "Viagem", {"role": "user", "content": "Oi"})

    response = await api.client.get(
        f"/api/sessions/{session_id}/export", headers={"Accept-Language": "pt-BR,pt;q=0.9"}
    )

    assert response.status_code == 200, response.text
    assert "### Você · " in response.text
    assert "Modelo `test/model`" in response.text


async def test_http_export_places_the_summary_before_the_first_message_it_does_not_cover(
    serve_api: ServeApi, redis_client: aioredis.Redis
) -> None:
    api = await serve_api()
    session_id = await session_with_messages(
        api, "Long", *({"role": "user", "content": f"m{n}"} for n in range(1, 5))
    )
    # As save_summary.lua leaves it (core/summaries.py makes it after a turn).
    await redis_client.hset(
        session_key(session_id), mapping={"summary": "Ana likes tea.", "summaryUpTo": 2}
    )

    response = await api.client.get(
        f"/api/sessions/{session_id}/export", headers={"Accept-Language": "pt-BR"}
    )

    assert response.status_code == 200, response.text
    markdown = response.text
    section = (
        "\n\n### 📝 Resumo das mensagens 1 a 2\n\n"
        "_O modelo recebe este resumo em vez do texto original._\n\nAna likes tea.\n\n"
    )
    assert markdown.index("\n\nm2\n\n") < markdown.index(section)
    assert markdown.index(section) < markdown.index("\n\nm3\n\n")


async def test_http_export_of_an_empty_session(serve_api: ServeApi) -> None:
    api = await serve_api()
    session_id = await session_with_messages(api, "Nothing yet")

    response = await api.client.get(f"/api/sessions/{session_id}/export")

    assert response.status_code == 200, response.text
    assert response.text.endswith(f"_{text(ENGLISH, 'history_empty')}_\n")


async def test_http_export_of_another_users_session_is_404(serve_api: ServeApi) -> None:
    api = await serve_api(api_token=API_TOKEN, jwt_secret=JWT_SECRET)
    created = await api.client.post(
        "/api/sessions", json={"userId": "bob"}, headers=bearer(API_TOKEN)
    )
    bob_session = created.json()["id"]
    ana = bearer(jwt.encode({"sub": "ana", "exp": 2**31}, JWT_SECRET, algorithm="HS256"))

    response = await api.client.get(f"/api/sessions/{bob_session}/export", headers=ana)
    unknown = await api.client.get(f"/api/sessions/{'0' * 32}/export", headers=ana)

    assert_error(response, 404, "session_not_found")
    assert_error(unknown, 404, "session_not_found")
    mine = await api.client.get(f"/api/sessions/{bob_session}/export", headers=bearer(API_TOKEN))
    assert mine.status_code == 200


# --- terminal -----------------------------------------------------------------------------------


async def test_terminal_export_writes_the_file_in_the_current_directory_never_over_one(
    run_cli: RunCli,
    redis_server: RedisProcess,
    redis_client: aioredis.Redis,
    fake_openrouter: FakeOpenRouter,
    tmp_path: Path,
) -> None:
    env = child_env(
        DEFAULT_MODEL=MODEL, REDIS_URL=redis_server.url,
        OPENROUTER_API_KEY=fake_openrouter.api_key, OPENROUTER_BASE_URL=fake_openrouter.base_url,
    )  # fmt: skip
    stdin = "/new Tides\nhello tides\n/export\n/export\n"

    result = await run_cli("chat", "--user", "ana", env=env, stdin=stdin, cwd=tmp_path)

    assert result.returncode == 0, result.output
    first = tmp_path / f"chatbridge-tides-{today()}.md"
    second = tmp_path / f"chatbridge-tides-{today()}-2.md"
    assert "Tides as Markdown (2 messages)." in result.stdout
    assert f"Saved to {first.name}" in result.stdout
    assert f"Saved to {second.name}" in result.stdout
    assert first.read_text() == second.read_text()
    assert_transcript(
        first.read_text(), "Tides", ("You", "hello tides"), ("Assistant", "echo: hello tides")
    )
