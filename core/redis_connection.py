"""The one Redis client of a process, built from settings (or from the embedded server's URL)."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.settings import Settings

# A command retries a dropped connection a few times, quickly, then fails as StoreUnavailable:
# users get an answer in about a second instead of a hang, and the pool reconnects by itself
# on the next command once Redis is back.
RETRIES = 3
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 0.5
CONNECT_TIMEOUT_SECONDS = 2.0
COMMAND_TIMEOUT_SECONDS = 5.0


def redis_from_settings(settings: Settings, *, url: str | None = None) -> aioredis.Redis:
    """A pooled client; `url` (the embedded server's) wins over the settings."""
    options: dict[str, object] = {
        "decode_responses": True,
        "retry": Retry(
            ExponentialBackoff(cap=BACKOFF_CAP_SECONDS, base=BACKOFF_BASE_SECONDS), RETRIES
        ),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": COMMAND_TIMEOUT_SECONDS,
        "health_check_interval": 15,
        "client_name": "chatbridge",
    }
    if url is None and settings.redis_url is not None:
        url = settings.redis_url.get_secret_value()
    if url is not None:
        return aioredis.Redis.from_url(url, **options)  # type: ignore[arg-type]
    return aioredis.Redis(
        host=settings.redis_host or "127.0.0.1",
        port=settings.redis_port,
        db=settings.redis_db,
        password=settings.redis_password.get_secret_value() if settings.redis_password else None,
        **options,  # type: ignore[arg-type]
    )


def describe_redis(settings: Settings) -> str:
    """Where the configured Redis is, for logs: never the password."""
    if settings.redis_url is not None:
        parts = urlsplit(settings.redis_url.get_secret_value())
        host = parts.hostname or parts.path
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path if parts.hostname else ''}"
    return f"redis://{settings.redis_host}:{settings.redis_port}/{settings.redis_db}"
