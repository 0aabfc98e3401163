"""What `make commander` hands Redis Commander: its settings, the Redis, and its environment.

The Redis is described as one entry of Redis Commander's `connections` config (ioredis options:
host/port, a unix socket `path`, `sentinels`, or `clusters`), built from the same settings the
service reads. Everything goes to Redis Commander through its environment, never its command
line: NODE_CONFIG (node-config's JSON override) and HTTP_USER / HTTP_PASSWORD.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.connection import SSLConnection, parse_url

from core.errors import ConfigError
from core.settings import Settings
from core.storage.connection import describe_redis

LISTEN_ADDRESS = "127.0.0.1"
CONNECTION_LABEL = "chatbridge"
# The only variables Redis Commander inherits: node-config maps many common names (PORT,
# ADDRESS, READ_ONLY, HTTP_USER, ...) over our NODE_CONFIG, so nothing else may leak in.
INHERITED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")


class CommanderSettings(BaseSettings):
    """REDIS_COMMANDER_USER / _PASSWORD (docker compose reads them too) and _PORT."""

    model_config = SettingsConfigDict(
        env_prefix="REDIS_COMMANDER_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    user: str = Field(default="admin", min_length=1)
    # None: a random one is generated for each run and printed once.
    password: SecretStr | None = None
    port: int = Field(default=8081, ge=1, le=65535)


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """The Redis to show, as one entry of Redis Commander's `connections` config."""

    connection: dict[str, object]
    description: str  # for the banner: never a password

    @property
    def password(self) -> str | None:
        password = self.connection.get("password")
        return password if isinstance(password, str) else None


def load_commander_settings() -> CommanderSettings:
    """Like load_settings: one line naming the variable on a bad value."""
    try:
        return CommanderSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]).upper() if first["loc"] else "SETTINGS"
        reason = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"REDIS_COMMANDER_{field}: {reason}") from None


def configured_target(settings: Settings) -> RedisTarget:
    """The configured Redis as Redis Commander describes a connection (ioredis options)."""
    connection: dict[str, object] = {"label": CONNECTION_LABEL, "dbIndex": settings.redis_db}
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    if settings.redis_topology == "sentinel":
        connection |= {
            "sentinels": [{"host": host, "port": port} for host, port in settings.redis_sentinels],
            "sentinelName": settings.redis_sentinel_master,
            "password": password,
        }
    elif settings.redis_url is not None:
        # The same URL parser the service's client uses, so both see one server. As for the
        # service, the URL's own password wins and REDIS_PASSWORD is not added to it.
        url = settings.redis_url.get_secret_value().replace("+cluster://", "://", 1)
        connection |= _from_url(parse_url(url))
    else:
        connection |= {
            "host": settings.redis_host or "127.0.0.1",
            "port": settings.redis_port,
            "password": password,
        }
    if settings.redis_topology == "cluster":
        connection = _as_cluster(connection)
    present = {name: value for name, value in connection.items() if value is not None}
    return RedisTarget(present, describe_redis(settings))


def socket_target(socket_path: Path) -> RedisTarget:
    """The embedded Redis: its unix socket, no password (only its owner may open the socket)."""
    connection: dict[str, object] = {
        "label": CONNECTION_LABEL,
        "path": str(socket_path),
        "dbIndex": 0,
    }
    return RedisTarget(connection, f"the embedded Redis on {socket_path}")


def _from_url(options: dict[str, object]) -> dict[str, object]:
    connection: dict[str, object] = {
        "username": options.get("username"),
        "password": options.get("password"),
        "dbIndex": options.get("db", 0),
    }
    if "path" in options:
        return connection | {"path": options["path"]}
    connection |= {"host": options.get("host", "localhost"), "port": options.get("port", 6379)}
    if options.get("connection_class") is SSLConnection:
        connection["tls"] = True  # rediss://: Redis Commander verifies the certificate
    return connection


def _as_cluster(connection: dict[str, object]) -> dict[str, object]:
    node = {"host": connection.pop("host"), "port": connection.pop("port")}
    return connection | {"clusters": [node], "isCluster": True, "dbIndex": 0}


def node_config(target: RedisTarget, port: int) -> dict[str, object]:
    """Redis Commander's configuration: this one connection, saved nowhere, on loopback only."""
    return {
        "noSave": True,  # else it writes connections, passwords included, into node_modules
        "noLogData": True,
        "server": {"address": LISTEN_ADDRESS, "port": port},
        "connections": [target.connection],
    }


def child_environment(target: RedisTarget, port: int, user: str, password: str) -> dict[str, str]:
    inherited = {name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ}
    return inherited | {
        "NODE_CONFIG": json.dumps(node_config(target, port)),
        "HTTP_USER": user,
        "HTTP_PASSWORD": password,
        "NODE_ENV": "production",  # Express: error pages without stack traces
        # node-config warns about any deployment name without a config file but this one.
        "NODE_CONFIG_ENV": "development",
    }
