"""`python -m bots chat --user NAME` as a child process, driven over stdin/stdout pipes.

Each run writes its whole input up front, closes stdin and reads everything the REPL printed;
expected sentences come from core.messages, as the terminal shows them (bold markers dropped).
"""

from __future__ import annotations

import asyncio
import re

import pytest
import redis.asyncio as aioredis

from bots.terminal import plain
from core.messages import text
from core.sessions.keys import user_index_key
from tests.e2e.conftest import Completed, RunCli, child_env
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.redis_process import RedisProcess

EXIT_USAGE_ERROR = 2
MODEL = "test/model"
SESSION_LINE = re.compile(r"^(▶ )?\d+\. ", re.MULTILINE)
FOOTER = re.compile(r"\[" + re.escape(MODEL) + r" · \d+ tokens\]")


def say(locale: str, key: str, **params: object) -> str:
    """A sentence as the terminal prints it."""
    return plain(text(locale, key, **params))


async def chat(
    run_cli: RunCli, user: str, lines: list[str], *, within: float = 30.0, **variables: str
) -> Completed:
    """One REPL run: `lines` typed, then end of input."""
    env = child_env(DEFAULT_MODEL=MODEL, **variables)
    stdin = "".join(f"{line}\n" for line in lines)
    return await run_cli("chat", "--user", user, env=env, stdin=stdin, within=within)


async def stored_message_count(redis_client: aioredis.Redis) -> int:
    """Messages in every `session:*` key that holds a sequence (list, sorted set or stream)."""
    total = 0
    async for key in redis_client.scan_iter(match="session:*", count=100):
        kind = await redis_client.type(key)
        if kind == "list":
            total += await redis_client.llen(key)
        elif kind == "zset":
            total += await redis_client.zcard(key)
        elif kind == "stream":
            total += await redis_client.xlen(key)
    return total


def last_listing(stdout: str, locale: str) -> str:
    """The text of the last /sessions answer: from its header to its choice prompt."""
    header = say(locale, "sessions_header")
    assert header in stdout
    return stdout[stdout.rindex(header) :].split("choose a number", 1)[0]


@pytest.mark.parametrize(
    ("lang", "locale"), [("en_US.UTF-8", "en"), ("pt_BR.UTF-8", "pt-BR")], ids=["en", "pt-BR"]
)
async def test_session_commands_create_list_switch_show_and_delete(
    run_cli: RunCli,
    redis_server: RedisProcess,
    redis_client: aioredis.Redis,
    lang: str,
    locale: str,
) -> None:
    untitled = text(locale, "untitled")
    lines = ["/new Tides", "/new", "/sessions", ""]  # Enter: skip the "choose a number" prompt
    lines += ["/switch 2", "/history", "/delete 1", "1", "/sessions", ""]

    result = await chat(run_cli, "ana", lines, REDIS_URL=redis_server.url, LANG=lang)

    assert result.returncode == 0, result.output
    out = result.stdout
    assert say(locale, "session_created", title="Tides") in out
    assert say(locale, "session_created", title=untitled) in out
    assert out.count(say(locale, "sessions_header")) == 2
    assert say(locale, "switched", title="Tides", count=0) in out
    assert say(locale, "history_empty") in out
    assert say(locale, "delete_confirm", title=untitled, count=0) in out
    assert say(locale, "deleted", title=untitled) in out
    final = SESSION_LINE.findall(last_listing(out, locale))
    assert len(final) == 1, result.output
    assert "Tides" in last_listing(out, locale)
    assert say(locale, "goodbye") in out


async def test_a_message_without_openrouter_key_explains_and_stores_nothing(
    run_cli: RunCli, redis_server: RedisProcess, redis_client: aioredis.Redis
) -> None:
    result = await chat(run_cli, "ana", ["hello there"], REDIS_URL=redis_server.url)

    assert result.returncode == 0, result.output
    assert "OPENROUTER_API_KEY is not set" in result.stdout
    assert say("en", "model_not_configured") in result.stdout
    assert await stored_message_count(redis_client) == 0


