"""Front overhead: what the Telegram front adds between an update and the bot's final message.

**What runs.** The real `TelegramFront`, in this process, on a core built as
`bots.runtime.open_services` builds it but with `InstantModel` instead of OpenRouter, on the Redis
at `url`, with Settings given explicitly (no environment, no `.env`). It talks to the strict
fake Bot API (`tests/fakes/telegram_server.py`) running in a child process: the fake parses
every request's form and HTML (about 0.5 ms of CPU a request), and in our process (one loop,
one GIL) that work would be charged to the front, which sends many more requests than the
baseline. The child reports each bot message it accepts with its `time.monotonic()`, the
system-wide monotonic clock on Linux, so comparable with ours.

**How updates arrive.** As `Update.de_json(...)` objects put on `app.update_queue`, which is
what the front's webhook handler does once it has checked the secret; the front runs in
webhook mode (no updater), as replicas do. Long polling would add the fake's getUpdates round
trips and batching (an update waits for the poll in flight to come back): the fake's and the
poller's delay, not the front's. Posting to the webhook route would add an HTTP client in
this process, and the baseline has no such route.

**Latency** of one update: from just before `Update.de_json` and `update_queue.put`, to the
moment the fake has accepted the message that completes the answer: the sendMessage or
editMessageText whose visible text is the whole reply (not a preview ending in " …").
`first` is the same, up to the bot's first message for that update (for us, a preview).

**Baseline**, in the same run: the same fake, a python-telegram-bot Application built as the
front builds its own (`InOrderPerSpace(64)`, no updater, AIORateLimiter whenever our side has
it), whose only handler answers each text update with one `send_message` of the same reply (the
same HTML), without core or Redis: the floor of any PTB bot on this machine.

**Load.** `chats` private chats, one user each, start together; each sends its next message
once the previous answer is final (a closed loop), `updates_per_chat` times. Updates per second:
the updates answered over the time from the first update to the last final message. Before each
side is measured, two warm-up chats (not counted) load the Lua scripts and open connections.

**Variants.** `SHIPPED` is the front as configured by default: edits at most every
TELEGRAM_EDIT_INTERVAL = 1.0 s per chat, and PTB's AIORateLimiter (30 requests/s per bot, for
every request naming a chat: chat actions and edits too). With an instant model the first
message (a preview) goes at once and the final edit waits for the chat's next edit slot, one
interval later: pacing dominates at one chat, the 30/s limiter at many. `PROCESSING` sets the
interval to 0 and takes the limiter out of both sides (`bot._rate_limiter = None` once the
Application is built; no setting does it), so that the figures show what the code costs.

Besides latency and throughput, each row has Bot API requests per update, CPU milliseconds per
update of this process (`time.process_time()`: front, PTB, httpx, redis-py; the same for the
baseline), and the fake's CPU, to show it was not the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from pydantic import SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from telegram import Update
from telegram.constants import ParseMode
from telegram.ext import AIORateLimiter, ApplicationBuilder, ContextTypes, MessageHandler, filters

from benchmarks.fake_bot_api import BOT_TOKEN, REPLY_HTML, FakeBotApi, fake_bot_api
from benchmarks.harness import InstantModel
from bots.runtime import Services
from bots.telegram.front import (
    BOT_API_CONNECTIONS,
    BOT_API_POOL_WAIT_SECONDS,
    TelegramApp,
    TelegramFront,
)
from bots.telegram.order import CONCURRENT_UPDATES, InOrderPerSpace
from core.chat import ChatModel, ChatService, TurnSettings
from core.commands import CommandHandler
from core.observability.metrics import Metrics
from core.sessions.limits import SessionLimits
from core.sessions.store import SessionStore
from core.settings import MAX_RATE_LIMIT_MESSAGES, Settings
from core.storage.connection import close_redis, redis_from_settings

MODEL = "openai/gpt-4o-mini"
WEBHOOK_URL = "https://bench.invalid/telegram/webhook"  # registered with the fake, never called
FIRST_CHAT = 5_000_000
WARMUP_CHATS = 2
# Per row and side, when updates_per_chat is not given: at one chat, enough for the p99 to be
# the 99th percentile of something (the second-worst of 200), not the worst of a few.
MIN_UPDATES = 200


@dataclass(frozen=True)
class Variant:
    """How the front is configured for a row: its edit interval, and PTB's rate limiter."""

    edit_interval: float  # TELEGRAM_EDIT_INTERVAL, seconds
    rate_limiter: bool  # AIORateLimiter, on both sides


