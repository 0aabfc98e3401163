"""Where a session's summary stands in for its older messages, as /history, /export and
backups show it (core/commands.py, core/sessions/export.py, core/backup/), on a real
redis-server: the summary written into the session's hash where only its rendering is tested,
made by core.summaries.Summarizer with the fake OpenRouter where the whole path is.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.backup.lines import backup_lines, restore_lines
from core.chat import ChatService, TurnSettings
from core.commands import HISTORY_SUMMARY_CHARS, CommandHandler, FileReply, Reply
from core.conversation import Role
from core.errors import InvalidBackup
from core.llm.openrouter import OpenRouterClient
from core.messages import ENGLISH, PORTUGUESE, text
from core.sessions.keys import session_key
from core.sessions.store import SessionStore
from core.settings import SessionLimitPolicy
from core.summaries import SUMMARY_MAX_CHARACTERS, Summarizer
from tests.fakes.openrouter_server import FakeOpenRouter

pytestmark = pytest.mark.all_redis_topologies

ANA = "cli:ana"
SUMMARY = "Ana's cat is called Tom."
MARKER = "📝 *Summary of messages 1 to {up_to}*"


async def session_with(store: SessionStore, count: int) -> str:
    """Ana's active session holding messages `m1` ... `m<count>` (seqs 1 ... count)."""
    session = await store.create_session(ANA, title="Long", default_model="test/model")
    for seq in range(1, count + 1):
        role = Role.USER if seq % 2 else Role.ASSISTANT
        await store.append_message(session.id, role, f"m{seq}", owner=ANA)
    return session.id


async def summarise(
    redis_client: aioredis.Redis, session_id: str, up_to: int, summary: str = SUMMARY
) -> None:
    """As save_summary.lua leaves it."""
    await redis_client.hset(
        session_key(session_id), mapping={"summary": summary, "summaryUpTo": up_to}
    )


async def history(commands: CommandHandler, argument: str = "", locale: str = ENGLISH) -> str:
    reply = await commands.handle(ANA, f"/history {argument}".strip(), locale=locale)
    assert isinstance(reply, Reply)
    assert not reply.is_error, reply.text
    return reply.text


async def export(commands: CommandHandler, locale: str = ENGLISH) -> str:
    reply = await commands.handle(ANA, "/export", locale=locale)
    assert isinstance(reply, FileReply)
    return reply.content.decode()


# --- /history ------------------------------------------------------------------------------

# /history 4 of messages 1-10 shows m7 ... m10.


@pytest.mark.parametrize(
    ("up_to", "after"),
    [(6, None), (7, "m7"), (8, "m8")],
    ids=["just-above-the-list", "after-the-first-shown", "among-the-shown"],
)
async def test_history_shows_the_summary_before_the_first_message_it_does_not_stand_in_for(
    commands: CommandHandler,
    store: SessionStore,
    redis_client: aioredis.Redis,
    up_to: int,
    after: str | None,
) -> None:
    session_id = await session_with(store, 10)
    await summarise(redis_client, session_id, up_to)

    shown = await history(commands, "4")

    marker = MARKER.format(up_to=up_to)
    assert shown.count(marker) == 1
    assert "last 4 of 10" in shown
    first_not_covered = f"m{up_to + 1}"
    assert shown.index(marker) < shown.index(first_not_covered)
    if after is not None:  # the messages it stands in for are still listed, above it
        assert shown.index(after) < shown.index(marker)
    else:
        assert shown.index(marker) < shown.index("m7")
    assert f"{marker}: the model gets this instead of the original text.\n{SUMMARY}" in shown


async def test_history_does_not_reach_back_to_a_summary_above_the_list(
    commands: CommandHandler, store: SessionStore, redis_client: aioredis.Redis
) -> None:
    session_id = await session_with(store, 10)
    await summarise(redis_client, session_id, 5)  # m6 is not shown, and not summarised

    shown = await history(commands, "4")

    assert "📝" not in shown
    assert SUMMARY not in shown
    assert MARKER.format(up_to=5) in await history(commands, "5")  # m6 ... m10


async def test_history_of_a_session_without_a_summary_has_no_marker(
    commands: CommandHandler, store: SessionStore
) -> None:
    await session_with(store, 4)
    assert "📝" not in await history(commands)


