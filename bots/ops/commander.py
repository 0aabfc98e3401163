"""`make commander`: Redis Commander (from npm) on the service's Redis, behind its login.

    python -m bots.ops.commander                  # install once (npm ci), then serve on 127.0.0.1
    python -m bots.ops.commander --install-only   # just the install step (CI, tests)

Which Redis: the configured one, read as the service reads it (REDIS_URL, the REDIS_HOST group,
a Cluster or a Sentinel set); else the embedded Redis of a `make run` in this directory (its
unix socket); else an embedded Redis on the same ./data/, started for as long as Redis Commander
runs (as `chatbridge backup` does; `make run` cannot start in this directory meanwhile).

The install step is bots/ops/commander_install.py; what Redis Commander is given (through its
environment, never its command line, which every user sees in `ps`) is bots/ops/commander_config.py.
Its output is forwarded with both passwords blanked, since ioredis prints the arguments of a
failed AUTH. Redis Commander 0.9's "HTTP auth" is a login form: POST /signin with the user and
password returns a bearer token, and every route but the page and its static files answers 401
without one. SIGINT or SIGTERM stops it (SIGTERM, SIGKILL after a few seconds), then the
embedded Redis if this process started it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
import socket
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TextIO

from redis.connection import parse_url
from redis.exceptions import AuthenticationError, RedisError

from bots.ops.commander_config import (
    LISTEN_ADDRESS,
    CommanderSettings,
    RedisTarget,
    child_environment,
    configured_target,
    load_commander_settings,
    socket_target,
)
from bots.ops.commander_install import CommanderError, install, pinned_version, require_node
from bots.runtime import EMBEDDED_DATA_DIR
from core.errors import ConfigError
from core.observability.logs import REDACTED, configure_logging
from core.settings import Settings, load_settings
from core.storage.connection import close_redis, redis_from_settings
from core.storage.embedded import EmbeddedRedis, project_redis_conf, socket_of_running_service

# What Redis Commander prints once its HTTP server listens.
READY_MARK = "listening on "
STARTUP_TIMEOUT = 30.0
# The launcher's own look at Redis, for a clear warning up front (a Cluster may retry for long).
PROBE_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0
GENERATED_PASSWORD_BYTES = 18
OUTPUT_LINE_LIMIT = 1 << 20
AUTH_MARKS = ("NOAUTH", "WRONGPASS", "HELLO must be called", "invalid password")
EXIT_FAILURE = 1
EXIT_CONFIG_ERROR = 2
EXIT_INTERRUPTED = 130


def _check_port_free(port: int) -> None:
    with socket.socket() as probe:
        # As Node does, so a port in TIME_WAIT counts as free and only a listener as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LISTEN_ADDRESS, port))
        except OSError as error:
            raise ConfigError(
                f"REDIS_COMMANDER_PORT: {LISTEN_ADDRESS}:{port} is not free "
                f"({error.strerror}); choose another port"
            ) from None


class OutputForwarder:
    """Copies Redis Commander's output to our stderr, secrets blanked; notices when it listens."""

    def __init__(self, stream: asyncio.StreamReader, secrets: Sequence[str], out: TextIO) -> None:
        self._stream = stream
        self._secrets = [secret for secret in secrets if secret]
        self._out = out
        self.listening = asyncio.Event()
        self.task = asyncio.create_task(self._forward(), name="redis-commander-output")

    async def _forward(self) -> None:
        while True:
            try:
                raw = await self._stream.readline()
            except ValueError:  # a line over OUTPUT_LINE_LIMIT: drop it rather than stop
                continue
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\n")
            for secret in self._secrets:
                line = line.replace(secret, REDACTED)
            if READY_MARK in line:
                self.listening.set()
            print(f"redis-commander: {line}", file=self._out, flush=True)


