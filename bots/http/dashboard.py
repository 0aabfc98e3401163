"""The analytics dashboard: a static page and the JSON figures it polls.

    GET /dashboard            the page (public: it holds no data)
    GET /dashboard/{asset}    its script and style, from bots/http/dashboard_static (a fixed list)
    GET /api/dashboard        the figures, for full access only (the API token, or anyone in
                              open loopback mode); a user's JWT gets 403

The page asks for the API token when /api/dashboard answers 401 and keeps it in the tab's
sessionStorage. Everything it loads comes from this app (no CDN), and its Content-Security-Policy
says so to the browser as well.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from bots.http.dashboard_schema import ActiveSessionsOut, DashboardOut
from bots.http.routes import SERVICES, principal_of, respond
from core.observability.analytics_report import AnalyticsReader

PAGE = "index.html"
ASSET_TYPES = {
    PAGE: "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate, so a new release's page and script go together
}
ASSETS = web.AppKey("dashboard_assets", dict)


def add_dashboard_routes(app: web.Application) -> None:
    """Serve the dashboard from `app` (its assets are read once, here)."""
    app[ASSETS] = _read_assets()
    app.router.add_get("/dashboard", page)
    app.router.add_get("/dashboard/{asset}", asset)
    app.router.add_get("/api/dashboard", figures)


async def page(request: web.Request) -> web.Response:
    """The dashboard's HTML."""
    return _asset_response(request, PAGE)


async def asset(request: web.Request) -> web.Response:
    """The dashboard's script or style; 404 for any other name."""
    name = request.match_info["asset"]
    if name == PAGE or name not in ASSET_TYPES:
        raise web.HTTPNotFound()
    return _asset_response(request, name)


async def figures(request: web.Request) -> web.Response:
    """Active sessions and users, turns, latency, tokens, cost, errors, refusals, memory."""
    principal_of(request).require_full_access()
    services = request.app[SERVICES]
    snapshot = await AnalyticsReader(services.redis).snapshot()
    sessions = ActiveSessionsOut(
        active=await services.store.active_session_count(),
        window_seconds=services.store.limits.ttl_seconds,
    )
    return respond(DashboardOut.of(snapshot, sessions))


def _asset_response(request: web.Request, name: str) -> web.Response:
    body: bytes = request.app[ASSETS][name]
    return web.Response(body=body, headers={"Content-Type": ASSET_TYPES[name], **HEADERS})


def _read_assets() -> dict[str, bytes]:
    """The files shipped in the package (pyproject's package-data), editable install or not."""
    folder = resources.files("bots.http") / "dashboard_static"
    return {name: (folder / name).read_bytes() for name in ASSET_TYPES}