async def test_a_message_streams_the_answer_with_a_footer_and_retry_answers_again(
    run_cli: RunCli,
    redis_server: RedisProcess,
    redis_client: aioredis.Redis,
    fake_openrouter: FakeOpenRouter,
) -> None:
    lines = ["hello tides", "/retry", "/history"]

    result = await chat(
        run_cli,
        "ana",
        lines,
        REDIS_URL=redis_server.url,
        OPENROUTER_API_KEY=fake_openrouter.api_key,
        OPENROUTER_BASE_URL=fake_openrouter.base_url,
    )

    assert result.returncode == 0, result.output
    out = result.stdout
    assert out.count("assistant> echo: hello tides") == 2, result.output
    assert len(FOOTER.findall(out)) == 2, result.output
    assert len(fake_openrouter.requests) == 2
    assert all(r.body["messages"][-1]["content"] == "hello tides" for r in fake_openrouter.requests)
    # The retry replaced the first answer: two messages in all, the title taken from the first.
    history = out[out.rindex(say("en", "history_header", title="hello tides", shown=2, total=2)) :]
    assert f"{text('en', 'you')}: hello tides" in history
    assert f"{text('en', 'assistant')}: echo: hello tides" in history
    assert await stored_message_count(redis_client) == 2


async def test_a_message_over_the_length_limit_is_refused_and_nothing_is_stored(
    run_cli: RunCli,
    redis_server: RedisProcess,
    redis_client: aioredis.Redis,
    fake_openrouter: FakeOpenRouter,
) -> None:
    message = "twenty characters!!!"

    result = await chat(
        run_cli,
        "ana",
        [message],
        REDIS_URL=redis_server.url,
        MAX_MESSAGE_LENGTH="10",
        OPENROUTER_API_KEY=fake_openrouter.api_key,
        OPENROUTER_BASE_URL=fake_openrouter.base_url,
    )

    assert result.returncode == 0, result.output
    assert "has 20 characters; the limit is 10" in result.stdout
    assert say("en", "message_too_long", length=20, limit=10) in result.stdout
    assert fake_openrouter.requests == []
    assert await stored_message_count(redis_client) == 0


async def test_quit_ends_the_repl_with_0_and_ignores_what_follows(
    run_cli: RunCli, redis_server: RedisProcess, redis_client: aioredis.Redis
) -> None:
    result = await chat(run_cli, "ana", ["/quit", "/new After"], REDIS_URL=redis_server.url)

    assert result.returncode == 0, result.output
    assert say("en", "goodbye") in result.stdout
    assert "After" not in result.stdout
    assert [key async for key in redis_client.scan_iter(match="session:*")] == []


async def test_end_of_input_ends_the_repl_with_0(
    run_cli: RunCli, redis_server: RedisProcess, redis_client: aioredis.Redis
) -> None:
    result = await chat(run_cli, "ana", ["/new Tides"], REDIS_URL=redis_server.url)

    assert result.returncode == 0, result.output
    assert say("en", "session_created", title="Tides") in result.stdout
    assert result.stdout.rstrip().endswith(say("en", "goodbye"))


async def test_a_user_name_with_a_space_is_a_usage_error(
    run_cli: RunCli, redis_server: RedisProcess
) -> None:
    result = await chat(run_cli, "bad name", ["/sessions"], REDIS_URL=redis_server.url)

    assert result.returncode == EXIT_USAGE_ERROR, result.output
    assert "--user" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


async def test_a_user_sees_and_switches_to_none_of_another_users_sessions(
    run_cli: RunCli, redis_server: RedisProcess, redis_client: aioredis.Redis
) -> None:
    ana = await chat(run_cli, "ana", ["/new Ana private"], REDIS_URL=redis_server.url)
    assert ana.returncode == 0, ana.output
    ana_sessions = await redis_client.zrange(user_index_key("cli:ana"), 0, -1)
    assert len(ana_sessions) == 1
    ana_session_id = ana_sessions[0]

    bob = await chat(
        run_cli, "bob", ["/sessions", f"/switch {ana_session_id}"], REDIS_URL=redis_server.url
    )

    assert bob.returncode == 0, bob.output
    assert "Ana private" not in bob.stdout
    assert say("en", "sessions_empty") in bob.stdout
    assert "doesn't exist or has expired" in bob.stdout
    assert say("en", "session_not_found") in bob.stdout


