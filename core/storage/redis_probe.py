"""Asking a redis-server we started how it is: ready, still loading its data (and how far),
or not answering; and who answers on a socket that may belong to another process."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError

log = structlog.get_logger(__name__)

PROBE_TIMEOUT = 1.0
# How often a load that takes a while is reported (the first report comes at once).
LOADING_LOG_INTERVAL = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class Loading:
    """One INFO persistence read of a server loading its data."""

    loaded_bytes: int
    total_bytes: int
    loaded_perc: float
    eta_seconds: int


@dataclasses.dataclass(slots=True)
class LoadProgress:
    """How far a server loading its data has got, and when it last got further."""

    progressed_at: float
    last: Loading | None = None
    logged_at: float | None = None

    def observe(self, loading: Loading, now: float) -> None:
        """Take one read while loading: progress when more bytes are loaded than before."""
        if self.last is not None and loading.loaded_bytes <= self.last.loaded_bytes:
            return
        self.progressed_at, self.last = now, loading
        if self.logged_at is None or now - self.logged_at >= LOADING_LOG_INTERVAL:
            self.logged_at = now
            log.info("redis.embedded_loading", **dataclasses.asdict(loading))

    def so_far(self) -> str:
        """For a failure's message: how far the load had got, if one was seen."""
        if self.last is None:
            return ""
        return f", having loaded {self.last.loaded_perc:g} % of its data"


async def is_ready(client: Redis, load: LoadProgress) -> bool:
    """True once the server answers and has loaded its data; until then its progress goes to
    `load`. Asked with INFO, which Redis answers while loading: a LOADING error would make
    redis-py drop the connection, and a new one takes several of a busy load's pauses."""
    try:
        info = await client.info("persistence")
    except RedisError:
        return False  # not listening yet, or not answering
    if not int(info.get("loading", 0)):
        return True
    load.observe(
        Loading(
            loaded_bytes=int(info.get("loading_loaded_bytes", 0)),
            total_bytes=int(info.get("loading_total_bytes", 0)),
            loaded_perc=float(info.get("loading_loaded_perc", 0.0)),
            eta_seconds=int(info.get("loading_eta_seconds", 0)),
        ),
        asyncio.get_running_loop().time(),
    )
    return False


def probe_client(socket_path: Path) -> Redis:
    # No retries: the callers poll, and a probe must answer fast.
    return Redis(
        unix_socket_path=str(socket_path),
        socket_connect_timeout=PROBE_TIMEOUT,
        socket_timeout=PROBE_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        # No CLIENT SETINFO on connecting: a loading server answers it only at its next pause.
        driver_info=None,
    )


async def describe_server_on(socket_path: Path) -> str | None:
    """Who answers on socket_path, or None when nothing listens there."""
    client = probe_client(socket_path)
    try:
        info = await client.info("server")
    except BusyLoadingError:
        return "a redis-server still loading its data"
    except RedisConnectionError:
        return None  # no socket, or one left by a dead server (Redis replaces it)
    except RedisError:
        return "a process that accepts connections but does not answer like Redis"
    finally:
        await client.aclose()
    return f"redis-server {info.get('redis_version', '?')} (pid {info.get('process_id', '?')})"
