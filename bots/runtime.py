"""Builds the core once, from settings, and tears it down in reverse order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog

from core import tokens
from core.attachments.intake import AttachmentIntake, IntakeLimits
from core.chat import ChatService, TurnSettings
from core.commands import CommandHandler
from core.errors import StoreError
from core.events.publisher import event_publisher
from core.events.webhooks import Webhooks
from core.llm.models import ModelCatalog
from core.llm.openrouter import OpenRouterClient
from core.observability.analytics import AnalyticsFlusher, Tallies
from core.observability.metrics import Metrics
from core.personas import load_personas
from core.sessions.key_migration import KeyMigrationReport, migrate_until_done, migrate_user_keys
from core.sessions.limits import SessionLimits
from core.sessions.store import SessionStore
from core.settings import PdfEngine, Settings, Summaries
from core.storage.connection import (
    RedisClient,
    close_redis,
    describe_redis,
    redis_from_settings,
)
from core.storage.embedded import EmbeddedRedis, project_redis_conf, socket_of_running_service
from core.summaries import Summarizer

log = structlog.get_logger(__name__)

EMBEDDED_DATA_DIR = Path("data")
# How long a summary under way may finish when the services close without `stop_turns`
# (the terminal front); it is made again after a later turn if it could not.
SUMMARY_CLOSE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Services:
    """Everything the fronts share; built once per process."""

    settings: Settings
    redis: RedisClient
    store: SessionStore
    chat: ChatService
    commands: CommandHandler
    metrics: Metrics  # the one every part above counts into; GET /metrics serves it
    # Writes what `metrics` tallies for the dashboard to Redis every few seconds.
    analytics: AnalyticsFlusher | None = None
    # Files sent with a message, made into what a turn stores (core/attachments/intake.py).
    intake: AttachmentIntake | None = None
    # Event delivery to WEBHOOK_URLS (None: off); only `serve` starts it.
    webhooks: Webhooks | None = None
    # What moving keys of the first layout did at start (None: Redis did not answer, and a
    # background task keeps trying).
    key_migration: KeyMigrationReport | None = None


@asynccontextmanager
async def open_services(
    settings: Settings, *, may_join_embedded: bool = False
) -> AsyncIterator[Services]:
    """The core on the configured Redis, else on an embedded one.

    `may_join_embedded`: use the embedded Redis of a service already running in this
    directory (the terminal beside `make run`) instead of refusing its data directory.
    """
    # Read before anything starts: a bad file stops the service (ConfigError, exit code 2).
    personas = load_personas(settings.personas_file)
    async with AsyncExitStack() as stack:
        url = await _redis_url(settings, stack, may_join_embedded=may_join_embedded)
        redis = redis_from_settings(settings, url=url)
        stack.push_async_callback(close_redis, redis)
        key_migration = await _migrate_user_keys(redis, settings, stack)
        tallies = Tallies()
        metrics = Metrics(models=(settings.default_model, *settings.fallback_models), tally=tallies)
        model = OpenRouterClient.from_settings(settings, metrics)
        stack.push_async_callback(model.aclose)
        events = event_publisher(redis, settings.webhook_urls)
        store = SessionStore(redis, SessionLimits.from_settings(settings), metrics, events=events)
        webhooks = Webhooks.from_settings(redis, events, settings)
        if webhooks is not None:
            stack.push_async_callback(webhooks.stop)  # before the Redis client closes
        catalog = ModelCatalog(redis, model)
        stack.push_async_callback(catalog.aclose)
        # Loaded off the event loop (about 0.1 s) before the first turn needs it.
        await asyncio.to_thread(tokens.encoding)
        summarizer = None
        if settings.summaries is Summaries.ON:
            summarizer = Summarizer(
                store.summaries, model,
                summary_model=settings.summary_model or settings.default_model,
                max_messages=settings.max_messages_per_session,
            )  # fmt: skip
            # Before the model client and Redis close (the stack unwinds last in, first out):
            # a summary under way gets a moment; `serve` has given it its grace already.
            stack.push_async_callback(summarizer.close, SUMMARY_CLOSE_SECONDS)
        chat = ChatService(
            store,
            model,
            TurnSettings(
                system_prompt=settings.system_prompt,
                default_model=settings.default_model,
                turn_timeout_seconds=settings.turn_timeout,
                max_completion_tokens=settings.max_completion_tokens,
                vision_model=settings.vision_model,
                context_tokens=settings.context_tokens,
            ),
            metrics,
            catalog=catalog,
            summarizer=summarizer,
        )
        # Before the summaries' grace and the Redis client: a turn some front left running
        # would write to a closed client (`serve` has stopped the turns already).
        stack.push_async_callback(chat.aclose)
        analytics = AnalyticsFlusher(redis, tallies)
        # Entered after the Redis client, so its last flush runs before the client closes.
        await stack.enter_async_context(analytics.running())
        intake = AttachmentIntake(
            IntakeLimits(
                max_file_bytes=settings.max_attachment_bytes,
                image_max_side=settings.image_max_side,
                max_document_chars=settings.max_document_chars,
                sends_textless_pdfs=settings.pdf_engine is PdfEngine.OPENROUTER,
            ),
            model,
        )
        commands = CommandHandler(chat, metrics, intake=intake, personas=personas)
        yield Services(
            settings, redis, store, chat, commands, metrics, analytics=analytics, intake=intake,
            webhooks=webhooks, key_migration=key_migration,
        )  # fmt: skip


async def _migrate_user_keys(
    redis: RedisClient, settings: Settings, stack: AsyncExitStack
) -> KeyMigrationReport | None:
    """Keys of the first layout moved before anything is served (core/sessions/key_migration.py).

    When Redis does not answer, the process starts anyway (serving 503 until it does) and a
    background task moves them once it answers.
    """
    try:
        return await migrate_user_keys(redis, ttl_seconds=settings.session_ttl)
    except StoreError as error:
        log.info("keys.migration_postponed", reason=str(error))
    later = asyncio.create_task(migrate_until_done(redis, ttl_seconds=settings.session_ttl))
    stack.push_async_callback(_cancelled, later)  # before the Redis client closes
    return None


async def _cancelled(task: asyncio.Task[KeyMigrationReport]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _redis_url(
    settings: Settings, stack: AsyncExitStack, *, may_join_embedded: bool
) -> str | None:
    """None for the configured Redis; else the URL of the embedded one, started if needed."""
    if settings.redis_is_configured:
        log.info("redis.configured", redis=describe_redis(settings))
        return None
    running = socket_of_running_service(EMBEDDED_DATA_DIR) if may_join_embedded else None
    if running is not None:
        log.info("redis.embedded_joined", socket=str(running))
        return f"unix://{running}"
    embedded = EmbeddedRedis(data_dir=EMBEDDED_DATA_DIR, config_file=project_redis_conf())
    await stack.enter_async_context(embedded)
    log.info("redis.embedded", redis=embedded.description, socket=str(embedded.socket_path))
    return embedded.url