async def test_history_puts_the_summary_first_when_the_messages_it_stands_in_for_are_gone(
    redis_client: aioredis.Redis,
    model_client: OpenRouterClient,
    turn_settings: TurnSettings,
    store: SessionStore,
) -> None:
    trimming = SessionStore(redis_client, replace(store.limits, max_messages_per_session=4))
    commands = CommandHandler(ChatService(trimming, model_client, turn_settings))
    session_id = await session_with(trimming, 10)  # m7 ... m10 kept
    await summarise(redis_client, session_id, 6)

    shown = await history(commands)

    assert "last 4 of 4" in shown
    assert shown.index(MARKER.format(up_to=6)) < shown.index("m7") < shown.index("m10")


@pytest.mark.parametrize(
    ("length", "is_cut"),
    [(HISTORY_SUMMARY_CHARS - 1, False), (HISTORY_SUMMARY_CHARS, False),
     (HISTORY_SUMMARY_CHARS + 1, True)],
    ids=["below", "at", "above"],
)  # fmt: skip
async def test_history_cuts_a_long_summary_and_points_to_the_export(
    commands: CommandHandler,
    store: SessionStore,
    redis_client: aioredis.Redis,
    length: int,
    is_cut: bool,
) -> None:
    session_id = await session_with(store, 4)
    summary = "s" * (length - 1) + "E"
    await summarise(redis_client, session_id, 2, summary)

    shown = await history(commands)

    assert (summary in shown) is not is_cut
    assert (text(ENGLISH, "history_summary_cut") in shown) is is_cut
    if is_cut:
        assert "s" * (HISTORY_SUMMARY_CHARS - 1) + "s… (/export has it whole)" in shown


async def test_history_names_a_summary_of_one_message_and_speaks_portuguese(
    commands: CommandHandler, store: SessionStore, redis_client: aioredis.Redis
) -> None:
    session_id = await session_with(store, 4)
    await summarise(redis_client, session_id, 1)
    assert "📝 *Summary of message 1*:" in await history(commands)

    await summarise(redis_client, session_id, 3)
    shown = await history(commands, locale=PORTUGUESE)
    assert "📝 *Resumo das mensagens 1 a 3*: o modelo recebe isto em vez do texto original." in (
        shown
    )


# --- /export -------------------------------------------------------------------------------


async def test_export_has_a_summary_section_before_the_first_message_it_does_not_cover(
    commands: CommandHandler, store: SessionStore, redis_client: aioredis.Redis
) -> None:
    session_id = await session_with(store, 6)
    await summarise(redis_client, session_id, 4)

    markdown = await export(commands)

    section = (
        "### 📝 Summary of messages 1 to 4\n\n"
        "_The model gets this summary instead of the original text._\n\n"
        f"{SUMMARY}\n\n### You · "
    )
    assert markdown.count("### 📝") == 1
    assert markdown.index("\n\nm4\n\n") < markdown.index(section)
    assert markdown.index(section) < markdown.index("\n\nm5\n")
    assert " · 6 messages" in markdown  # every stored message is still exported


async def test_export_puts_the_summary_first_when_what_it_covers_is_gone_in_portuguese(
    redis_client: aioredis.Redis,
    model_client: OpenRouterClient,
    turn_settings: TurnSettings,
    store: SessionStore,
) -> None:
    trimming = SessionStore(redis_client, replace(store.limits, max_messages_per_session=2))
    commands = CommandHandler(ChatService(trimming, model_client, turn_settings))
    session_id = await session_with(trimming, 6)  # m5, m6 kept
    await summarise(redis_client, session_id, 4)

    markdown = await export(commands, locale=PORTUGUESE)

    assert "---\n\n### 📝 Resumo das mensagens 1 a 4\n\n_O modelo recebe este resumo" in markdown
    assert markdown.index("### 📝") < markdown.index("\n\nm5\n")


async def test_export_without_a_summary_has_no_summary_section(
    commands: CommandHandler, store: SessionStore
) -> None:
    await session_with(store, 2)
    assert "📝" not in await export(commands)


# --- made by the summarizer ----------------------------------------------------------------


