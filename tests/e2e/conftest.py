"""Fixtures for end-to-end tests: the real entry points (`python -m bots ...`) as child processes.

Every child gets a controlled environment (no chatbridge variable of the developer's leaks in)
and runs in a temp directory (so no developer `.env` is read). Children are always stopped and
awaited at teardown, so no process, pipe or transport outlives its test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.e2e.http_app import ServeApi, serving_api
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.fakes.telegram_server import FakeTelegram
from tests.redis_process import RedisProcess

ROOT = Path(__file__).resolve().parents[2]
CHATBRIDGE_PREFIXES = ("REDIS_", "OPENROUTER_", "TELEGRAM_", "DISCORD_", "HTTP_", "LOG_")
CHATBRIDGE_PREFIXES += ("SESSION_", "MAX_", "RATE_LIMIT_", "WEBHOOK_", "REDIS_COMMANDER_")
CHATBRIDGE_NAMES = {"API_TOKEN", "JWT_SECRET", "DEFAULT_MODEL", "FALLBACK_MODELS", "SYSTEM_PROMPT"}
CHATBRIDGE_NAMES |= {"DAILY_TOKEN_BUDGET", "TURN_TIMEOUT"}
# The terminal picks its language from these; tests choose it explicitly.
LOCALE_NAMES = {"LANG", "LC_ALL", "LC_MESSAGES", "LANGUAGE"}
STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
RUN_TIMEOUT = 30.0
POLL_INTERVAL = 0.05


def child_env(**variables: str) -> dict[str, str]:
    """os.environ without any chatbridge or locale variable, plus `variables`.

    pydantic-settings matches names case-insensitively, so lower-case leftovers go too.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not _is_chatbridge_variable(name.upper()) and name.upper() not in LOCALE_NAMES
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env["LANG"] = "en_US.UTF-8"
    env.update(variables)
    return env


def _is_chatbridge_variable(name: str) -> bool:
    return name.startswith(CHATBRIDGE_PREFIXES) or name in CHATBRIDGE_NAMES


def service_env(**variables: str) -> dict[str, str]:
    """A child environment for `python -m bots`: any free port, JSON logs."""
    return child_env(HTTP_PORT="0", LOG_FORMAT="json", **variables)


