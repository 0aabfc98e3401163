"""`make commander` end to end: `python -m bots.ops.commander` as a child process, a real Redis
Commander (installed once per run from tools/commander's lock, as `make commander` does) and a
real redis-server with a password, or the embedded Redis on its unix socket.

Redis Commander's login is a form: POST /signin answers a bearer token for the right user and
password; its API answers 401 without a valid token.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from bots.ops.commander_install import install
from core.storage.connection import close_redis, redis_from_settings
from core.storage.embedded import EmbeddedRedis, project_redis_conf, socket_of_running_service
from tests.e2e.conftest import Service, child_env
from tests.redis_process import RedisProcess, free_port
from tests.redis_topologies import SENTINEL_MASTER as MASTER
from tests.redis_topologies import LocalCluster, SentinelSet, topology_settings

REDIS_PASSWORD = "redis-pw-4c1e9b7f0a"
WEB_PASSWORD = "web-pw-93d0b2e5aa"
KEY, VALUE = "chatbridge:probe", "seen through Redis Commander"
STARTUP_TIMEOUT = 30.0
BANNER_END = "Ctrl-C stops it."

StartCommander = Callable[..., Awaitable[Service]]


@pytest.fixture(scope="session")
def redis_commander_installed() -> Path:
    """`make commander`'s own install step (npm ci), once per run; never skipped."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("these tests need Node.js and npm: apt-get install nodejs npm")
    return install()


@pytest.fixture
async def start_commander(
    redis_commander_installed: Path, tmp_path: Path
) -> AsyncIterator[StartCommander]:
    """Start `python -m bots.ops.commander` and wait for its banner; stopped at teardown."""
    started: list[Service] = []

    async def start(env: Mapping[str, str], *, cwd: Path | None = None) -> Service:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bots.ops.commander",
            cwd=cwd or tmp_path,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        commander = Service(process, cwd or tmp_path)
        started.append(commander)
        await _wait_for_banner(commander)
        return commander

    yield start
    for commander in started:
        if commander.process.returncode is None:
            # On failure it is killed; the test has already reported what went wrong.
            with contextlib.suppress(pytest.fail.Exception):
                await commander.stop(signal.SIGTERM)
        else:
            await commander.stop()


async def _wait_for_banner(commander: Service) -> None:
    deadline = asyncio.get_running_loop().time() + STARTUP_TIMEOUT
    while BANNER_END not in stdout_of(commander):
        if commander.process.returncode is not None:
            await commander.stop()
            pytest.fail(f"exited with {commander.process.returncode}:\n{commander.output}")
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"no banner within {STARTUP_TIMEOUT:g} s:\n{commander.output}")
        await asyncio.sleep(0.05)


def stdout_of(commander: Service) -> str:
    return "".join(commander.stdout_chunks)


def commander_env(port: int, **variables: str) -> dict[str, str]:
    return child_env(REDIS_COMMANDER_PORT=str(port), **variables)


@pytest.fixture
async def password_redis(tmp_path: Path) -> AsyncIterator[RedisProcess]:
    """A redis-server of this test alone that requires REDIS_PASSWORD, holding KEY."""
    server = RedisProcess(tmp_path / "redis", "--requirepass", REDIS_PASSWORD)
    server.start()
    client = aioredis.Redis(port=server.port, password=REDIS_PASSWORD, decode_responses=True)
    await client.set(KEY, VALUE)
    await client.aclose()
    yield server
    server.stop()


async def sign_in(http: httpx.AsyncClient, user: str, password: str) -> dict[str, object]:
    response = await http.post("/signin", json={"username": user, "password": password})
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


async def read_key(http: httpx.AsyncClient, token: str, key: str) -> object:
    """KEY's value as Redis Commander's own API shows it (its one connection)."""
    auth = {"Authorization": f"Bearer {token}"}
    connections = (await http.get("/connections", headers=auth)).json()["connections"]
    assert [connection["label"] for connection in connections] == ["chatbridge"]
    response = await http.get(f"/apiv2/key/{connections[0]['conId']}/{key}", headers=auth)
    assert response.status_code == 200, response.text
    return response.json().get("value")