async def serve(settings: Settings, commander: CommanderSettings) -> int:
    """Run Redis Commander until SIGINT/SIGTERM (0) or until it exits by itself (1)."""
    node = require_node()
    entry_point = await asyncio.to_thread(install)
    _check_port_free(commander.port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    generated = commander.password is None
    password = (
        secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
        if commander.password is None
        else commander.password.get_secret_value()
    )
    async with AsyncExitStack() as stack:
        target = await _redis_target(settings, stack)
        await _warn_if_unreachable(settings, target)
        environment = child_environment(target, commander.port, commander.user, password)
        process = await _spawn(node, entry_point, environment)
        if process.stdout is None:  # never: stdout is a pipe; this tells mypy so
            raise RuntimeError("no pipe for Redis Commander's output")
        output = OutputForwarder(process.stdout, [password, target.password or ""], sys.stderr)
        # Unwound in reverse: stop node, then read its output to the end, then the Redis.
        stack.push_async_callback(asyncio.wait, [output.task])
        stack.push_async_callback(_stop, process)
        if not await _started(process, output, stopping):
            return 0
        _print_banner(target, commander, password, generated=generated)
        return await _until_stopped(process, stopping)


async def _spawn(
    node: str, entry_point: Path, environment: dict[str, str]
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        node,
        str(entry_point),
        env=environment,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        limit=OUTPUT_LINE_LIMIT,
        # Its own session: a Ctrl-C reaches us only, and we stop it, then the embedded Redis.
        start_new_session=True,
    )


async def _until_stopped(process: asyncio.subprocess.Process, stopping: asyncio.Event) -> int:
    """0 once asked to stop; 1 if Redis Commander exits by itself first."""
    exited = asyncio.ensure_future(process.wait())
    stop_requested = asyncio.ensure_future(stopping.wait())
    await asyncio.wait([exited, stop_requested], return_when=asyncio.FIRST_COMPLETED)
    stop_requested.cancel()
    if not exited.done():
        return 0
    print(f"chatbridge: Redis Commander exited with code {exited.result()}", file=sys.stderr)
    return EXIT_FAILURE


async def _redis_target(settings: Settings, stack: AsyncExitStack) -> RedisTarget:
    if settings.redis_is_configured:
        return configured_target(settings)
    running = socket_of_running_service(EMBEDDED_DATA_DIR)
    if running is not None:
        return socket_target(running)
    embedded = EmbeddedRedis(data_dir=EMBEDDED_DATA_DIR, config_file=project_redis_conf())
    await stack.enter_async_context(embedded)
    print(
        f"chatbridge: no service runs in this directory, so the embedded Redis "
        f"({EMBEDDED_DATA_DIR}/) was started for as long as Redis Commander runs; "
        "stop it before `make run` here",
        file=sys.stderr,
    )
    return socket_target(embedded.socket_path)


async def _warn_if_unreachable(settings: Settings, target: RedisTarget) -> None:
    """A clear line up front (wrong password, nothing listening); Redis Commander keeps retrying."""
    socket_path = target.connection.get("path")
    url = f"unix://{socket_path}" if not settings.redis_is_configured else None
    client = redis_from_settings(settings, url=url)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await client.ping()
    except TimeoutError:
        print(
            f"chatbridge: warning: {target.description} did not answer within "
            f"{PROBE_TIMEOUT:g} s; Redis Commander keeps trying",
            file=sys.stderr,
        )
    except RedisError as error:
        print(
            f"chatbridge: warning: {target.description} does not answer "
            f"({_reason(error, target)}); Redis Commander keeps trying",
            file=sys.stderr,
        )
    finally:
        await close_redis(client)


def _reason(error: RedisError, target: RedisTarget) -> str:
    text = str(error) or type(error).__name__
    # A server with requirepass answers the client's HELLO with a long sentence about AUTH.
    if isinstance(error, AuthenticationError) or any(mark in text for mark in AUTH_MARKS):
        return "it refuses the password: check REDIS_PASSWORD, or the one in REDIS_URL"
    return text.replace(target.password, REDACTED) if target.password else text


async def _started(
    process: asyncio.subprocess.Process, output: OutputForwarder, stopping: asyncio.Event
) -> bool:
    """True once it listens; False when asked to stop first; CommanderError if it died."""
    waits = {
        asyncio.ensure_future(output.listening.wait()),
        asyncio.ensure_future(process.wait()),
        asyncio.ensure_future(stopping.wait()),
    }
    _, pending = await asyncio.wait(
        waits, timeout=STARTUP_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
    )
    for waiting in pending:
        waiting.cancel()
    if output.listening.is_set():
        return True
    if stopping.is_set():
        return False
    if process.returncode is not None:
        await asyncio.wait([output.task])  # its last lines say why
        raise CommanderError(f"Redis Commander exited with code {process.returncode} at start")
    raise CommanderError(f"Redis Commander did not listen within {STARTUP_TIMEOUT:g} s")


def _print_banner(
    target: RedisTarget, commander: CommanderSettings, password: str, *, generated: bool
) -> None:
    shown = (
        f"{password}   (generated for this run; set REDIS_COMMANDER_PASSWORD to choose one)"
        if generated
        else "the one in REDIS_COMMANDER_PASSWORD"
    )
    print(
        f"Redis Commander {pinned_version()} on {target.description}\n"
        f"  open      http://{LISTEN_ADDRESS}:{commander.port}/\n"
        f"  user      {commander.user}\n"
        f"  password  {shown}\n"
        "Ctrl-C stops it.",
        flush=True,
    )


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, SIGKILL after STOP_TIMEOUT; always awaited, so no node process outlives us."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        if args.install_only:
            require_node()
            print(f"chatbridge: Redis Commander installed: {install()}", file=sys.stderr)
            return 0
        settings = load_settings()
        commander = load_commander_settings()
        configure_logging(
            level="WARNING", log_format=settings.log_format, secrets=_secrets(settings)
        )
        return asyncio.run(serve(settings, commander))
    except ConfigError as error:
        print(f"chatbridge: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except CommanderError as error:
        print(f"chatbridge: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _secrets(settings: Settings) -> list[str]:
    password = settings.redis_password.get_secret_value() if settings.redis_password else ""
    url = settings.redis_url.get_secret_value() if settings.redis_url else ""
    url_password = parse_url(url.replace("+cluster://", "://", 1)).get("password") if url else ""
    return [secret for secret in (password, str(url_password or "")) if secret]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bots.ops.commander",
        description="Redis Commander on the service's Redis (see README, Monitoring)",
    )
    parser.add_argument(
        "--install-only", action="store_true", help="install it (npm ci) if needed, then exit"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