FILLER = " ".join(f"word{n}" for n in range(25))


async def test_a_summary_the_summarizer_made_shows_where_it_stands_in(
    store: SessionStore, model_client: OpenRouterClient, fake_openrouter: FakeOpenRouter
) -> None:
    summarizer = Summarizer(
        store.summaries, model_client, summary_model="test/summarizer",
        max_messages=store.limits.max_messages_per_session,
    )  # fmt: skip
    chat = ChatService(
        store, model_client, TurnSettings("Be brief.", "test/model", context_tokens=400),
        summarizer=summarizer,
    )  # fmt: skip
    commands = CommandHandler(chat)
    try:
        for number in range(8):
            async with chat.turn(f"question {number} {FILLER}", user_id=ANA) as turn:
                _ = [delta async for delta in turn.deltas()]
            await summarizer.wait(10)
    finally:
        await summarizer.close(10)
    page = await store.recent_messages(turn.session.id, 1)
    assert page.summary is not None
    up_to = page.summary.up_to
    assert page.summary.text.startswith("echo: ")  # the fake's summary
    assert any(r.body and r.body["model"] == "test/summarizer" for r in fake_openrouter.requests)

    shown = await history(commands, "50")
    markdown = await export(commands)

    # Question q is message 2q + 1, its answer 2q + 2: the last question the summary stands in
    # for, and the first it does not.
    covered, after = (up_to - 1) // 2, (up_to + 1) // 2
    marker = MARKER.format(up_to=up_to)
    assert shown.index(f"*You:* question {covered} ") < shown.index(marker)
    assert shown.index(marker) < shown.index(f"*You:* question {after} ")
    heading = f"### 📝 Summary of messages 1 to {up_to}"
    assert markdown.index(f"\n\nquestion {covered} ") < markdown.index(heading)
    assert markdown.index(heading) < markdown.index(f"\n\nquestion {after} ")


# --- backups -------------------------------------------------------------------------------


async def backup_of(redis: aioredis.Redis) -> list[str]:
    return [line async for line in backup_lines(redis)]


async def restore(redis: aioredis.Redis, lines: list[str]) -> None:
    await restore_lines(redis, lines, ttl_seconds=3600)


def session_line(lines: list[str], session_id: str) -> tuple[int, dict[str, Any]]:
    for number, line in enumerate(lines):
        record = json.loads(line)
        if record.get("id") == session_id:
            return number, record
    raise AssertionError(f"no line for {session_id}")


async def test_a_backup_carries_the_summary_and_a_restore_puts_it_back(
    store: SessionStore, redis_client: aioredis.Redis
) -> None:
    session_id = await session_with(store, 6)
    await summarise(redis_client, session_id, 4)
    await redis_client.hset(session_key(session_id), "toldSummary", 1)
    plain_id = await session_with(store, 2)

    lines = await backup_of(redis_client)

    _, record = session_line(lines, session_id)
    assert (record["summary"], record["summaryUpTo"], record["toldSummary"]) == (SUMMARY, 4, True)
    _, plain = session_line(lines, plain_id)
    assert not {"summary", "summaryUpTo", "toldSummary"} & set(plain)
    await redis_client.flushall()
    await restore(redis_client, lines)
    fields = await redis_client.hgetall(session_key(session_id))
    assert (fields["summary"], fields["summaryUpTo"], fields["toldSummary"]) == (SUMMARY, "4", "1")
    page = await store.read_messages(session_id)
    assert page.summary is not None
    assert (page.summary.text, page.summary.up_to) == (SUMMARY, 4)
    assert not {"summary", "summaryUpTo", "toldSummary"} & set(
        await redis_client.hkeys(session_key(plain_id))
    )


async def test_a_summary_not_yet_told_is_backed_up_without_told_summary(
    store: SessionStore, redis_client: aioredis.Redis
) -> None:
    session_id = await session_with(store, 4)
    await summarise(redis_client, session_id, 2)

    lines = await backup_of(redis_client)

    assert "toldSummary" not in session_line(lines, session_id)[1]
    await redis_client.flushall()
    await restore(redis_client, lines)
    fields = await redis_client.hgetall(session_key(session_id))
    assert (fields["summary"], fields["summaryUpTo"]) == (SUMMARY, "2")
    assert "toldSummary" not in fields


