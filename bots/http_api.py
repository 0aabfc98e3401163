"""The aiohttp application: health checks now; the REST API and metrics build on it."""

from __future__ import annotations

from aiohttp import web

from bots.runtime import Core
from core.errors import StoreError

CORE = web.AppKey("core", Core)


def build_app(core: Core) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[CORE] = core
    app.router.add_get("/health", health)
    return app


async def health(request: web.Request) -> web.Response:
    """200 with Redis latency while Redis answers, 503 with the reason when it does not."""
    store = request.app[CORE].store
    try:
        latency_ms = await store.ping()
    except StoreError as error:
        body = {"status": "unavailable", "redis": {"status": "down", "error": str(error)}}
        return web.json_response(body, status=503)
    return web.json_response(
        {"status": "ok", "redis": {"status": "up", "latencyMs": round(latency_ms, 2)}}
    )