async def test_end_of_input_at_a_choice_prompt_ends_the_repl(
    run_cli: RunCli, redis_server: RedisProcess
) -> None:
    # Regression: the prompt used to consume the end-of-input sentinel, and the main loop then
    # waited on stdin forever.
    result = await chat(
        run_cli, "ana", ["/new Tides", "/sessions"], REDIS_URL=redis_server.url, within=10.0
    )

    assert result.returncode == 0, result.output
    assert result.stdout.rstrip().endswith(say("en", "goodbye"))


async def test_odd_digits_at_the_choice_prompt_or_in_a_command_are_refused_not_a_crash(
    run_cli: RunCli, redis_server: RedisProcess, redis_client: aioredis.Redis
) -> None:
    # '²' and '①' are digits to str.isdigit() but not to int().
    lines = ["/new Tides", "/sessions", "²", "/history ①", "/sessions", "1"]

    result = await chat(run_cli, "ana", lines, REDIS_URL=redis_server.url)

    assert result.returncode == 0, result.output
    assert "Traceback" not in result.stderr
    assert say("en", "invalid_argument", name="n", reason="a whole number from 1 to 50") in (
        result.stdout
    ), result.output
    assert say("en", "switched", title="Tides", count=0) in result.stdout  # "1" still picks


async def test_a_line_at_the_choice_prompt_that_is_no_number_is_a_message_or_a_command(
    run_cli: RunCli, redis_server: RedisProcess, fake_openrouter: FakeOpenRouter
) -> None:
    lines = ["/new Tides", "/sessions", "when is high tide?", "/sessions", "/new Waves", "/quit"]

    result = await chat(
        run_cli,
        "dora",  # her own sessions: the module's Redis keeps the other tests' users
        lines,
        REDIS_URL=redis_server.url,
        OPENROUTER_API_KEY=fake_openrouter.api_key,
        OPENROUTER_BASE_URL=fake_openrouter.base_url,
    )

    assert result.returncode == 0, result.output
    said = [r.body["messages"][-1]["content"] for r in fake_openrouter.requests]
    assert said == ["when is high tide?"]
    assert "assistant> echo: when is high tide?" in result.stdout
    assert say("en", "session_created", title="Waves") in result.stdout
    assert result.stdout.rstrip().endswith(say("en", "goodbye"))


async def test_past_the_session_limit_the_sessions_are_listed_to_pick_one_to_delete(
    run_cli: RunCli, redis_server: RedisProcess
) -> None:
    # "/new Three" is refused with the list; "2" picks "One", "1" confirms; then it is created.
    lines = ["/new One", "/new Two", "/new Three", "2", "1", "/new Three"]

    result = await chat(
        run_cli, "cleo", lines, REDIS_URL=redis_server.url, MAX_SESSIONS_PER_USER="2"
    )

    assert result.returncode == 0, result.output
    out = result.stdout
    refused = say("en", "session_limit_reached", limit=2) + "\n"
    refused += say("en", "session_limit_pick") + "\n  [1] 🗑 1. Two\n  [2] 🗑 2. One\n"
    assert refused in out, result.output
    assert say("en", "delete_confirm", title="One", count=0) in out
    assert say("en", "deleted", title="One") in out
    assert say("en", "session_created", title="Three") in out


async def test_stop_typed_while_an_answer_is_written_ends_it_and_later_lines_follow(
    run_cli: RunCli, redis_server: RedisProcess, fake_openrouter: FakeOpenRouter
) -> None:
    gate = asyncio.Event()
    fake_openrouter.pause(gate, after_deltas=1)
    lines = ["tell me everything", "/stop", "/history", "/quit"]
    try:
        result = await chat(
            run_cli,
            "erin",  # her own sessions: the module's Redis keeps the other tests' users
            lines,
            REDIS_URL=redis_server.url,
            OPENROUTER_API_KEY=fake_openrouter.api_key,
            OPENROUTER_BASE_URL=fake_openrouter.base_url,
        )
    finally:
        gate.set()

    assert result.returncode == 0, result.output
    assert "Traceback" not in result.stderr
    printed = result.stdout.splitlines()
    assert say("en", "answer_stopped") in printed, result.output
    assert "echo: tell me everything" not in result.stdout  # the model was still holding it
    # The line typed after the /stop was kept for after the answer.
    history = [line for line in printed if line.endswith("messages") and ": last " in line]
    assert len(history) == 1, result.output
    assert printed.index(say("en", "answer_stopped")) < printed.index(history[0])
    assert result.stdout.rstrip().endswith(say("en", "goodbye"))
