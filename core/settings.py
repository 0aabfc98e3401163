"""Configuration from the environment and `.env`, validated once at startup.

Every variable is documented in README.md's configuration table and in `.env.example`; keep
the three in step. Secrets are `SecretStr` so they print as `**********`.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.errors import ConfigError
from core.spaces import GroupSessions

# A Discord id (a snowflake): a positive 64-bit number.
Snowflake = Annotated[int, Field(gt=0, lt=2**64)]
# HS256 wants a key as long as its hash (RFC 7518 §3.2); a bearer token, enough to resist guessing.
SHORTEST_SECRET = {"jwt_secret": 32, "api_token": 16}
MAX_RATE_LIMIT_MESSAGES = 1000
SHORTEST_WEBHOOK_SECRET = 16
CLUSTER_URL_SCHEMES = ("redis+cluster", "rediss+cluster")
REDIS_URL_SCHEMES = ("redis", "rediss", "unix", *CLUSTER_URL_SCHEMES)
DEFAULT_SENTINEL_PORT = 26379
MIB = 1024 * 1024


class SessionLimitPolicy(StrEnum):
    REJECT = "reject"
    EVICT_OLDEST = "evict_oldest"


class PdfEngine(StrEnum):
    """Who reads a PDF's text: pypdf here, or OpenRouter's file parser for the PDFs in which
    pypdf finds none (scans)."""

    LOCAL = "local"
    OPENROUTER = "openrouter"


class Summaries(StrEnum):
    """Whether messages that no longer fit a turn's context are summarised (core/summaries.py)."""

    ON = "on"
    OFF = "off"


