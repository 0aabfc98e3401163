"""`python -m bots` as a child process: health, Redis outages, signals, configuration, secrets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from tests.e2e.conftest import RunCli, StartService, poll_status, service_env
from tests.redis_process import RedisProcess, free_port

EXIT_CONFIG_ERROR = 2
PROBE_KEY = "e2e:aof-probe"
WILDCARD = "0.0.0.0"  # noqa: S104  (the tests bind it on purpose, with port 0)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


@pytest.fixture
def short_cwd() -> Iterator[Path]:
    """A working directory short enough for the embedded Redis's unix socket path."""
    directory = Path(tempfile.mkdtemp(prefix="cb-e2e-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _is_running(pid: int) -> bool:
    """True while `pid` is a live process (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


async def test_health_reports_redis_up_with_latency(
    start_service: StartService, redis_server: RedisProcess, http: httpx.AsyncClient
) -> None:
    service = await start_service(service_env(REDIS_URL=redis_server.url))

    response = await http.get(f"{service.http_url}/health")

    assert response.status_code == 200, service.output
    body = response.json()
    assert body["status"] == "ok"
    assert body["redis"]["status"] == "up"
    latency = body["redis"]["latencyMs"]
    assert isinstance(latency, int | float)
    assert not isinstance(latency, bool)
    assert latency >= 0


async def test_startup_line_lists_adapters_and_why_telegram_and_discord_are_skipped(
    start_service: StartService, redis_server: RedisProcess
) -> None:
    service = await start_service(service_env(REDIS_URL=redis_server.url))

    assert service.started["http"].startswith("http://127.0.0.1:")
    assert "http" in service.started["adapters"]
    skipped = service.started["skipped"]
    assert "TELEGRAM_BOT_TOKEN" in skipped["telegram"]
    assert "DISCORD_BOT_TOKEN" in skipped["discord"]


async def test_health_is_503_while_redis_is_down_and_200_once_it_is_back(
    start_service: StartService, own_redis: RedisProcess, http: httpx.AsyncClient
) -> None:
    service = await start_service(service_env(REDIS_URL=own_redis.url))
    url = f"{service.http_url}/health"
    await poll_status(http, url, 200)

    own_redis.kill()
    down = await poll_status(http, url, 503, within=10.0)

    assert down.json()["redis"]["status"] == "down"
    assert service.process.returncode is None, service.output

    own_redis.start()  # same port
    up = await poll_status(http, url, 200, within=10.0)

    assert up.json()["redis"]["status"] == "up"
    assert service.process.returncode is None, service.output


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_stop_signal_exits_with_0_and_logs_service_stopped(
    start_service: StartService, redis_server: RedisProcess, signum: int
) -> None:
    service = await start_service(service_env(REDIS_URL=redis_server.url))

    returncode = await service.stop(signum)

    assert returncode == 0, service.output
    assert service.events("service.stopped"), service.output
    assert "Traceback" not in service.output


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SESSION_TTL", "abc"),
        ("MAX_SESSIONS_PER_USER", "0"),
        ("SESSION_LIMIT_POLICY", "sometimes"),
        ("REDIS_PORT", "70000"),
        ("LOG_FORMAT", "xml"),
        ("OPENROUTER_BASE_URL", "ftp://x"),
    ],
)
async def test_a_bad_setting_exits_with_2_and_one_line_naming_the_variable(
    run_cli: RunCli, redis_server: RedisProcess, variable: str, value: str
) -> None:
    env = service_env(REDIS_URL=redis_server.url)
    env[variable] = value

    result = await run_cli(env=env)

    assert result.returncode == EXIT_CONFIG_ERROR, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.output
    assert variable in lines[0]
    assert "Traceback" not in result.output


async def test_a_personas_file_with_a_bad_line_exits_with_2_naming_the_file_and_line(
    run_cli: RunCli, redis_server: RedisProcess, tmp_path: Path
) -> None:
    personas = tmp_path / "personas.toml"
    personas.write_text('[pirate]\ndescription = "Arr"\nprompt = "You are a pirate.\n')

    result = await run_cli(env=service_env(REDIS_URL=redis_server.url, PERSONAS_FILE=str(personas)))

    assert result.returncode == EXIT_CONFIG_ERROR, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"chatbridge: PERSONAS_FILE: {personas}: ")
    assert "line 3" in lines[0]
    assert "Traceback" not in result.output


async def test_serving_beyond_loopback_without_auth_exits_with_2_naming_http_host(
    run_cli: RunCli, redis_server: RedisProcess
) -> None:
    result = await run_cli(env=service_env(REDIS_URL=redis_server.url, HTTP_HOST=WILDCARD))

    assert result.returncode == EXIT_CONFIG_ERROR, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.output
    assert "HTTP_HOST" in lines[0]
    assert "Traceback" not in result.output


async def test_serving_beyond_loopback_starts_when_api_token_is_set(
    start_service: StartService, redis_server: RedisProcess, http: httpx.AsyncClient
) -> None:
    env = service_env(
        REDIS_URL=redis_server.url, HTTP_HOST=WILDCARD, API_TOKEN="e2e-token-for-wildcard-bind"
    )
    service = await start_service(env)

    assert service.http_url.startswith("http://0.0.0.0:")
    response = await http.get(f"{service.local_url}/health")
    assert response.status_code == 200, service.output


async def test_a_dotenv_file_in_the_working_directory_is_read(
    run_cli: RunCli, redis_server: RedisProcess, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("MAX_SESSIONS_PER_USER=0\n")

    result = await run_cli(env=service_env(REDIS_URL=redis_server.url), cwd=tmp_path)

    assert result.returncode == EXIT_CONFIG_ERROR, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.output
    assert "MAX_SESSIONS_PER_USER" in lines[0]


async def test_without_a_configured_redis_the_service_embeds_one_and_stops_it(
    start_service: StartService, short_cwd: Path, http: httpx.AsyncClient
) -> None:
    service = await start_service(service_env(), cwd=short_cwd)
    data = short_cwd / "data"
    assert service.events("redis.embedded"), service.output
    response = await http.get(f"{service.http_url}/health")
    assert response.status_code == 200, service.output

    client = aioredis.Redis(unix_socket_path=str(data / "redis.sock"), decode_responses=True)
    try:
        pid = int((await client.info("server"))["process_id"])
        await client.set(PROBE_KEY, "kept")
    finally:
        await client.aclose()
    try:
        returncode = await service.stop(signal.SIGTERM)

        assert returncode == 0, service.output
        aof_dir = data / "appendonlydir"
        assert aof_dir.is_dir() or (data / "appendonly.aof").is_file()
        aof_files = list(aof_dir.iterdir()) if aof_dir.is_dir() else [data / "appendonly.aof"]
        assert any(PROBE_KEY.encode() in path.read_bytes() for path in aof_files)
        assert not _is_running(pid), f"embedded redis-server {pid} outlived the service"
    finally:
        if _is_running(pid):
            os.kill(pid, signal.SIGKILL)


async def test_no_secret_reaches_stdout_or_stderr(
    start_service: StartService, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    password = "e2e-redis-PASSWORD-5b1c"
    secrets = {
        "OPENROUTER_API_KEY": "sk-or-v1-e2e-SECRET-openrouter-9d2f",
        "TELEGRAM_BOT_TOKEN": "123456:e2e-SECRET-telegram-4e7a",
        "DISCORD_BOT_TOKEN": "e2e-SECRET-discord-token-8c3b",
        "API_TOKEN": "e2e-SECRET-api-token-1f6d",
        "JWT_SECRET": "e2e-SECRET-jwt-secret-7a0e-0123456789ab",
    }
    own_redis = RedisProcess(tmp_path, "--requirepass", password)
    own_redis.start()
    url = f"redis://:{password}@127.0.0.1:{own_redis.port}/0"
    # A Bot API that refuses connections: the Telegram front's retries must not leak either.
    unreachable_bot_api = f"http://127.0.0.1:{free_port()}/bot"
    env = service_env(REDIS_URL=url, TELEGRAM_API_BASE_URL=unreachable_bot_api, **secrets)
    service = await start_service(env)
    url_health = f"{service.http_url}/health"
    answers = [await poll_status(http, url_health, 200)]
    own_redis.kill()  # the error paths (503, failed reconnects) must redact too
    answers.append(await poll_status(http, url_health, 503))
    assert await service.stop(signal.SIGTERM) == 0, service.output
    own_redis.stop()

    output = service.output + "".join(answer.text for answer in answers)
    for name, value in [*secrets.items(), ("REDIS_URL password", password), ("REDIS_URL", url)]:
        assert value not in output, f"{name} leaked:\n{output}"


async def test_an_unreachable_configured_redis_never_falls_back_to_embedded(
    start_service: StartService, short_cwd: Path, http: httpx.AsyncClient
) -> None:
    closed_port = free_port()
    env = service_env(REDIS_URL=f"redis://127.0.0.1:{closed_port}/0")

    service = await start_service(env, cwd=short_cwd)
    response = await http.get(f"{service.http_url}/health")

    assert response.status_code == 503, service.output
    assert response.json()["redis"]["status"] == "down"
    assert not service.events("redis.embedded"), service.output
    assert not (short_cwd / "data").exists()


async def test_every_log_line_is_json(
    start_service: StartService, redis_server: RedisProcess
) -> None:
    service = await start_service(service_env(REDIS_URL=redis_server.url))
    assert await service.stop(signal.SIGTERM) == 0

    for line in service.stderr_lines:
        assert isinstance(json.loads(line), dict), line


async def test_concurrent_health_checks_during_an_outage_all_answer_503(
    start_service: StartService, own_redis: RedisProcess, http: httpx.AsyncClient
) -> None:
    """Several health checks at once during an outage all answer 503, none hangs."""
    service = await start_service(service_env(REDIS_URL=own_redis.url))
    own_redis.kill()
    url = f"{service.http_url}/health"

    answers = await asyncio.gather(*(http.get(url) for _ in range(5)))

    assert [answer.status_code for answer in answers] == [503] * 5, service.output


async def test_a_malformed_redis_url_exits_with_2_naming_it(run_cli: RunCli) -> None:
    result = await run_cli(env=service_env(REDIS_URL="localhost:6379"))

    assert result.returncode == EXIT_CONFIG_ERROR, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.output
    assert "REDIS_URL" in lines[0]


async def test_a_busy_http_port_is_reported_in_one_line_without_a_traceback(
    run_cli: RunCli, redis_server: RedisProcess
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = service_env(REDIS_URL=redis_server.url)
        env["HTTP_PORT"] = str(port)

        result = await run_cli(env=env)

    assert result.returncode != 0, result.output
    assert "Traceback" not in result.output
    assert any("HTTP_PORT" in line for line in result.stderr.splitlines()), result.output


async def test_the_startup_log_says_which_redis_without_a_password_in_the_url(
    start_service: StartService, redis_server: RedisProcess
) -> None:
    service = await start_service(service_env(REDIS_URL=redis_server.url))

    (configured,) = service.events("redis.configured")
    assert configured["redis"] == redis_server.url, service.output


async def test_the_terminal_joins_the_embedded_redis_of_a_running_service(
    start_service: StartService, run_cli: RunCli, short_cwd: Path
) -> None:
    service = await start_service(service_env(), cwd=short_cwd)
    env = service_env(LANG="en_US.UTF-8")

    first = await run_cli("chat", "--user", "ana", env=env, stdin="/new Shared\n", cwd=short_cwd)
    second = await run_cli("chat", "--user", "ana", env=env, stdin="/sessions\n\n", cwd=short_cwd)

    assert first.returncode == 0, first.output
    assert "1. Shared" in second.stdout, second.output
    assert await service.stop(signal.SIGTERM) == 0, service.output
