"""Settings: defaults from the original design, parsing, and one-line errors."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.settings import PdfEngine, SessionLimitPolicy, Settings, load_settings


@pytest.fixture(autouse=True)
def no_outside_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Settings read the environment and ./.env: run each test with neither."""
    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_defaults_are_the_original_designs():
    settings = load_settings()
    assert settings.session_ttl == 3600
    assert settings.max_sessions_per_user == 5
    assert settings.max_messages_per_session == 100
    assert settings.max_message_length == 4000
    assert settings.max_assistant_message_length == 32_000
    assert settings.session_limit_policy is SessionLimitPolicy.REJECT
    assert settings.http_host == "127.0.0.1"
    assert settings.http_port == 3000
    assert settings.openrouter_base_url == "https://openrouter.ai/api/v1"
    assert not settings.redis_is_configured


def test_audio_is_transcribed_with_whisper_1_unless_transcription_model_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
):
    assert load_settings().transcription_model == "openai/whisper-1"
    monkeypatch.setenv("TRANSCRIPTION_MODEL", " openai/gpt-4o-transcribe ")
    assert load_settings().transcription_model == "openai/gpt-4o-transcribe"


def test_fallback_models_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FALLBACK_MODELS", " a/one, b/two ,,")
    assert load_settings().fallback_models == ("a/one", "b/two")


def test_empty_values_count_as_unset(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "")
    monkeypatch.setenv("REDIS_HOST", "")
    settings = load_settings()
    assert settings.telegram_bot_token is None
    assert not settings.redis_is_configured


def test_secrets_do_not_show_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-very-secret")
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2hunter2@db:6379/0")
    shown = repr(load_settings())
    assert "sk-or-very-secret" not in shown
    assert "hunter2hunter2" not in shown


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SESSION_TTL", "abc"),
        ("SESSION_TTL", "0"),
        ("MAX_SESSIONS_PER_USER", "0"),
        ("MAX_MESSAGES_PER_SESSION", "1"),
        ("MAX_MESSAGE_LENGTH", "-5"),
        ("MAX_ASSISTANT_MESSAGE_LENGTH", "0"),
        ("SESSION_LIMIT_POLICY", "sometimes"),
        ("REDIS_PORT", "70000"),
        ("HTTP_PORT", "http"),
        ("LOG_FORMAT", "xml"),
        ("LOG_LEVEL", "LOUD"),
        ("OPENROUTER_BASE_URL", "ftp://example.com"),
        ("DEFAULT_MODEL", "  "),
        ("TRANSCRIPTION_MODEL", "  "),
        ("REDIS_URL", "localhost:6379"),
        ("REDIS_URL", "redis://db:notaport/0"),
        ("REDIS_URL", "redis:///0"),
        ("REDIS_URL", "unix://"),
        ("JWT_SECRET", "x" * 31),
        ("API_TOKEN", "x" * 15),
        ("DISCORD_API_BASE_URL", "discord.com/api/v10"),
        ("TELEGRAM_API_BASE_URL", "api.telegram.org/bot"),
        ("TELEGRAM_API_BASE_URL", "http://localhost:8081"),  # no /bot: no file URL either
        ("DISCORD_GATEWAY_URL", "https://gateway.discord.gg"),
        ("DISCORD_GUILD_IDS", "123,abc"),
        ("DISCORD_GUILD_IDS", "0"),
        ("DISCORD_CHANNEL_IDS", "-5"),
        ("DISCORD_EDIT_INTERVAL", "-1"),
        ("DISCORD_SHARD_COUNT", "0"),
        ("DISCORD_SHARD_IDS", "0"),  # without DISCORD_SHARD_COUNT
        ("RATE_LIMIT_MESSAGES", "-1"),
        ("RATE_LIMIT_MESSAGES", "1001"),
        ("RATE_LIMIT_WINDOW", "0"),
        ("RATE_LIMIT_WINDOW", "86401"),
        ("DAILY_TOKEN_BUDGET", "-1"),
        ("DAILY_TOKEN_BUDGET", "lots"),
        ("MAX_COMPLETION_TOKENS", "0"),
        ("MAX_COMPLETION_TOKENS", "1000001"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value).startswith(f"{variable}: ")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("host", "is_loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),  # noqa: S104  (the address under test, nothing binds it)
        ("10.0.0.5", False),
        ("example.com", False),
    ],
)
def test_loopback_hosts_are_recognised(
    monkeypatch: pytest.MonkeyPatch, host: str, is_loopback: bool
):
    monkeypatch.setenv("HTTP_HOST", host)
    assert load_settings().http_host_is_loopback is is_loopback


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "rediss://:pw@db.example:6380/1", "unix:///run/r.sock"]
)
def test_well_formed_redis_urls_are_accepted(monkeypatch: pytest.MonkeyPatch, url: str):
    monkeypatch.setenv("REDIS_URL", url)
    assert load_settings().redis_is_configured