class Settings(BaseSettings):
    """Every setting of the service; field names are the environment variables, lower-cased."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    redis_url: SecretStr | None = None
    redis_host: str | None = None
    redis_port: int = Field(default=6379, ge=1, le=65535)
    redis_password: SecretStr | None = None
    redis_db: int = Field(default=0, ge=0)
    # A Redis Cluster, found through REDIS_URL or REDIS_HOST (any node of it). A REDIS_URL
    # starting redis+cluster:// or rediss+cluster:// says the same.
    redis_cluster: bool = Field(default=False, validate_default=True)
    # Sentinel: the sentinels (host:port, comma-separated) and the name of the master they watch.
    redis_sentinels: Annotated[tuple[tuple[str, int], ...], NoDecode] = ()
    redis_sentinel_master: str | None = Field(default=None, validate_default=True)

    session_ttl: int = Field(default=3600, ge=1)
    max_sessions_per_user: int = Field(default=5, ge=1)
    max_messages_per_session: int = Field(default=100, ge=2)
    max_message_length: int = Field(default=4000, ge=1)
    # The longest assistant message POST /api/sessions/{id}/messages takes (imports). A turn's
    # own answer is not held to it (the user has seen it already): MAX_COMPLETION_TOKENS bounds it.
    max_assistant_message_length: int = Field(default=32_000, ge=1)
    session_limit_policy: SessionLimitPolicy = SessionLimitPolicy.REJECT
    # Whose sessions a group chat's messages go to (core/spaces.py): each member's own sessions
    # in that chat, or one set shared by the whole chat.
    group_sessions: GroupSessions = GroupSessions.PER_USER
    # Chat turns per user per window, counted in Redis across fronts and replicas (0: no limit).
    # Capped because Redis keeps one entry per turn of the window (docs/data-model.md).
    rate_limit_messages: int = Field(default=20, ge=0, le=MAX_RATE_LIMIT_MESSAGES)
    rate_limit_window: int = Field(default=60, ge=1, le=86_400)
    # Prompt + completion tokens per user per UTC day (unset or 0: no budget).
    daily_token_budget: int | None = Field(default=None, ge=0)
    # Bytes of files (images, documents, audio) a session keeps in Redis; past it the oldest
    # go. Worst case per space: MAX_SESSIONS_PER_USER times this (docs/data-model.md).
    max_attachment_bytes_per_session: int = Field(default=8 * 1024 * 1024, ge=0)
    # The images of this many last user messages reach the model; older ones as a placeholder.
    image_context_turns: int = Field(default=4, ge=0, le=100)

    openrouter_api_key: SecretStr | None = None
    openrouter_base_url: str = "https://openrouter.ai/api/v1"
    default_model: str = "openai/gpt-4o-mini"
    fallback_models: Annotated[tuple[str, ...], NoDecode] = ()
    # Where a message with images goes when its session's model takes none (OpenRouter's models
    # list says which do: core/llm/models.py); unset: such a message is refused, naming a model
    # that reads images.
    vision_model: str | None = None
    system_prompt: str = "You are a helpful assistant. Answer concisely."
    # The /persona presets: a TOML file, one [name] table with description and prompt each
    # (core/personas.py reads it at startup); unset or empty: the built-in presets.
    personas_file: Path | None = None
    # The speech-to-text model voice notes and audio are transcribed with (OpenRouter's
    # POST /audio/transcriptions; a chat model is refused there).
    transcription_model: str = "openai/whisper-1"
    # Seconds a turn may take from the start of the model call to the answer's last byte,
    # OpenRouter's keep-alive comments included: past it the turn ends like a cut stream.
    turn_timeout: float = Field(default=300.0, gt=0, le=86_400)
    # The most tokens one answer may take (sent as max_tokens): what a turn reserves of
    # DAILY_TOKEN_BUDGET for its answer until it ends.
    max_completion_tokens: int = Field(default=4096, ge=1, le=1_000_000)
    # Tokens a turn's request may take: system prompt, summary and the newest messages that
    # fit (core/turn.py). Unset: 16,000, or less when the model's context (OpenRouter's models
    # list) minus MAX_COMPLETION_TOKENS is smaller; a set value is held to the model's too.
    context_tokens: int | None = Field(default=None, ge=256, le=2_000_000)
    # Messages that fall out of the context are summarised after the answer (core/summaries.py)
    # by SUMMARY_MODEL (unset: DEFAULT_MODEL), and the summary goes with the next requests.
    summaries: Summaries = Summaries.ON
    summary_model: str | None = None
    # The model's circuit breaker (core/llm/breaker.py), per process and per requested model:
    # this many failed requests in a row (0: never) stop requests to it for the cooldown.
    model_breaker_failures: int = Field(default=5, ge=0, le=1000)
    model_breaker_cooldown: float = Field(default=30.0, gt=0, le=3600)

    # Attachments (core/attachments/). An image's long side as the model gets it, in pixels:
    # 1568 is what Anthropic's models take without scaling again; past 8000 they refuse it, and
    # below 64 nothing in it can be made out.
    image_max_side: int = Field(default=1568, ge=64, le=8000)
    # Characters of one document's text that reach the model (the rest is cut, and said so).
    # The text is stored and resent with the conversation: 2,000,000 is past every context.
    max_document_chars: int = Field(default=100_000, ge=1, le=2_000_000)
    # Bytes of one attachment as sent (before any re-encoding). Each is held in memory whole
    # while it is read, up to four per message, hence the ceiling of 50 MiB.
    max_attachment_bytes: int = Field(default=10 * MIB, ge=1, le=50 * MIB)
    pdf_engine: PdfEngine = PdfEngine.LOCAL

    telegram_bot_token: SecretStr | None = None
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    telegram_edit_interval: float = Field(default=1.0, ge=0.0, le=60.0)
    telegram_allowed_users: Annotated[tuple[str, ...], NoDecode] = ()
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: SecretStr | None = None
    discord_bot_token: SecretStr | None = None
    discord_api_base_url: str | None = None
    discord_gateway_url: str | None = None
    discord_guild_ids: Annotated[tuple[Snowflake, ...], NoDecode] = ()
    discord_channel_ids: Annotated[tuple[Snowflake, ...], NoDecode] = ()
    discord_edit_interval: float = Field(default=1.5, ge=0.0, le=60.0)
    discord_allowed_users: Annotated[tuple[str, ...], NoDecode] = ()
    discord_allowed_roles: Annotated[tuple[str, ...], NoDecode] = ()
    discord_shard_count: int | None = Field(default=None, ge=1)
    discord_shard_ids: Annotated[tuple[int, ...], NoDecode] = ()

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=3000, ge=0, le=65535)
    api_token: SecretStr | None = None
    jwt_secret: SecretStr | None = None
    # On SIGTERM/SIGINT: how long turns already running may take to finish before they are
    # interrupted (their question kept for /retry). Below the orchestrator's kill timeout.
    shutdown_grace_seconds: float = Field(default=25.0, ge=0, le=3600)

    # Event webhooks (core/events/webhooks.py): receivers, HMAC key, attempts before dead-letter.
    webhook_urls: Annotated[tuple[str, ...], NoDecode] = ()
    webhook_secret: SecretStr | None = Field(default=None, validate_default=True)
    webhook_max_attempts: int = Field(default=8, ge=1)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] | None = None

    @field_validator(
        "fallback_models",
        "telegram_allowed_users",
        "discord_guild_ids",
        "discord_channel_ids",
        "discord_allowed_users",
        "discord_allowed_roles",
        "discord_shard_ids",
        "webhook_urls",
        mode="before",
    )
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("personas_file", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in REDIS_URL_SCHEMES:
            raise ValueError(
                "must start with redis://, rediss://, unix://, redis+cluster:// "
                "or rediss+cluster://"
            )
        if parts.scheme in CLUSTER_URL_SCHEMES and parts.path.strip("/") not in ("", "0"):
            raise ValueError("a cluster has only database 0: drop the /<db> at the end")
        try:
            parts.port  # noqa: B018  (parsing the port is the check)
        except ValueError:
            raise ValueError("has a port that is not a number from 0 to 65535") from None
        if parts.scheme == "unix" and not parts.path:
            raise ValueError("unix:// needs the socket path, e.g. unix:///run/redis.sock")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("needs a host, e.g. redis://localhost:6379/0")
        return value

    @field_validator("redis_cluster")
    @classmethod
    def _cluster_address(cls, value: bool, info: ValidationInfo) -> bool:
        url = info.data.get("redis_url")
        scheme = urlsplit(url.get_secret_value()).scheme if url is not None else None
        if value and scheme == "unix":
            raise ValueError("a cluster is reached over TCP: REDIS_URL must not be unix://")
        if not (value or scheme in CLUSTER_URL_SCHEMES):
            return False
        if url is None and info.data.get("redis_host") is None:
            raise ValueError(
                "needs REDIS_URL or REDIS_HOST: the address of any node of the cluster"
            )
        database = urlsplit(url.get_secret_value()).path.strip("/") if url is not None else ""
        if info.data.get("redis_db", 0) != 0 or database not in ("", "0"):
            raise ValueError("a cluster has only database 0 (REDIS_DB, or the /<db> of REDIS_URL)")
        return True

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _sentinel_addresses(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        return tuple(_host_and_port(part.strip()) for part in value.split(",") if part.strip())

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels_alone(
        cls, value: tuple[tuple[str, int], ...], info: ValidationInfo
    ) -> tuple[tuple[str, int], ...]:
        if value and (info.data.get("redis_url") or info.data.get("redis_host")):
            raise ValueError(
                "cannot be combined with REDIS_URL or REDIS_HOST: the sentinels say where the "
                "master is (REDIS_PASSWORD and REDIS_DB still apply to it)"
            )
        if value and info.data.get("redis_cluster"):
            raise ValueError("cannot be combined with REDIS_CLUSTER: choose Sentinel or Cluster")
        return value

    @field_validator("redis_sentinel_master")
    @classmethod
    def _sentinel_master(cls, value: str | None, info: ValidationInfo) -> str | None:
        value = value.strip() if value is not None else None
        has_sentinels = bool(info.data.get("redis_sentinels"))
        if has_sentinels and not value:
            raise ValueError("is required with REDIS_SENTINELS: the name the sentinels monitor")
        if value and not has_sentinels:
            raise ValueError("needs REDIS_SENTINELS, the host:port of each sentinel")
        return value or None

    @field_validator("api_token", "jwt_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        shortest = SHORTEST_SECRET[info.field_name or ""]
        if value is not None and len(value.get_secret_value().encode()) < shortest:
            raise ValueError(f"must be at least {shortest} bytes long; a short one can be guessed")
        return value

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # Telegram's own rule for secret_token.
        if value is not None and not re.fullmatch(
            r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()
        ):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("discord_shard_ids")
    @classmethod
    def _shards_of_count(cls, value: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        count = info.data.get("discord_shard_count")
        if value and count is None:
            raise ValueError("needs DISCORD_SHARD_COUNT, the total number of shards")
        if count is not None and any(not 0 <= shard < count for shard in value):
            raise ValueError(
                f"each shard id must be from 0 to {count - 1} (DISCORD_SHARD_COUNT - 1)"
            )
        if len(set(value)) != len(value):
            raise ValueError("lists a shard id twice")
        return value

    @field_validator("discord_gateway_url")
    @classmethod
    def _websocket_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return value

    @field_validator("webhook_urls")
    @classmethod
    def _webhook_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                # Not the URL itself: it may carry a receiver's credentials.
                raise ValueError("each URL must start with http:// or https:// and name a host")
        if len(set(value)) != len(value):
            raise ValueError("lists a URL twice")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_signing_secret(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        if value is None and info.data.get("webhook_urls"):
            raise ValueError("is required with WEBHOOK_URLS: the key the requests are signed with")
        if value is not None and len(value.get_secret_value()) < SHORTEST_WEBHOOK_SECRET:
            raise ValueError(
                f"must be at least {SHORTEST_WEBHOOK_SECRET} characters; a short one can be guessed"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "openrouter_base_url",
        "telegram_api_base_url",
        "telegram_webhook_url",
        "discord_api_base_url",
    )
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("telegram_api_base_url")
    @classmethod
    def _bot_api_layout(cls, value: str) -> str:
        # The Bot API's methods are at <server>/bot<token>/<method>, its files at
        # <server>/file/bot<token>/<path>: the file URL is found by the /bot of this one.
        if "/bot" not in urlsplit(value).path:
            raise ValueError(
                "must be the Bot API's address with its /bot path "
                "(e.g. https://api.telegram.org/bot or http://localhost:8081/bot)"
            )
        return value

    @field_validator("default_model", "transcription_model")
    @classmethod
    def _model_id(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("vision_model", "summary_model")
    @classmethod
    def _optional_model_id(cls, value: str | None) -> str | None:
        # Blank counts as unset, as an empty value does (env_ignore_empty).
        stripped = value.strip() if value is not None else ""
        return stripped or None

    @property
    def redis_is_configured(self) -> bool:
        """True when the operator chose a Redis; otherwise the service embeds its own."""
        return (
            self.redis_url is not None or self.redis_host is not None or self.redis_sentinels != ()
        )

    @property
    def redis_topology(self) -> Literal["single", "cluster", "sentinel"]:
        if self.redis_cluster:
            return "cluster"
        return "sentinel" if self.redis_sentinels else "single"

    @property
    def http_host_is_loopback(self) -> bool:
        if self.http_host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.http_host).is_loopback
        except ValueError:
            return False


def _host_and_port(entry: str) -> tuple[str, int]:
    """`host:port`, `[ipv6]:port` or a bare host (the Sentinel port, 26379)."""
    parts = urlsplit(f"//{entry}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{entry!r} has a port that is not a number from 1 to 65535") from None
    if not parts.hostname or parts.path or parts.query or parts.fragment or "@" in entry:
        raise ValueError(f"{entry!r} is not host:port")
    if port == 0:
        raise ValueError(f"{entry!r} has a port that is not a number from 1 to 65535")
    return parts.hostname, port or DEFAULT_SENTINEL_PORT


def load_settings(**overrides: object) -> Settings:
    """Read the environment (and `.env`); raise ConfigError with one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        variable = str(first["loc"][0]).upper() if first["loc"] else "configuration"
        reason = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{variable}: {reason}") from None
