"""`chatbridge migrate-keys` as a child process (`python -m bots migrate-keys`)."""

from __future__ import annotations

import redis.asyncio as aioredis

from tests.e2e.conftest import RunCli, child_env
from tests.first_layout import DAY_MS, OldSession, OldUser, redis_now_ms, write_first_layout
from tests.redis_process import RedisProcess, free_port

EXIT_FAILURE = 1


async def test_migrate_keys_moves_the_first_layout_and_says_what_it_moved(
    run_cli: RunCli, redis_server: RedisProcess, redis_client: aioredis.Redis
) -> None:
    now = await redis_now_ms(redis_client)
    users = [
        OldUser("telegram:42", [OldSession("Tides", now - 1000, ["q", "a"])], model="m/x"),
        OldUser("cli:ana", [OldSession("Ana", now - 500, [])], tokens=12),
    ]
    await write_first_layout(redis_client, users, now + 3_600_000)
    renamed = {old: new for user in users for old, new in user.keys(now // DAY_MS).items()}
    env = child_env(REDIS_URL=redis_server.url)

    first = await run_cli("migrate-keys", env=env)
    again = await run_cli("migrate-keys", env=env)

    assert first.returncode == 0, first.output
    assert first.stderr.strip() == "chatbridge: moved 5 and merged 0 keys of the first layout"
    assert again.stderr.strip() == "chatbridge: moved 0 and merged 0 keys of the first layout"
    assert len(renamed) == 5
    assert all([await redis_client.exists(new) for new in renamed.values()])
    assert [key async for key in redis_client.scan_iter(match="user:{*")] == []


async def test_migrate_keys_on_an_unreachable_redis_is_a_one_line_error(run_cli: RunCli) -> None:
    env = child_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")

    result = await run_cli("migrate-keys", env=env)

    assert result.returncode == EXIT_FAILURE, result.output
    assert "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [
        "chatbridge: migrate-keys: Session storage is temporarily unavailable."
    ]
