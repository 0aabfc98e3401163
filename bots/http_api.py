"""The aiohttp application: health checks now; the REST API and metrics build on it."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from aiohttp import web

from bots.runtime import Core
from core.errors import StoreError

log = structlog.get_logger(__name__)


@dataclass
class RedisHealth:
    """The last state seen, so that an outage is logged once when it starts and once at its end."""

    is_up: bool = True


CORE = web.AppKey("core", Core)
REDIS_HEALTH = web.AppKey("redis_health", RedisHealth)


def build_app(core: Core) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[CORE] = core
    app[REDIS_HEALTH] = RedisHealth()
    app.router.add_get("/health", health)
    return app


async def health(request: web.Request) -> web.Response:
    """200 with Redis latency while Redis answers, 503 with the reason when it does not."""
    store, seen = request.app[CORE].store, request.app[REDIS_HEALTH]
    try:
        latency_ms = await store.ping()
    except StoreError as error:
        if seen.is_up:
            log.warning("redis.unavailable", reason=str(error))
        seen.is_up = False
        body = {"status": "unavailable", "redis": {"status": "down", "error": str(error)}}
        return web.json_response(body, status=503)
    if not seen.is_up:
        log.info("redis.available", latency_ms=round(latency_ms, 2))
    seen.is_up = True
    return web.json_response(
        {"status": "ok", "redis": {"status": "up", "latencyMs": round(latency_ms, 2)}}
    )