SHIPPED = Variant(edit_interval=1.0, rate_limiter=True)
PROCESSING = Variant(edit_interval=0.0, rate_limiter=False)


@dataclass(frozen=True)
class FrontOverhead:
    """One row: our front and the bare-PTB baseline on the same fake and load. Times in ms."""

    chats: int
    updates: int  # answered per side: chats * updates per chat
    edit_interval: float  # seconds
    rate_limiter: bool
    ours_p50_ms: float  # update -> final message
    ours_p99_ms: float
    ours_per_second: float  # updates answered per second
    baseline_p50_ms: float
    baseline_p99_ms: float
    baseline_per_second: float
    added_p50_ms: float  # ours - baseline
    added_p99_ms: float
    ours_first_p50_ms: float  # update -> the bot's first message (a preview, for us)
    ours_first_p99_ms: float
    ours_requests_per_update: float  # Bot API calls: chat actions, sends, edits
    baseline_requests_per_update: float
    ours_cpu_ms_per_update: float  # of this process
    baseline_cpu_ms_per_update: float
    fake_cpu_share: float  # the fake's CPU time over our side's wall time (1.0: a whole core)
    fake_cpu_ms_per_request: float


async def front_overhead(
    url: str,
    chats: tuple[int, ...] = (1, 200),
    updates_per_chat: int | None = None,
    variants: Sequence[Variant] = (SHIPPED, PROCESSING),
) -> list[FrontOverhead]:
    """One row per variant and number of chats, in that order.

    `updates_per_chat` None: `MIN_UPDATES` updates per row spread over its chats (200 in a row
    of one chat, one each at 200). Time taken per update per chat: in a SHIPPED row, one edit
    interval at one chat and `chats * requests per update / 30` seconds at many (about 100 s at
    200 chats today: once the limiter delays a preview past the interval, every delta of the
    answer becomes an edit, some 15 requests an update).
    """
    rows = []
    async with fake_bot_api() as fake:
        next_chat = FIRST_CHAT
        for variant in variants:
            for count in chats:
                per_chat = updates_per_chat or max(1, math.ceil(MIN_UPDATES / count))
                sides = []
                for side in ("ours", "baseline"):
                    ids = list(range(next_chat, next_chat + WARMUP_CHATS + count))
                    next_chat += len(ids)
                    app = (
                        running_front(url, fake.base_url, variant, per_chat)
                        if side == "ours"
                        else _baseline(fake.base_url, variant)
                    )
                    sides.append(await _measure(fake, app, ids, per_chat))
                rows.append(_row(count, per_chat, variant, *sides))
    return rows


def _row(
    chats: int, per_chat: int, variant: Variant, ours: _Side, baseline: _Side
) -> FrontOverhead:
    ours_p50, ours_p99 = _percentile(ours.finals, 0.50), _percentile(ours.finals, 0.99)
    base_p50 = _percentile(baseline.finals, 0.50)
    base_p99 = _percentile(baseline.finals, 0.99)
    return FrontOverhead(
        chats=chats,
        updates=chats * per_chat,
        edit_interval=variant.edit_interval,
        rate_limiter=variant.rate_limiter,
        ours_p50_ms=ours_p50,
        ours_p99_ms=ours_p99,
        ours_per_second=ours.per_second,
        baseline_p50_ms=base_p50,
        baseline_p99_ms=base_p99,
        baseline_per_second=baseline.per_second,
        added_p50_ms=ours_p50 - base_p50,
        added_p99_ms=ours_p99 - base_p99,
        ours_first_p50_ms=_percentile(ours.firsts, 0.50),
        ours_first_p99_ms=_percentile(ours.firsts, 0.99),
        ours_requests_per_update=ours.requests_per_update,
        baseline_requests_per_update=baseline.requests_per_update,
        ours_cpu_ms_per_update=ours.cpu_ms_per_update,
        baseline_cpu_ms_per_update=baseline.cpu_ms_per_update,
        fake_cpu_share=ours.fake_cpu_share,
        fake_cpu_ms_per_request=ours.fake_cpu_ms_per_request,
    )


