"""The process streams.py measures, one per side and row: ours (the real aiohttp app of
bots/http, with the Telegram front's webhook route when asked) or the bare loop.

**Ours** is built by `bots.runtime.open_services` (the real OpenRouter client, pointed at the
fake model) and `bots.http.app.build_app`, served by an aiohttp AppRunner as `python -m bots`
serves it; with `telegram`, a TelegramFront in webhook mode, its route on the same app, talking
to the fake Bot API.

**The bare loop** is what any aiohttp service streaming a model's answer must do at least:
read the JSON request, one Redis round trip (store the question, read the context), stream the
completion from the same fake model with httpx, relay each delta as an SSE event, one Redis
round trip (store the answer, refresh the TTL). Its pools are as large as the load: httpx's
unbounded, redis-py's at BARE_REDIS_CONNECTIONS (both libraries default to 100, and redis-py
8 refuses a command past that at once): a floor, not a copy of our settings.

**Measured here**, from a reset to a report (stdin/stdout, a JSON line each way): CPU seconds
of this process (`time.process_time()`), the event loop's lag (a probe sleeping PROBE_SECONDS
records how late it wakes), the largest resident set (/proc/self/statm, read by the probe), and
Redis round trips (socket writes of redis-py's connections: a pipeline counts once). With a
profile path, cProfile runs from the reset to the report and writes its stats there.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import redis.asyncio as aioredis
from aiohttp import web
from pydantic import SecretStr
from redis.asyncio.connection import AbstractConnection

from benchmarks.fake_bot_api import BOT_TOKEN
from benchmarks.front_overhead import MODEL, ExplicitSettings
from core.observability.logs import configure_logging

PROBE_SECONDS = 0.01
WEBHOOK_PATH = "/telegram/webhook"
WEBHOOK_SECRET = "bench-webhook-secret"  # noqa: S105  (the benchmark's own, no secret)
API_TOKEN = "bench-api-token-0123456789"  # noqa: S105
SESSION_TTL = 3600
BARE_REDIS_CONNECTIONS = 65_536
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class Probe:
    """The loop's lag and the process's peak RSS since the last reset; Redis round trips."""

    round_trips = 0

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.peak_rss = 0
        self.cpu = 0.0
        self.profile: cProfile.Profile | None = None

    def reset(self, profile: bool) -> dict[str, float]:
        self.lags = []
        Probe.round_trips = 0
        self.peak_rss = idle = _rss()
        self.cpu = time.process_time()
        if profile:
            self.profile = cProfile.Profile()
            self.profile.enable()
        return {"rss": idle}

    def report(self, profile_path: str | None) -> dict[str, Any]:
        cpu = time.process_time() - self.cpu
        if self.profile is not None:
            self.profile.disable()
            if profile_path:
                self.profile.dump_stats(profile_path)
            self.profile = None
        lags = sorted(self.lags)
        p99 = lags[max(0, -(-len(lags) * 99 // 100) - 1)] if lags else 0.0
        return {
            "cpu": cpu,
            "lag_p99": p99,
            "lag_max": lags[-1] if lags else 0.0,
            "peak_rss": self.peak_rss,
            "round_trips": Probe.round_trips,
        }

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(PROBE_SECONDS)
            self.lags.append(loop.time() - started - PROBE_SECONDS)
            self.peak_rss = max(self.peak_rss, _rss())


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


def _count_round_trips() -> None:
    """Every write of a command (or a pipeline) to Redis, on every redis-py connection."""
    send = AbstractConnection.send_packed_command

    async def counted(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        Probe.round_trips += 1
        await send(self, command, check_health)

    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]


# --- ours ----------------------------------------------------------------------------------


def settings_for(redis_url: str, model_url: str, bot_api_url: str | None) -> ExplicitSettings:
    telegram: dict[str, Any] = {}
    if bot_api_url:
        telegram = {
            "telegram_bot_token": SecretStr(BOT_TOKEN),
            "telegram_api_base_url": bot_api_url,
            "telegram_webhook_url": f"https://bench.invalid{WEBHOOK_PATH}",
            "telegram_webhook_secret": SecretStr(WEBHOOK_SECRET),
        }
    return ExplicitSettings(
        redis_url=SecretStr(redis_url),
        openrouter_api_key=SecretStr("sk-or-v1-bench"),
        openrouter_base_url=model_url,
        api_token=SecretStr(API_TOKEN),
        default_model=MODEL,
        log_level="WARNING",
        **telegram,
    )


@asynccontextmanager
async def ours(
    redis_url: str, model_url: str, bot_api_url: str | None
) -> AsyncIterator[web.AppRunner]:
    # Imported here: the bare side must not pay for importing the service.
    from bots.http.app import build_app  # noqa: PLC0415
    from bots.runtime import open_services  # noqa: PLC0415
    from bots.telegram.front import TelegramFront  # noqa: PLC0415

    settings = settings_for(redis_url, model_url, bot_api_url)
    async with AsyncExitStack() as stack:
        services = await stack.enter_async_context(open_services(settings))
        front = TelegramFront(services, settings) if bot_api_url else None
        app = build_app(services, front_routes=front.http_routes() if front else ())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        if front is not None:
            await front.start()
            stack.push_async_callback(front.stop)
        yield runner


# --- the bare loop -------------------------------------------------------------------------

REDIS = web.AppKey("redis", aioredis.Redis)
HTTP = web.AppKey("http", httpx.AsyncClient)


async def bare_chat(request: web.Request) -> web.StreamResponse:
    body = json.loads(await request.read())
    key = f"bare:{body['sessionId']}"
    redis = request.app[REDIS]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.rpush(key, json.dumps({"role": "user", "content": body["message"]}))
        pipe.lrange(key, -40, -1)
        _, context = await pipe.execute()
    messages = [json.loads(entry) for entry in context]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    parts = []
    request_body = {"model": MODEL, "messages": messages, "stream": True}
    async with request.app[HTTP].stream("POST", "/chat/completions", json=request_body) as answer:
        async for line in answer.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:])["choices"]
            text = choices[0]["delta"].get("content") if choices else None
            if text:
                parts.append(text)
                event = json.dumps({"text": text})
                await response.write(f"event: delta\ndata: {event}\n\n".encode())
    reply = "".join(parts)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.rpush(key, json.dumps({"role": "assistant", "content": reply}))
        pipe.expire(key, SESSION_TTL)
        await pipe.execute()
    await response.write(f"event: done\ndata: {json.dumps({'text': reply})}\n\n".encode())
    await response.write_eof()
    return response


@asynccontextmanager
async def bare(redis_url: str, model_url: str) -> AsyncIterator[web.AppRunner]:
    app = web.Application()
    app[REDIS] = aioredis.Redis.from_url(
        redis_url, decode_responses=True, max_connections=BARE_REDIS_CONNECTIONS
    )
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    app[HTTP] = httpx.AsyncClient(base_url=model_url, limits=limits, timeout=600)
    app.router.add_post("/api/chat/session", bare_chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        yield runner
    finally:
        await runner.cleanup()
        await app[HTTP].aclose()
        await app[REDIS].aclose()


# --- the child -----------------------------------------------------------------------------


def serve() -> None:
    """argv after -c: side (bare|http|telegram), redis URL, model URL, Bot API URL or '-',
    profile path or '-'."""
    side, redis_url, model_url, bot_api_url, profile_path = sys.argv[1:6]
    configure_logging(level="WARNING", log_format="console")
    _count_round_trips()
    asyncio.run(_serve(side, redis_url, model_url, None if bot_api_url == "-" else bot_api_url,
                       None if profile_path == "-" else profile_path))  # fmt: skip


async def _serve(
    side: str, redis_url: str, model_url: str, bot_api_url: str | None, profile_path: str | None
) -> None:
    probe = Probe()
    running = (
        bare(redis_url, model_url)
        if side == "bare"
        else ours(redis_url, model_url, bot_api_url if side == "telegram" else None)
    )
    async with running as runner:
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=8192)
        await site.start()
        probing = asyncio.create_task(probe.run())

        def say(message: object) -> None:
            sys.stdout.write(json.dumps({"reply": message}) + "\n")
            sys.stdout.flush()

        say(f"http://127.0.0.1:{runner.addresses[0][1]}")
        try:
            while line := await asyncio.to_thread(sys.stdin.readline):
                request = json.loads(line)
                if "reset" in request:
                    say(probe.reset(profile=profile_path is not None))
                elif "report" in request:
                    say(probe.report(profile_path))
        finally:
            probing.cancel()