def test_secrets_at_their_shortest_length_are_accepted(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("JWT_SECRET", "x" * 32)
    monkeypatch.setenv("API_TOKEN", "x" * 16)
    settings = load_settings()
    assert settings.jwt_secret is not None
    assert settings.api_token is not None


def test_discord_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DISCORD_GUILD_IDS", "111, 222,")
    monkeypatch.setenv("DISCORD_ALLOWED_ROLES", "chatbridge-users, 333")
    settings = load_settings()
    assert settings.discord_guild_ids == (111, 222)
    assert settings.discord_allowed_roles == ("chatbridge-users", "333")


@pytest.mark.parametrize(
    ("shard_ids", "accepted"),
    [("", True), ("0,2", True), ("3", False), ("1,1", False), ("0,1,2", True)],
)
def test_shard_ids_are_distinct_and_below_the_shard_count(
    monkeypatch: pytest.MonkeyPatch, shard_ids: str, accepted: bool
):
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "3")
    monkeypatch.setenv("DISCORD_SHARD_IDS", shard_ids)
    if accepted:
        assert load_settings().discord_shard_count == 3
    else:
        with pytest.raises(ConfigError, match=r"^DISCORD_SHARD_IDS: "):
            load_settings()


def test_turn_limits_default_to_20_a_minute_and_no_budget():
    settings = load_settings()
    assert (settings.rate_limit_messages, settings.rate_limit_window) == (20, 60)
    assert settings.daily_token_budget is None


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("RATE_LIMIT_MESSAGES", "0", "rate_limit_messages"),  # no rate limit
        ("RATE_LIMIT_MESSAGES", "1000", "rate_limit_messages"),
        ("RATE_LIMIT_WINDOW", "1", "rate_limit_window"),
        ("RATE_LIMIT_WINDOW", "86400", "rate_limit_window"),
        ("DAILY_TOKEN_BUDGET", "0", "daily_token_budget"),  # no budget
        ("DAILY_TOKEN_BUDGET", "1", "daily_token_budget"),
        ("MAX_COMPLETION_TOKENS", "1", "max_completion_tokens"),
        ("MAX_COMPLETION_TOKENS", "1000000", "max_completion_tokens"),
    ],
)
def test_turn_limits_at_the_ends_of_their_ranges_are_accepted(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
):
    monkeypatch.setenv(variable, value)
    assert getattr(load_settings(), field) == int(value)


def test_vision_model_is_unset_by_default():
    assert load_settings().vision_model is None


@pytest.mark.parametrize(
    ("value", "expected"), [("  ", None), (" openai/gpt-4o ", "openai/gpt-4o")]
)
def test_vision_model_is_trimmed_and_blank_counts_as_unset(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str | None
):
    monkeypatch.setenv("VISION_MODEL", value)
    assert load_settings().vision_model == expected


def test_attachment_settings_default_to_the_issues_values():
    settings = load_settings()
    assert settings.image_max_side == 1568
    assert settings.max_document_chars == 100_000
    assert settings.max_attachment_bytes == 10 * 1024 * 1024
    assert settings.pdf_engine is PdfEngine.LOCAL


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("IMAGE_MAX_SIDE", "64", "image_max_side"),
        ("IMAGE_MAX_SIDE", "65", "image_max_side"),
        ("IMAGE_MAX_SIDE", "7999", "image_max_side"),
        ("IMAGE_MAX_SIDE", "8000", "image_max_side"),
        ("MAX_DOCUMENT_CHARS", "1", "max_document_chars"),
        ("MAX_DOCUMENT_CHARS", "2000000", "max_document_chars"),
        ("MAX_ATTACHMENT_BYTES", "1", "max_attachment_bytes"),
        ("MAX_ATTACHMENT_BYTES", str(50 * 1024 * 1024 - 1), "max_attachment_bytes"),
        ("MAX_ATTACHMENT_BYTES", str(50 * 1024 * 1024), "max_attachment_bytes"),
    ],
)
def test_attachment_limits_at_the_ends_of_their_ranges_are_accepted(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
):
    monkeypatch.setenv(variable, value)
    assert getattr(load_settings(), field) == int(value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("IMAGE_MAX_SIDE", "63"),
        ("IMAGE_MAX_SIDE", "8001"),
        ("MAX_DOCUMENT_CHARS", "0"),
        ("MAX_DOCUMENT_CHARS", "2000001"),
        ("MAX_ATTACHMENT_BYTES", "0"),
        ("MAX_ATTACHMENT_BYTES", str(50 * 1024 * 1024 + 1)),
        ("MAX_ATTACHMENT_BYTES", "10MB"),
        ("PDF_ENGINE", "ocr"),
    ],
)
def test_attachment_limits_past_their_ranges_are_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value).startswith(f"{variable}: ")
    assert "\n" not in str(error.value)


def test_pdf_engine_openrouter_is_accepted(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PDF_ENGINE", "openrouter")
    assert load_settings().pdf_engine is PdfEngine.OPENROUTER