def node_children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its ')'.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    return children


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_the_page_answers_and_the_api_needs_the_right_login(
    start_commander: StartCommander, password_redis: RedisProcess
):
    port = free_port()
    env = commander_env(
        port,
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=str(password_redis.port),
        REDIS_PASSWORD=REDIS_PASSWORD,
        REDIS_COMMANDER_USER="ops",
        REDIS_COMMANDER_PASSWORD=WEB_PASSWORD,
    )
    commander = await start_commander(env)
    url = f"http://127.0.0.1:{port}/"
    assert f"open      {url}" in stdout_of(commander)
    assert "user      ops" in stdout_of(commander)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        assert (await http.get("/")).status_code == 200
        assert (await http.get("/connections")).status_code == 401
        forged = {"Authorization": "Bearer not-a-token-it-signed"}
        assert (await http.get("/connections", headers=forged)).status_code == 401
        assert await sign_in(http, "ops", WEB_PASSWORD + "x") == {"ok": False}
        assert await sign_in(http, "admin", WEB_PASSWORD) == {"ok": False}
        answer = await sign_in(http, "ops", WEB_PASSWORD)
        assert answer["ok"] is True
        assert await read_key(http, str(answer["bearerToken"]), KEY) == VALUE


async def test_no_password_reaches_the_output_or_a_command_line(
    start_commander: StartCommander, password_redis: RedisProcess
):
    port = free_port()
    env = commander_env(
        port,
        REDIS_URL=f"redis://:{REDIS_PASSWORD}@127.0.0.1:{password_redis.port}/0",
        REDIS_COMMANDER_PASSWORD=WEB_PASSWORD,
    )
    commander = await start_commander(env)
    [node] = node_children(commander.process.pid)
    assert "redis-commander.js" in command_line(node)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        token = str((await sign_in(http, "admin", WEB_PASSWORD))["bearerToken"])
        assert await read_key(http, token, KEY) == VALUE  # so it did use the password
    for pid in (node, commander.process.pid):
        assert REDIS_PASSWORD not in command_line(pid)
        assert WEB_PASSWORD not in command_line(pid)
    assert await commander.stop() == 0
    assert REDIS_PASSWORD not in commander.output
    assert WEB_PASSWORD not in commander.output


async def test_a_refused_redis_password_is_said_and_blanked_in_redis_commanders_output(
    start_commander: StartCommander, password_redis: RedisProcess
):
    wrong = "wrong-pw-5e8a1c"
    port = free_port()
    env = commander_env(
        port,
        REDIS_URL=f"redis://:{wrong}@127.0.0.1:{password_redis.port}/0",
        REDIS_COMMANDER_PASSWORD=WEB_PASSWORD,
    )
    commander = await start_commander(env)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        token = str((await sign_in(http, "admin", WEB_PASSWORD))["bearerToken"])
        auth = {"Authorization": f"Bearer {token}"}
        [connection] = (await http.get("/connections", headers=auth)).json()["connections"]
        reading = await http.get(f"/apiv2/key/{connection['conId']}/{KEY}", headers=auth)
        assert reading.status_code == 500
    # Failing that read, ioredis prints the arguments of its AUTH; the launcher blanks them.
    deadline = asyncio.get_running_loop().time() + 10
    while "args: [ '[REDACTED]' ]" not in commander.output:
        assert asyncio.get_running_loop().time() < deadline, commander.output
        await asyncio.sleep(0.05)
    await commander.stop()
    assert "refuses the password" in commander.output
    assert wrong not in commander.output


async def test_without_a_password_one_is_generated_printed_and_lets_one_in(
    start_commander: StartCommander, password_redis: RedisProcess
):
    port = free_port()
    env = commander_env(
        port,
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=str(password_redis.port),
        REDIS_PASSWORD=REDIS_PASSWORD,
    )
    commander = await start_commander(env)
    line = next(line for line in stdout_of(commander).splitlines() if "password" in line)
    generated = line.split()[1]
    assert len(generated) >= 20
    assert "generated for this run" in line
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        answer = await sign_in(http, "admin", generated)
        assert await read_key(http, str(answer["bearerToken"]), KEY) == VALUE
    await commander.stop()
    assert commander.output.count(generated) == 1  # printed once, never echoed by node


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_stops_redis_commander_with_the_launcher(
    start_commander: StartCommander, password_redis: RedisProcess, signum: signal.Signals
):
    port = free_port()
    env = commander_env(
        port,
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=str(password_redis.port),
        REDIS_PASSWORD=REDIS_PASSWORD,
    )
    commander = await start_commander(env)
    [node] = node_children(commander.process.pid)
    assert await commander.stop(signum) == 0
    assert not is_alive(node), f"node {node} outlived the launcher: {command_line(node)}"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