async def test_a_line_without_a_summary_restores_over_a_session_that_has_one_since(
    store: SessionStore, redis_client: aioredis.Redis
) -> None:
    """A file written before summaries: the session comes back as the file has it."""
    session_id = await session_with(store, 4)
    lines = await backup_of(redis_client)
    await summarise(redis_client, session_id, 2)

    await restore(redis_client, lines)

    assert (await store.read_messages(session_id)).summary is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"summary": SUMMARY}, "summaryUpTo: given with a summary, and only with one"),
        ({"summaryUpTo": 2}, "summaryUpTo: given with a summary, and only with one"),
        ({"summary": SUMMARY, "summaryUpTo": 5}, "summaryUpTo: past the session's seq"),
        ({"summary": SUMMARY, "summaryUpTo": 0}, "summaryUpTo: Input should be greater"),
        ({"summary": "", "summaryUpTo": 2}, "summary: String should have at least 1"),
        ({"summary": "s" * (SUMMARY_MAX_CHARACTERS + 1), "summaryUpTo": 2},
         "summary: String should have at most 6000"),
    ],
    ids=["no-up-to", "no-summary", "past-seq", "zero", "empty", "too-long"],
)  # fmt: skip
async def test_a_line_with_a_summary_that_cannot_be_is_refused_and_nothing_written(
    store: SessionStore, redis_client: aioredis.Redis, change: dict[str, Any], problem: str
) -> None:
    session_id = await session_with(store, 4)
    lines = await backup_of(redis_client)
    number, record = session_line(lines, session_id)
    lines[number] = json.dumps({**record, **change}) + "\n"
    await redis_client.flushall()

    with pytest.raises(InvalidBackup, match=problem):
        await restore(redis_client, lines)

    assert not await redis_client.exists(session_key(session_id))


@pytest.mark.parametrize(
    "summary", ["s" * SUMMARY_MAX_CHARACTERS, "s" * (SUMMARY_MAX_CHARACTERS - 1)],
    ids=["at-the-limit", "below"],
)  # fmt: skip
async def test_a_summary_up_to_its_limit_and_up_to_the_sessions_seq_restores(
    store: SessionStore, redis_client: aioredis.Redis, summary: str
) -> None:
    session_id = await session_with(store, 4)
    await summarise(redis_client, session_id, 4, summary)  # every message
    lines = await backup_of(redis_client)
    await redis_client.flushall()

    await restore(redis_client, lines)

    assert (await store.read_messages(session_id)).summary is not None


async def test_a_version_1_line_with_a_summary_is_refused(
    store: SessionStore, redis_client: aioredis.Redis
) -> None:
    session_id = await session_with(store, 2)
    lines = await backup_of(redis_client)
    number, record = session_line(lines, session_id)
    version_1 = {key: value for key, value in record.items()
                 if key not in ("creator", "fileBytes", "systemPrompt")}  # fmt: skip
    lines[0] = json.dumps({**json.loads(lines[0]), "version": 1}) + "\n"
    lines[number] = json.dumps({**version_1, "summary": SUMMARY, "summaryUpTo": 1}) + "\n"

    with pytest.raises(InvalidBackup, match="summary: not in format version 1"):
        await restore(redis_client, lines)


# --- deletion ------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "evicted"])
async def test_a_session_goes_with_the_claim_on_its_next_summary(
    store: SessionStore, redis_client: aioredis.Redis, how: str
) -> None:
    session_id = await session_with(store, 4)
    assert await store.summaries.claim(session_id, "claim-token", 2) is not None
    claim = session_key(session_id, ":summarizing")
    assert await redis_client.exists(claim)

    if how == "deleted":
        await store.delete_session(session_id, owner=ANA)
    else:
        evicting = SessionStore(
            redis_client,
            replace(store.limits, max_sessions_per_user=1, policy=SessionLimitPolicy.EVICT_OLDEST),
        )
        await evicting.create_session(ANA, default_model="test/model")

    assert not await redis_client.exists(session_key(session_id))
    assert not await redis_client.exists(claim)
