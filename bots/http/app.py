"""The aiohttp application: health, the REST API, its OpenAPI document, metrics, dashboard.

One middleware turns every failure into the API's error JSON; another authenticates every
`/api/` and `/metrics` request except the open ones (health and the OpenAPI document).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import structlog
from aiohttp import web

from bots.http.auth import Authenticator
from bots.http.dashboard import add_dashboard_routes
from bots.http.errors import CODE_BY_STATUS, ApiError, core_error_response, error_response
from bots.http.openapi import openapi_document
from bots.http.routes import PRINCIPAL, SERVICES, body_limit, respond, routes
from bots.http.schema import Health, RedisStatus, SessionCounts, SessionsHealth
from bots.runtime import Services
from core.errors import ChatbridgeError, StoreError
from core.observability.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from core.sessions.store import SessionStore

log = structlog.get_logger(__name__)


ACTIVE_COUNT_REUSE_SECONDS = 5.0
OPEN_PATHS = frozenset({"/health", "/api/sessions/health", "/api/openapi.json"})
PROTECTED_PREFIXES = ("/api/", "/metrics")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class RedisHealth:
    """The last state seen, so that an outage is logged once when it starts and once at its end."""

    is_up: bool = True


@dataclass
class ActiveCount:
    """The active-session count, asked of Redis at most once every ACTIVE_COUNT_REUSE_SECONDS.

    Counting merges up to 60 HyperLogLogs: about 2 ms of Redis's single thread at 100,000
    sessions (docs/benchmarks.md). The endpoint is open, so nobody may spend that at will.
    """

    value: int = 0
    counted_at: float = -math.inf

    async def of(self, store: SessionStore) -> int:
        now = time.monotonic()
        if now - self.counted_at >= ACTIVE_COUNT_REUSE_SECONDS:
            self.value = await store.active_session_count()
            self.counted_at = now
        return self.value


REDIS_HEALTH = web.AppKey("redis_health", RedisHealth)
ACTIVE_COUNT = web.AppKey("active_count", ActiveCount)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
OPENAPI = web.AppKey("openapi", dict)


def build_app(
    services: Services, *, front_routes: Iterable[web.AbstractRouteDef] = ()
) -> web.Application:
    """The application; `front_routes` are routes a chat front serves itself (the Telegram
    webhook), wired by the composition root: this package knows no chat platform."""
    app = web.Application(
        client_max_size=body_limit(services.settings),
        middlewares=[error_middleware, auth_middleware],
    )
    app[SERVICES] = services
    app[REDIS_HEALTH] = RedisHealth()
    app[ACTIVE_COUNT] = ActiveCount()
    app[AUTHENTICATOR] = Authenticator(services.settings.api_token, services.settings.jwt_secret)
    app[OPENAPI] = openapi_document(services.settings)
    app.router.add_get("/health", health)
    app.router.add_get("/api/sessions/health", sessions_health)
    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_get("/metrics", metrics)
    app.router.add_routes(routes)
    add_dashboard_routes(app)  # /dashboard (public page) and /api/dashboard (full access)
    app.router.add_routes(front_routes)
    return app


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error.status, error.code, error.message, error.headers)
    except ChatbridgeError as error:
        return core_error_response(error)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = CODE_BY_STATUS.get(error.status, "http_error")
        headers = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
        return error_response(error.status, code, error.reason, headers)
    except Exception:
        log.exception("http.unhandled", path=request.path)
        return error_response(500, "internal_error", "Something went wrong on our side.")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in OPEN_PATHS or not request.path.startswith(PROTECTED_PREFIXES):
        return await handler(request)  # a front's own route (a webhook) checks its own secret
    principal = request.app[AUTHENTICATOR].authenticate(request.headers.get("Authorization"))
    if request.path == "/metrics":
        principal.require_full_access()
    request[PRINCIPAL] = principal
    structlog.contextvars.bind_contextvars(platform="http", user=principal.user_id)
    try:
        return await handler(request)
    finally:
        structlog.contextvars.unbind_contextvars("platform", "user")


async def health(request: web.Request) -> web.Response:
    """200 with Redis latency while Redis answers, 503 with the reason when it does not."""
    body = await _redis_health(request)
    return respond(body, status=200 if body.status == "ok" else 503, exclude_none=True)


async def sessions_health(request: web.Request) -> web.Response:
    """The session service: Redis latency and sessions active within SESSION_TTL."""
    base = await _redis_health(request)
    if base.status != "ok":
        body = SessionsHealth(status=base.status, redis=base.redis)
        return respond(body, status=503, exclude_none=True)
    store = request.app[SERVICES].store
    try:
        active = await request.app[ACTIVE_COUNT].of(store)
    except StoreError as error:
        down = RedisStatus(status="down", error=str(error))
        body = SessionsHealth(status="unavailable", redis=down)
        return respond(body, status=503, exclude_none=True)
    counts = SessionCounts(active=active, window_seconds=store.limits.ttl_seconds)
    body = SessionsHealth(status="ok", redis=base.redis, sessions=counts)
    return respond(body, exclude_none=True)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics, formatted from memory: a scrape never reaches Redis."""
    body = request.app[SERVICES].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


async def _redis_health(request: web.Request) -> Health:
    store, seen = request.app[SERVICES].store, request.app[REDIS_HEALTH]
    try:
        latency_ms = await store.ping()
    except StoreError as error:
        if seen.is_up:
            log.warning("redis.unavailable", reason=str(error))
        seen.is_up = False
        return Health(status="unavailable", redis=RedisStatus(status="down", error=str(error)))
    if not seen.is_up:
        log.info("redis.available", latency_ms=round(latency_ms, 2))
    seen.is_up = True
    return Health(status="ok", redis=RedisStatus(status="up", latency_ms=round(latency_ms, 2)))