async def test_it_joins_the_embedded_redis_of_a_running_service(
    start_commander: StartCommander, tmp_path: Path
):
    # What `make run` leaves in its directory: an embedded Redis on data/redis.sock, held by
    # a live process (this test) through data/embedded.lock.
    async with EmbeddedRedis(data_dir=tmp_path / "data", config_file=project_redis_conf()) as redis:
        client = aioredis.Redis.from_url(redis.url, decode_responses=True)
        await client.set(KEY, VALUE)
        port = free_port()
        commander = await start_commander(commander_env(port), cwd=tmp_path)
        assert f"the embedded Redis on {redis.socket_path}" in stdout_of(commander)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            answer = await sign_in(http, "admin", stdout_password(commander))
            assert await read_key(http, str(answer["bearerToken"]), KEY) == VALUE
        assert await commander.stop() == 0
        assert await client.get(KEY) == VALUE  # the service's Redis is left running
        await client.aclose()


async def test_with_no_service_running_it_runs_the_embedded_redis_while_it_runs(
    start_commander: StartCommander, tmp_path: Path
):
    port = free_port()
    commander = await start_commander(commander_env(port), cwd=tmp_path)
    assert "the embedded Redis" in stdout_of(commander)
    assert "stop it before `make run`" in commander.output
    client = aioredis.Redis(unix_socket_path=str(tmp_path / "data" / "redis.sock"))
    await client.set(KEY, VALUE)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        answer = await sign_in(http, "admin", stdout_password(commander))
        assert await read_key(http, str(answer["bearerToken"]), KEY) == VALUE
    await client.aclose()
    assert await commander.stop() == 0
    assert socket_of_running_service(tmp_path / "data") is None


def stdout_password(commander: Service) -> str:
    line = next(line for line in stdout_of(commander).splitlines() if "password " in line)
    return line.split()[1]


async def test_without_node_it_says_what_to_install_and_exits_2(
    redis_commander_installed: Path, tmp_path: Path
):
    empty = tmp_path / "bin"
    empty.mkdir()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots.ops.commander",
        cwd=tmp_path,
        env=child_env(PATH=str(empty)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2, stderr.decode()
    assert "apt-get install nodejs npm" in stderr.decode()
    assert stdout == b""


async def test_a_port_in_use_is_refused_naming_the_variable(
    redis_commander_installed: Path, tmp_path: Path
):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bots.ops.commander",
            cwd=tmp_path,
            env=commander_env(port),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert f"REDIS_COMMANDER_PORT: 127.0.0.1:{port} is not free" in stderr.decode()


def test_installing_again_needs_no_npm_while_the_lock_is_unchanged(
    redis_commander_installed: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm: it would fail if it ran
    assert install() == redis_commander_installed
    assert os.access(redis_commander_installed, os.R_OK)


@pytest.mark.parametrize("topology", ["cluster", "sentinel"])
async def test_it_shows_a_cluster_or_a_sentinel_master(
    start_commander: StartCommander, request: pytest.FixtureRequest, topology: str
):
    if topology == "cluster":
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        variables = {"REDIS_URL": cluster.url}
    else:
        sentinel_set: SentinelSet = request.getfixturevalue("redis_sentinel_set")
        variables = {"REDIS_SENTINELS": sentinel_set.addresses, "REDIS_SENTINEL_MASTER": MASTER}
    settings = topology_settings(**{name.lower(): value for name, value in variables.items()})
    client = redis_from_settings(settings)
    key = f"{KEY}:{topology}"
    await client.set(key, VALUE, ex=60)
    port = free_port()
    commander = await start_commander(commander_env(port, **variables))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        token = str((await sign_in(http, "admin", stdout_password(commander)))["bearerToken"])
        assert await read_key(http, token, key) == VALUE
        auth = {"Authorization": f"Bearer {token}"}
        [connection] = (await http.get("/connections", headers=auth)).json()["connections"]
    # Redis Commander's own name for the kind of connection: C(luster) or S(entinel).
    assert connection["conId"].startswith({"cluster": "C:", "sentinel": "S:"}[topology])
    await client.delete(key)
    await close_redis(client)


async def test_when_redis_commander_dies_the_launcher_says_so_and_exits_1(
    start_commander: StartCommander, password_redis: RedisProcess
):
    env = commander_env(
        free_port(),
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=str(password_redis.port),
        REDIS_PASSWORD=REDIS_PASSWORD,
    )
    commander = await start_commander(env)
    [node] = node_children(commander.process.pid)
    os.kill(node, signal.SIGKILL)
    assert await asyncio.wait_for(commander.process.wait(), 15) == 1
    await commander.stop()
    assert "Redis Commander exited with code -9" in commander.output
