"""`chatbridge backup` and `chatbridge restore` as child processes (`python -m bots ...`).

Sessions are made through the store in the test process, or through the HTTP API of a running
service; the oracle reads the documented key layout directly.
"""

from __future__ import annotations

import json
import secrets
import stat
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from core.conversation import AttachmentKind, NewAttachment, Role, Usage
from core.sessions.codec import as_bytes
from core.sessions.keys import session_key
from core.sessions.limits import SessionLimits
from core.sessions.store import SessionStore
from tests.e2e.conftest import Completed, RunCli, StartService, child_env, service_env
from tests.redis_process import RedisProcess, free_port

EXIT_FAILURE = 1
EXIT_USAGE_ERROR = 2


async def snapshot(redis: aioredis.Redis) -> dict[str, Any]:
    """Every session and user key with its value, decoded."""
    state: dict[str, Any] = {}
    for pattern in ("session:*", "user:*"):
        async for key in redis.scan_iter(match=pattern, count=500):
            kind = await redis.type(key)
            if kind == "hash":
                state[key] = await redis.hgetall(key)
            elif kind == "list":
                state[key] = [json.loads(e) for e in await redis.lrange(key, 0, -1)]
            elif kind == "zset":
                state[key] = await redis.zrange(key, 0, -1, withscores=True)
    return state


async def populate(redis: aioredis.Redis) -> str:
    store = SessionStore(redis, SessionLimits())
    session = await store.create_session("cli:ana", title="Tides", default_model="test/model")
    await store.append_message(session.id, Role.USER, "How do tides work?", owner="cli:ana")
    await store.append_message(
        session.id, Role.ASSISTANT, "The Moon.", model="test/model", usage=Usage(3, 4, 0.01)
    )
    await store.create_session("telegram:7", default_model="test/model")
    return session.id


def assert_one_line_error(result: Completed, *parts: str) -> None:
    assert result.returncode == EXIT_FAILURE, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.output
    for part in parts:
        assert part in lines[0], result.output