def _percentile(samples: Sequence[float], share: float) -> float:
    """Nearest rank, seconds in, milliseconds out: the smallest sample at or above `share`."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)] * 1000


# --- one side of a row -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Side:
    finals: list[float]  # seconds, one per update
    firsts: list[float]
    per_second: float
    requests_per_update: float
    cpu_ms_per_update: float
    fake_cpu_share: float
    fake_cpu_ms_per_request: float


async def _measure(
    fake: FakeBotApi,
    running: contextlib.AbstractAsyncContextManager[TelegramApp],
    chat_ids: list[int],
    per_chat: int,
) -> _Side:
    warmup, measured = chat_ids[:WARMUP_CHATS], chat_ids[WARMUP_CHATS:]
    updates = await fake.updates(chat_ids, per_chat)
    async with running as app:
        await asyncio.gather(*(fake.converse(app, updates[chat][:1]) for chat in warmup))
        before = await fake.stats()
        cpu = time.process_time()
        conversations = await asyncio.gather(
            *(fake.converse(app, updates[chat]) for chat in measured)
        )
        cpu = time.process_time() - cpu
        after = await fake.stats()
    answers = [answer for conversation in conversations for answer in conversation]
    wall = max(a.final_at for a in answers) - min(a.sent_at for a in answers)
    requests = after.requests - before.requests
    fake_cpu = after.cpu - before.cpu
    return _Side(
        finals=[answer.final_at - answer.sent_at for answer in answers],
        firsts=[answer.first_at - answer.sent_at for answer in answers],
        per_second=len(answers) / wall,
        requests_per_update=requests / len(answers),
        cpu_ms_per_update=cpu * 1000 / len(answers),
        fake_cpu_share=fake_cpu / (after.at - before.at),
        fake_cpu_ms_per_request=fake_cpu * 1000 / max(requests, 1),
    )


@contextlib.asynccontextmanager
async def running_front(
    redis_url: str, api_url: str, variant: Variant, per_chat: int, model: ChatModel | None = None
) -> AsyncIterator[TelegramApp]:
    """The real front, on services built as `open_services` builds them, with `model` (by
    default the instant one)."""
    turns = per_chat + 1  # and the warm-up turn
    settings = ExplicitSettings(
        redis_url=SecretStr(redis_url),
        telegram_bot_token=SecretStr(BOT_TOKEN),
        telegram_api_base_url=api_url,
        telegram_webhook_url=WEBHOOK_URL,
        telegram_edit_interval=variant.edit_interval,
        default_model=MODEL,
        # The per-user rate limit stays on (it is part of every turn), just above the run.
        rate_limit_messages=turns if turns <= MAX_RATE_LIMIT_MESSAGES else 0,
        rate_limit_window=3600,
        log_level="WARNING",
    )
    redis = redis_from_settings(settings)
    try:
        metrics = Metrics(models=(settings.default_model,))
        store = SessionStore(redis, SessionLimits.from_settings(settings), metrics)
        turn_settings = TurnSettings(
            system_prompt=settings.system_prompt, default_model=settings.default_model
        )
        chat = ChatService(store, model or InstantModel(), turn_settings, metrics)
        services = Services(settings, redis, store, chat, CommandHandler(chat, metrics), metrics)
        front = TelegramFront(services, settings)
        if not variant.rate_limiter:
            front.app.bot._rate_limiter = None
        await front.start()
        try:
            yield front.app
        finally:
            await front.stop()
    finally:
        await close_redis(redis)


@contextlib.asynccontextmanager
async def _baseline(api_url: str, variant: Variant) -> AsyncIterator[TelegramApp]:
    """A PTB Application built as the front builds its own, with one bare handler."""

    async def answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.effective_chat is not None:
            chat_id = update.effective_chat.id
            await context.bot.send_message(chat_id, REPLY_HTML, parse_mode=ParseMode.HTML)

    builder = (
        ApplicationBuilder()
        .token(BOT_TOKEN)
        .base_url(api_url)
        .concurrent_updates(InOrderPerSpace(CONCURRENT_UPDATES))
        .connection_pool_size(BOT_API_CONNECTIONS)
        .pool_timeout(BOT_API_POOL_WAIT_SECONDS)
        .updater(None)
    )
    if variant.rate_limiter:
        app: TelegramApp = builder.rate_limiter(AIORateLimiter()).build()
    else:
        app = builder.build()
    app.add_handler(MessageHandler(filters.TEXT, answer))
    await app.initialize()
    await app.start()
    try:
        yield app
    finally:
        await app.stop()
        await app.shutdown()


class ExplicitSettings(Settings):
    """Settings from the arguments alone: no environment variable, no `.env`."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)