@dataclass
class Completed:
    """A child that ran to its end."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


@dataclass
class Service:
    """A running `python -m bots`: its stderr is read line by line as it arrives."""

    process: asyncio.subprocess.Process
    cwd: Path
    stderr_lines: list[str] = field(default_factory=list)
    stdout_chunks: list[str] = field(default_factory=list)
    started: dict[str, Any] = field(default_factory=dict)
    _readers: list[asyncio.Task[None]] = field(default_factory=list)
    _new_line: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        assert self.process.stderr is not None
        assert self.process.stdout is not None
        self._readers = [
            asyncio.create_task(self._read_stderr(self.process.stderr)),
            asyncio.create_task(self._read_stdout(self.process.stdout)),
        ]

    @property
    def http_url(self) -> str:
        return str(self.started["http"])

    @property
    def local_url(self) -> str:
        """The HTTP address to call: a wildcard bind is reached through the loopback."""
        return self.http_url.replace("://0.0.0.0:", "://127.0.0.1:")

    @property
    def output(self) -> str:
        stdout = "".join(self.stdout_chunks)
        return f"--- stdout ---\n{stdout}\n--- stderr ---\n" + "".join(self.stderr_lines)

    def events(self, name: str) -> list[dict[str, Any]]:
        """Every JSON log line whose event is `name`."""
        found = []
        for line in self.stderr_lines:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("event") == name:
                    found.append(record)
        return found

    async def wait_for_event(self, name: str, within: float = STARTUP_TIMEOUT) -> dict[str, Any]:
        """The first log line with that event; fails with the output so far after `within` s."""
        deadline = asyncio.get_running_loop().time() + within
        while not (found := self.events(name)):
            if self.process.returncode is not None and self._readers[0].done():
                pytest.fail(f"exited with {self.process.returncode} before {name}:\n{self.output}")
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                pytest.fail(f"no {name} within {within:g} s:\n{self.output}")
            self._new_line.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_line.wait(), min(remaining, 0.5))
        return found[0]

    async def stop(self, signum: int = signal.SIGTERM, within: float = STOP_TIMEOUT) -> int:
        """Send `signum` and wait for the exit code (SIGKILL and fail if it takes too long)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)
        try:
            await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            await self.kill()
            pytest.fail(f"still running {within:g} s after signal {signum}:\n{self.output}")
        await self._drain()
        return self.process.returncode

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.process.wait()
        await self._drain()

    async def _drain(self) -> None:
        await asyncio.gather(*self._readers)

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.stderr_lines.append(line.decode(errors="replace"))
            self._new_line.set()
        self._new_line.set()

    async def _read_stdout(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(4096):
            self.stdout_chunks.append(chunk.decode(errors="replace"))


StartService = Callable[..., Awaitable[Service]]
RunCli = Callable[..., Awaitable[Completed]]


@pytest.fixture
async def start_service(tmp_path: Path) -> AsyncIterator[StartService]:
    """Start `python -m bots` and wait for `service.started`; stopped at teardown."""
    services: list[Service] = []

    async def start(
        env: Mapping[str, str], *, cwd: Path | None = None, wait_started: bool = True
    ) -> Service:
        workdir = cwd or tmp_path
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bots",
            cwd=workdir,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        service = Service(process, workdir)
        services.append(service)
        if wait_started:
            service.started = await service.wait_for_event("service.started")
        return service

    yield start
    for service in services:
        # SIGTERM first: a SIGKILLed service would leave its embedded redis-server behind.
        if service.process.returncode is None:
            # On failure it is killed; the test has already reported what went wrong.
            with contextlib.suppress(pytest.fail.Exception):
                await service.stop(signal.SIGTERM)
        else:
            await service._drain()


@pytest.fixture
def run_cli(tmp_path: Path) -> RunCli:
    """Run `python -m bots ARGS...` to its end with `stdin` as input; killed after `within` s."""

    async def run(
        *args: str,
        env: Mapping[str, str],
        stdin: str = "",
        cwd: Path | None = None,
        within: float = RUN_TIMEOUT,
    ) -> Completed:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bots",
            *args,
            cwd=cwd or tmp_path,
            env=dict(env),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        communicating = asyncio.ensure_future(process.communicate(stdin.encode()))
        try:
            stdout, stderr = await asyncio.wait_for(asyncio.shield(communicating), within)
        except TimeoutError:
            process.kill()
            stdout, stderr = await communicating
            pytest.fail(
                f"`bots {' '.join(args)}` still running after {within:g} s:\n"
                f"--- stdout ---\n{stdout.decode(errors='replace')}\n"
                f"--- stderr ---\n{stderr.decode(errors='replace')}"
            )
        assert process.returncode is not None
        return Completed(
            process.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace")
        )

    return run


async def poll_status(
    client: httpx.AsyncClient, url: str, status: int, within: float = 10.0
) -> httpx.Response:
    """GET `url` until it answers `status`; fail with the last answer after `within` s."""
    deadline = asyncio.get_running_loop().time() + within
    last: str = "no answer"
    while True:
        try:
            response = await client.get(url)
        except httpx.HTTPError as error:
            last = repr(error)
        else:
            if response.status_code == status:
                return response
            last = f"{response.status_code} {response.text}"
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{url} did not answer {status} within {within:g} s; last: {last}")
        await asyncio.sleep(POLL_INTERVAL)


@pytest.fixture
def start_telegram_service(
    redis_server: RedisProcess,
    redis_client: aioredis.Redis,  # an empty database for this test
    fake_telegram: FakeTelegram,
    fake_openrouter: FakeOpenRouter,
    start_service: StartService,  # last, so the service stops before the fakes close
) -> Callable[..., Awaitable[Service]]:
    """`python -m bots` on the fake Bot API and fake OpenRouter; keywords are extra variables."""

    async def start(**variables: str) -> Service:
        env = {
            "TELEGRAM_BOT_TOKEN": fake_telegram.token,
            "TELEGRAM_API_BASE_URL": fake_telegram.base_url,
            "REDIS_URL": redis_server.url,
            "OPENROUTER_API_KEY": fake_openrouter.api_key,
            "OPENROUTER_BASE_URL": fake_openrouter.base_url,
        }
        service = await start_service(service_env(**(env | variables)))
        # The front starts in the background once the Bot API answers; wait for it.
        await service.wait_for_event("telegram.started")
        return service

    return start


@pytest.fixture
def start_discord_service(
    redis_server: RedisProcess,
    redis_client: aioredis.Redis,  # an empty database for this test
    fake_discord: FakeDiscord,
    fake_openrouter: FakeOpenRouter,
    start_service: StartService,  # last, so the service stops before the fakes close
) -> Callable[..., Awaitable[Service]]:
    """`python -m bots` on the fake Discord and fake OpenRouter; keywords are extra variables.

    Add the fake's guilds first: the bot learns them when it connects.
    """

    async def start(**variables: str) -> Service:
        env = {
            "DISCORD_BOT_TOKEN": fake_discord.token,
            "DISCORD_API_BASE_URL": fake_discord.api_base_url,
            "DISCORD_GATEWAY_URL": fake_discord.gateway_url,
            "REDIS_URL": redis_server.url,
            "OPENROUTER_API_KEY": fake_openrouter.api_key,
            "OPENROUTER_BASE_URL": fake_openrouter.base_url,
        }
        service = await start_service(service_env(**(env | variables)))
        # The front connects in the background; commands are synced before it is ready.
        await service.wait_for_event("discord.ready")
        return service

    return start


@pytest.fixture
async def serve_api(
    redis_server: RedisProcess,
    redis_client: aioredis.Redis,  # flushes the test Redis before the test
    fake_openrouter: FakeOpenRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[ServeApi]:
    """Serve the API in-process with these settings overrides (on the test Redis unless
    `redis_url=`)."""
    async with serving_api(redis_server.url, fake_openrouter, monkeypatch) as serve:
        yield serve