async def test_a_backup_file_restored_into_an_empty_redis_gives_everything_back(
    run_cli: RunCli, redis_server: RedisProcess, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    await populate(redis_client)
    before = await snapshot(redis_client)
    env = child_env(REDIS_URL=redis_server.url)

    backed_up = await run_cli("backup", "all.jsonl", env=env)
    await redis_client.flushall()
    restored = await run_cli("restore", "all.jsonl", env=env)

    assert backed_up.returncode == 0, backed_up.output
    assert backed_up.stderr.strip() == (
        "chatbridge: backed up 2 sessions (2 messages) and 2 user states to all.jsonl"
    )
    backup = tmp_path / "all.jsonl"
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600  # everyone's conversations
    assert not (tmp_path / "all.jsonl.partial").exists()
    assert restored.returncode == 0, restored.output
    assert restored.stderr.strip() == (
        "chatbridge: restored 2 sessions (2 messages) and 2 user states from all.jsonl"
    )
    assert await snapshot(redis_client) == before


async def test_backup_to_stdout_and_restore_from_stdin(
    run_cli: RunCli, redis_server: RedisProcess, redis_client: aioredis.Redis
) -> None:
    await populate(redis_client)
    before = await snapshot(redis_client)
    env = child_env(REDIS_URL=redis_server.url)

    backed_up = await run_cli("backup", "-", env=env)
    await redis_client.flushall()
    restored = await run_cli("restore", "-", env=env, stdin=backed_up.stdout)
    again = await run_cli("restore", "-", env=env, stdin=backed_up.stdout)

    assert backed_up.returncode == 0, backed_up.output
    lines = backed_up.stdout.splitlines()
    assert json.loads(lines[0])["format"] == "chatbridge-backup"
    assert json.loads(lines[-1]) == {"kind": "end", "sessions": 2, "users": 2, "messages": 2}
    assert "to stdout" in backed_up.stderr
    assert restored.returncode == 0, restored.output
    assert "from stdin" in restored.stderr
    assert again.returncode == 0, again.output
    assert await snapshot(redis_client) == before


async def test_files_go_through_a_backup_file_and_come_back_byte_identical(
    run_cli: RunCli, redis_server: RedisProcess, redis_client: aioredis.Redis
) -> None:
    store = SessionStore(redis_client, SessionLimits())
    picture = bytes(range(256)) + b"\xff\xfe\x00\xc3\x28"  # not UTF-8 either
    start = await store.begin_turn(
        "telegram:7", "look", session_id=None, lock_token=secrets.token_hex(12),
        lock_ttl_ms=30_000, context_tokens=16_000, default_model="test/model",
        attachments=[NewAttachment(AttachmentKind.IMAGE, "image/jpeg", "p.jpg", picture)],
    )  # fmt: skip
    await store.finish_turn(
        start, "a picture", model="test/model", usage=None, is_retry=False, spent_tokens=0
    )
    env = child_env(REDIS_URL=redis_server.url)

    assert (await run_cli("backup", "files.jsonl", env=env)).returncode == 0
    await redis_client.flushall()
    restored = await run_cli("restore", "files.jsonl", env=env)

    assert restored.returncode == 0, restored.output
    [question, _] = (await store.read_messages(start.session.id)).messages
    [listed] = question.attachments
    assert (listed.name, listed.kept) == ("p.jpg", True)
    assert (await store.read_attachment(start.session.id, listed.id))[1] == picture
    files = await redis_client.hgetall(session_key(start.session.id, ":files"))
    assert {k: as_bytes(v) for k, v in files.items()} == {listed.id: picture}


async def test_a_corrupted_file_is_refused_naming_the_line_and_nothing_is_written(
    run_cli: RunCli, redis_server: RedisProcess, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    session_id = await populate(redis_client)
    env = child_env(REDIS_URL=redis_server.url)
    assert (await run_cli("backup", "all.jsonl", env=env)).returncode == 0
    lines = (tmp_path / "all.jsonl").read_text().splitlines(keepends=True)
    bad = 1 + next(i for i, line in enumerate(lines) if session_id in line)
    record = json.loads(lines[bad - 1])
    record["messages"][1]["role"] = "robot"
    lines[bad - 1] = json.dumps(record) + "\n"
    (tmp_path / "broken.jsonl").write_text("".join(lines))
    await redis_client.flushall()

    result = await run_cli("restore", "broken.jsonl", env=env)

    assert_one_line_error(
        result, f"chatbridge: restore: broken.jsonl line {bad}: messages.1.role: Input should be"
    )
    assert await snapshot(redis_client) == {}  # a file is checked whole before any write


async def test_a_missing_file_is_a_one_line_error(
    run_cli: RunCli, redis_server: RedisProcess, redis_client: aioredis.Redis
) -> None:
    result = await run_cli("restore", "nowhere.jsonl", env=child_env(REDIS_URL=redis_server.url))

    assert_one_line_error(result, "chatbridge: restore: nowhere.jsonl: No such file")


async def test_an_unreachable_redis_is_a_one_line_error_and_leaves_no_file(
    run_cli: RunCli, tmp_path: Path
) -> None:
    env = child_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")

    result = await run_cli("backup", "all.jsonl", env=env)

    assert_one_line_error(result, "chatbridge: backup: ", "unavailable")
    assert not (tmp_path / "all.jsonl").exists()
    assert not (tmp_path / "all.jsonl.partial").exists()


async def test_backup_without_a_file_is_a_usage_error(run_cli: RunCli) -> None:
    result = await run_cli("backup", env=child_env())

    assert result.returncode == EXIT_USAGE_ERROR, result.output
    assert "FILE" in result.stderr


async def test_backup_and_restore_work_beside_a_running_service_on_its_embedded_redis(
    start_service: StartService, run_cli: RunCli, tmp_path: Path
) -> None:
    service = await start_service(service_env())  # no REDIS_*: the embedded Redis in ./data
    async with httpx.AsyncClient(base_url=service.local_url) as client:
        created = await client.post("/api/sessions", json={"userId": "ana", "title": "Kept"})
        session_id = created.json()["id"]
        added = await client.post(
            f"/api/sessions/{session_id}/messages", json={"role": "user", "content": "hello"}
        )
        assert added.status_code == 201

        backed_up = await run_cli("backup", "beside.jsonl", env=child_env(), cwd=tmp_path)
        deleted = await client.delete(f"/api/sessions/{session_id}")
        restored = await run_cli("restore", "beside.jsonl", env=child_env(), cwd=tmp_path)
        page = await client.get(f"/api/sessions/{session_id}/messages")

    assert backed_up.returncode == 0, backed_up.output
    assert deleted.status_code == 204
    assert restored.returncode == 0, restored.output
    assert "restored 1 session (1 message)" in restored.stderr
    assert page.status_code == 200, page.text
    assert [m["content"] for m in page.json()["messages"]] == ["hello"]


async def test_without_a_service_running_the_commands_start_the_embedded_redis_of_the_directory(
    run_cli: RunCli, redis_server: RedisProcess, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    await populate(redis_client)
    backed_up = await run_cli("backup", "-", env=child_env(REDIS_URL=redis_server.url))
    (tmp_path / "from-elsewhere.jsonl").write_text(backed_up.stdout)

    restored = await run_cli("restore", "from-elsewhere.jsonl", env=child_env())
    again = await run_cli("backup", "-", env=child_env())  # a new embedded Redis, same ./data

    assert restored.returncode == 0, restored.output
    assert again.returncode == 0, again.output
    assert (tmp_path / "data").is_dir()
    now, before = sessions_in(again.stdout), sessions_in(backed_up.stdout)
    assert now.keys() == before.keys()
    for session_id, record in now.items():
        expected = before[session_id]
        # The same expiry instant, read through another server's clock: a millisecond apart.
        assert abs(record.pop("expiresAt") - expected.pop("expiresAt")) <= 1_000
        assert record == expected


def sessions_in(backup: str) -> dict[str, dict[str, Any]]:
    records = [json.loads(line) for line in backup.splitlines()]
    return {r["id"]: r for r in records if r.get("kind") == "session"}
