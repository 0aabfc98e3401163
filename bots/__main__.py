"""The composition root: `python -m bots` serves; `python -m bots chat --user NAME` talks here;
`python -m bots backup FILE` and `python -m bots restore FILE` copy every session out and back;
`python -m bots migrate-keys` moves keys of the first layout (as every start does)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from bots.discord.front import DiscordFront
from bots.http.app import build_app
from bots.ops.backup_cli import backup, restore
from bots.ops.key_migration_cli import migrate_keys
from bots.runtime import Services, open_services
from bots.telegram.front import TelegramFront
from bots.terminal import USER_NAME_PATTERN, Terminal
from core.errors import ConfigError, InvalidBackup, StoreError
from core.messages import normalize_locale
from core.observability.logs import configure_logging
from core.settings import Settings, load_settings

log = structlog.get_logger("bots")

EXIT_FAILURE = 1
EXIT_CONFIG_ERROR = 2
# On stop, after the turns: for HTTP responses (an SSE stream's last event) to be written out.
RESPONSES_FINISH_SECONDS = 5.0


def main(argv: Sequence[str] | None = None) -> int:
    # python-telegram-bot's future behaviour (durations as timedelta), without its warning.
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    args = _parse_args(argv)
    try:
        settings = load_settings()
        if args.command == "chat":
            _configure_logging(settings, quiet=True)
            asyncio.run(chat(settings, args.user))
        elif args.command in ("backup", "restore"):
            _configure_logging(settings, quiet=True)
            print(f"chatbridge: {asyncio.run(_backup_command(settings, args))}", file=sys.stderr)
        elif args.command == "migrate-keys":
            _configure_logging(settings, quiet=True)
            print(f"chatbridge: {asyncio.run(migrate_keys(settings))}", file=sys.stderr)
        else:
            _require_auth_off_loopback(settings)
            _configure_logging(settings, quiet=False)
            asyncio.run(serve(settings))
    except ConfigError as error:
        print(f"chatbridge: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except (InvalidBackup, StoreError) as error:
        print(f"chatbridge: {args.command}: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as error:  # the backup file: missing, unwritable, a closed pipe
        where = f"{error.filename}: " if error.filename else ""
        print(f"chatbridge: {args.command}: {where}{error.strerror or error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    return 0


async def _backup_command(settings: Settings, args: argparse.Namespace) -> str:
    if args.command == "backup":
        return await backup(settings, args.file)
    return await restore(settings, args.file, fresh_ttl=args.fresh_ttl)


async def serve(settings: Settings) -> None:
    """The HTTP server and every adapter whose token is set, until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with open_services(settings) as services:
        await _warn_about_missing_parts(services)
        telegram = TelegramFront(services, settings) if settings.telegram_bot_token else None
        discord_front = DiscordFront(services, settings) if settings.discord_bot_token else None
        runner = web.AppRunner(
            build_app(services, front_routes=telegram.http_routes() if telegram else ()),
            access_log=None,
            shutdown_timeout=RESPONSES_FINISH_SECONDS,
        )
        await runner.setup()
        # In the background: a chat platform that is down must not keep the rest from serving.
        fronts: list[asyncio.Task[None]] = []
        try:
            if services.webhooks is not None:
                services.webhooks.start()  # in the background: delivers while Redis answers
            await _listen(runner, settings)
            if telegram is not None:
                fronts.append(asyncio.create_task(telegram.start_when_reachable()))
            if discord_front is not None:
                fronts.append(asyncio.create_task(discord_front.run()))
            host, port = runner.addresses[0][:2]
            log.info("service.started", http=f"http://{host}:{port}", **_adapter_report(settings))
            await stop.wait()
        finally:
            await _stop_gracefully(services, runner, telegram, discord_front, fronts)


async def _stop_gracefully(
    services: Services,
    runner: web.AppRunner,
    telegram: TelegramFront | None,
    discord_front: DiscordFront | None,
    fronts: list[asyncio.Task[None]],
) -> None:
    """Take no new work, let running turns finish (SHUTDOWN_GRACE_SECONDS), then close.

    The listening socket closes first, so a load balancer sends new requests to another
    replica; requests already here are served (a new turn among them is refused with 503).
    """
    grace = services.settings.shutdown_grace_seconds
    log.info("service.stopping", running_turns=services.chat.running_turns, grace_seconds=grace)
    for site in list(runner.sites):
        await site.stop()
    if telegram is not None:
        await telegram.stop_taking_updates()
    interrupted = await services.chat.stop_turns(grace)
    if discord_front is not None:
        await discord_front.stop()
    for task in fronts:
        task.cancel()
    await asyncio.gather(*fronts, return_exceptions=True)
    if telegram is not None:
        await telegram.stop()
    if services.webhooks is not None:
        # After the turns, whose events are in the stream: what is undelivered waits there.
        await services.webhooks.stop()
    await runner.cleanup()
    log.info("service.stopped", interrupted_turns=interrupted)


async def chat(settings: Settings, user_name: str) -> None:
    async with open_services(settings, may_join_embedded=True) as services:
        locale = normalize_locale(os.environ.get("LC_ALL") or os.environ.get("LANG"))
        await Terminal(services.commands, user_name, locale, sys.stdin, sys.stdout).run()


async def _listen(runner: web.AppRunner, settings: Settings) -> None:
    try:
        await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    except OSError as error:
        raise ConfigError(
            f"HTTP_HOST/HTTP_PORT: cannot listen on {settings.http_host}:{settings.http_port} "
            f"({error.strerror or error})"
        ) from None


async def _warn_about_missing_parts(services: Services) -> None:
    """Start anyway, but say at once what will not work yet."""
    if not services.chat.model.is_configured:
        log.warning("model.not_configured", hint="set OPENROUTER_API_KEY to get answers")
    try:
        await services.store.ping()
    except StoreError as error:
        log.warning("redis.unavailable", reason=str(error), hint="serving 503 until it answers")


def _adapter_report(settings: Settings) -> dict[str, object]:
    """Which fronts run, and why the others don't, for the startup line."""
    running, skipped = ["http"], {}
    if settings.telegram_bot_token is None:
        skipped["telegram"] = "TELEGRAM_BOT_TOKEN is not set"
    else:
        running.append("telegram (webhook)" if settings.telegram_webhook_url else "telegram")
    if settings.discord_bot_token is None:
        skipped["discord"] = "DISCORD_BOT_TOKEN is not set"
    else:
        shards = settings.discord_shard_count
        running.append(f"discord ({shards} shards)" if shards else "discord")
    return {"adapters": running, "skipped": skipped}


def _require_auth_off_loopback(settings: Settings) -> None:
    if not settings.http_host_is_loopback and not (settings.api_token or settings.jwt_secret):
        raise ConfigError(
            f"HTTP_HOST: {settings.http_host} is not a loopback address; set API_TOKEN or "
            "JWT_SECRET before serving the API beyond this machine"
        )


def _configure_logging(settings: Settings, *, quiet: bool) -> None:
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else ""
    redis_url_password = urlsplit(redis_url).password
    secrets = [redis_url_password or ""] + [
        secret.get_secret_value()
        for secret in (
            settings.redis_password,
            settings.openrouter_api_key,
            settings.telegram_bot_token,
            settings.telegram_webhook_secret,
            settings.discord_bot_token,
            settings.api_token,
            settings.jwt_secret,
            settings.webhook_secret,
        )
        if secret is not None
    ]
    # Receiver URLs may carry credentials (user:password@, ?token=); they are logged redacted,
    # and these parts never appear even by accident.
    for url in settings.webhook_urls:
        secrets += [urlsplit(url).password or "", urlsplit(url).query]
    # The terminal is for the conversation: only warnings and errors interrupt it.
    level = "WARNING" if quiet and settings.log_level in ("DEBUG", "INFO") else settings.log_level
    configure_logging(level=level, log_format=settings.log_format, secrets=secrets)


def _user_name(value: str) -> str:
    if not USER_NAME_PATTERN.match(value):
        raise argparse.ArgumentTypeError("1 to 64 letters, digits, '.', '-', '_' or '@'")
    return value


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="chatbridge", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the service (the default)")
    chat_parser = commands.add_parser("chat", help="talk from this terminal")
    chat_parser.add_argument(
        "--user", required=True, type=_user_name, help="your name in this terminal"
    )
    backup_parser = commands.add_parser(
        "backup", help="write every session and message to FILE as JSON lines"
    )
    backup_parser.add_argument("file", metavar="FILE", help="where to write ('-': stdout)")
    restore_parser = commands.add_parser(
        "restore", help="load a backup (restoring it twice changes nothing)"
    )
    restore_parser.add_argument("file", metavar="FILE", help="the backup ('-': stdin)")
    restore_parser.add_argument(
        "--fresh-ttl",
        action="store_true",
        help="restored sessions live SESSION_TTL from now, not until their recorded expiry",
    )
    commands.add_parser(
        "migrate-keys",
        help="move user keys of the first layout to today's names (every start does it too)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
