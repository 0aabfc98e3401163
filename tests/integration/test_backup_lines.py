"""Backup and restore (core/backup/lines.py) on a real Redis.

The oracle is the test's own reading of the documented key layout (docs/data-model.md): every
session hash, message list, user index with its scores, user state hash and their expiries,
read with SCAN and plain commands. A round trip must give it back as it was.
"""

from __future__ import annotations

import json
import tracemalloc
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.backup.format import Counts, message_record, stored_entry
from core.backup.lines import BATCH_SIZE, backup_lines, restore_lines
from core.conversation import Role, Usage
from core.errors import InvalidBackup
from core.sessions.codec import TOKENS_UNIT, EntryBasis
from core.sessions.keys import (
    new_session_id,
    session_key,
    user_index_key,
    user_state_key,
    user_tag,
)
from core.sessions.limits import SessionLimits
from core.sessions.store import SessionStore
from core.tokens import count_tokens

pytestmark = pytest.mark.all_redis_topologies

TTL = 3600
EXPIRY_SLACK_MS = 5_000  # the round trip takes a moment: remaining lifetimes shrink by it
CLOCK_SLACK_MS = 50  # Redis reads the clock once per event loop turn: a PTTL may lag that much
ANA, BOB, CAROL = "cli:ana", "telegram:42", "http:carol / 🌊"


async def backup_of(redis: aioredis.Redis) -> list[str]:
    return [line async for line in backup_lines(redis)]


async def restore(redis: aioredis.Redis, lines: list[str], **options: Any) -> Any:
    return await restore_lines(redis, lines, ttl_seconds=TTL, **options)


async def snapshot(redis: aioredis.Redis) -> dict[str, Any]:
    """Everything a user owns, as the data model lays it out (expiries apart)."""
    state: dict[str, Any] = {}
    async for key in redis.scan_iter(match="session:*", count=500):
        kind = await redis.type(key)
        if kind == "hash":
            state[key] = await redis.hgetall(key)
        elif kind == "list":
            state[key] = [json.loads(entry) for entry in await redis.lrange(key, 0, -1)]
    async for key in redis.scan_iter(match="user:*", count=500):
        kind = await redis.type(key)
        if kind == "hash":
            state[key] = await redis.hgetall(key)
        elif kind == "zset":
            state[key] = await redis.zrange(key, 0, -1, withscores=True)
    return state


async def expiries(redis: aioredis.Redis) -> dict[str, int]:
    """Every key's remaining lifetime in ms (-1: none)."""
    found = {}
    for pattern in ("session:*", "user:*"):
        async for key in redis.scan_iter(match=pattern, count=500):
            found[key] = await redis.pttl(key)
    return found


@pytest.fixture
async def populated(store: SessionStore, redis_client: aioredis.Redis) -> dict[str, str]:
    """Users, sessions and messages of every shape the store writes; returns their ids."""
    tides = await store.create_session(
        ANA, title="Tides", default_model="test/model", system_prompt="You are a sailor. ⚓"
    )
    await store.append_message(tides.id, Role.USER, 'How do tides work? ünï / 🌊 "q"', owner=ANA)
    await store.append_message(
        tides.id, Role.ASSISTANT, "The Moon.", model="test/model",
        usage=Usage(prompt_tokens=12, completion_tokens=34, cost=0.000123456789),
    )  # fmt: skip
    await store.append_message(tides.id, Role.SYSTEM, "Be brief.")
    await store.append_message(tides.id, Role.ASSISTANT, "A model, no usage.", model="m/x")
    await store.append_message(
        tides.id, Role.ASSISTANT, "Usage, no model.", usage=Usage(1, 2, None)
    )
    empty = await store.create_session(ANA, default_model="test/model")
    await store.switch_session(ANA, tides.id)  # the active one is not the most recent
    await store.set_user_model(ANA, "anthropic/claude-3.5-haiku")
    trimmed_store = SessionStore(redis_client, replace(store.limits, max_messages_per_session=2))
    bobs = await trimmed_store.create_session(BOB, title="Trimmed", default_model="test/model")
    for number in range(3):
        await trimmed_store.append_message(bobs.id, Role.USER, f"m{number}", owner=BOB)
    await store.set_user_model(CAROL, "x/only-a-model")  # a user state without any session
    return {"tides": tides.id, "empty": empty.id, "bobs": bobs.id}


# --- round trips -----------------------------------------------------------------------------


async def test_a_backup_restored_into_an_empty_redis_gives_back_everything(
    store: SessionStore, redis_client: aioredis.Redis, populated: dict[str, str]
) -> None:
    # Read first: reading slides the session's expiry (touch), which the lifetimes must include.
    listing_before = await store.list_sessions(ANA)
    messages_before = await store.read_messages(populated["tides"], limit=100)
    before, lives_before = await snapshot(redis_client), await expiries(redis_client)

    lines = await backup_of(redis_client)
    await redis_client.flushall()
    report = await restore(redis_client, lines)

    assert await snapshot(redis_client) == before
    lives_after = await expiries(redis_client)
    assert lives_after.keys() == lives_before.keys()
    for key, life in lives_before.items():
        assert life - EXPIRY_SLACK_MS <= lives_after[key] <= life + CLOCK_SLACK_MS, key
    assert (report.sessions, report.messages, report.users) == (3, 7, 3)
    assert await store.list_sessions(ANA) == listing_before
    assert await store.read_messages(populated["tides"], limit=100) == messages_before
    bobs = await store.read_messages(populated["bobs"], limit=100)
    assert [m.content for m in bobs.messages] == ["m1", "m2"]
    # Numbering goes on from where it was: the next message is the fourth ever stored.
    next_message = await store.append_message(populated["bobs"], Role.USER, "m3", owner=BOB)
    assert next_message.id == f"{populated['bobs']}-4"


async def test_the_backup_has_a_header_one_line_per_session_and_user_and_an_end_line(
    redis_client: aioredis.Redis, populated: dict[str, str]
) -> None:
    counts = Counts()
    lines = [line async for line in backup_lines(redis_client, counts)]

    records = [json.loads(line) for line in lines]
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in lines)
    assert records[0]["format"] == "chatbridge-backup"
    assert records[0]["version"] == 2
    assert [r["kind"] for r in records[1:]] == ["session"] * 3 + ["user"] * 3 + ["end"]
    assert records[-1] == {"kind": "end", "sessions": 3, "users": 3, "messages": 7}
    assert (counts.sessions, counts.users, counts.messages) == (3, 3, 7)
    tides = next(r for r in records if r.get("id") == populated["tides"])
    assert tides["userId"] == ANA
    assert tides["title"] == "Tides"
    assert tides["model"] == "anthropic/claude-3.5-haiku"
    assert [m["role"] for m in tides["messages"]] == [
        "user", "assistant", "system", "assistant", "assistant",
    ]  # fmt: skip
    assert tides["messages"][1]["usage"] == {
        "promptTokens": 12, "completionTokens": 34, "cost": 0.000123456789,
    }  # fmt: skip
    assert tides["expiresAt"] > records[0]["createdAt"]
    ana = next(r for r in records if r.get("kind") == "user" and r["userId"] == ANA)
    assert ana["active"] == populated["tides"]
    assert ana["model"] == "anthropic/claude-3.5-haiku"
    carol = next(r for r in records if r.get("kind") == "user" and r["userId"] == CAROL)
    assert carol["active"] is None


async def test_restoring_twice_changes_nothing_and_duplicates_no_message(
    redis_client: aioredis.Redis, populated: dict[str, str]
) -> None:
    lines = await backup_of(redis_client)
    await redis_client.flushall()

    await restore(redis_client, lines)
    once = await snapshot(redis_client)
    second = await restore(redis_client, lines)

    assert await snapshot(redis_client) == once
    assert await redis_client.llen(session_key(populated["tides"], ":messages")) == 5
    assert (second.sessions, second.users, second.newer) == (3, 3, 0)


async def test_restoring_over_the_live_data_changes_nothing(
    redis_client: aioredis.Redis, populated: dict[str, str]
) -> None:
    before = await snapshot(redis_client)

    await restore(redis_client, await backup_of(redis_client))

    assert await snapshot(redis_client) == before


async def test_a_session_continued_after_the_backup_is_kept_as_it_is_now(
    store: SessionStore, redis_client: aioredis.Redis, populated: dict[str, str]
) -> None:
    lines = await backup_of(redis_client)
    await store.append_message(populated["tides"], Role.USER, "after the backup", owner=ANA)
    await store.set_user_model(ANA, "later/choice")
    now = await snapshot(redis_client)

    report = await restore(redis_client, lines)

    assert await snapshot(redis_client) == now
    assert report.newer == 1


async def test_a_deleted_session_comes_back_and_the_users_active_session_stays(
    store: SessionStore, redis_client: aioredis.Redis, populated: dict[str, str]
) -> None:
    lines = await backup_of(redis_client)
    before = await snapshot(redis_client)
    await store.delete_session(populated["tides"], owner=ANA)  # "empty" becomes the active one

    await restore(redis_client, lines)

    after = await snapshot(redis_client)
    tides, messages = session_key(populated["tides"]), session_key(populated["tides"], ":messages")
    assert (after[tides], after[messages]) == (before[tides], before[messages])
    assert after[user_index_key(ANA)] == before[user_index_key(ANA)]
    assert after[user_state_key(ANA)]["active"] == populated["empty"]


async def test_a_backup_written_before_the_key_layout_changed_restores_into_todays_names(
    store: SessionStore, redis_client: aioredis.Redis
):
    """A file names sessions and users, never keys: 0.1.0's backups restore into today's names
    (docs/data-model.md, "Keys of the first layout")."""
    user = "telegram:22285:sessions"  # under the first layout, a state hash over another's index
    session_id = user_tag(user) + "1" * 28
    lines = [json.dumps(record) + "\n" for record in (
        {"format": "chatbridge-backup", "version": 1, "createdAt": 1_700_000_000_000},
        {"kind": "session", "id": session_id, "userId": user, "title": "Old", "model": "m/x",
         "createdAt": 1_700_000_000_000, "updatedAt": 1_700_000_001_000, "seq": 2,
         "lastActivity": 1_700_000_001_000, "expiresAt": None, "messages": [
             {"seq": 1, "role": "user", "timestamp": 1_700_000_000_500, "content": "q"},
             {"seq": 2, "role": "assistant", "timestamp": 1_700_000_001_000, "content": "a",
              "model": "m/x", "usage": {"promptTokens": 1, "completionTokens": 2}}]},
        {"kind": "user", "userId": user, "active": session_id, "model": "m/chosen",
         "expiresAt": None},
        {"kind": "end", "sessions": 1, "users": 1, "messages": 2},
    )]  # fmt: skip

    await restore(redis_client, lines)

    listing = await store.list_sessions(user)
    assert ([s.id for s in listing.sessions], listing.active_id) == ([session_id], session_id)
    assert await redis_client.hget(user_state_key(user), "model") == "m/chosen"
    page = await store.read_messages(session_id, owner=user)
    assert [m.content for m in page.messages] == ["q", "a"]


async def test_the_backup_walks_the_keyspace_with_scan_and_never_keys(
    redis_client: aioredis.Redis, populated: dict[str, str]
) -> None:
    await redis_client.config_resetstat()

    await backup_of(redis_client)

    stats = await redis_client.info("commandstats")
    assert "cmdstat_scan" in stats
    assert "cmdstat_keys" not in stats


async def test_a_restore_applies_no_user_limit(
    redis_client: aioredis.Redis, populated: dict[str, str]
) -> None:
    """An admin restores what Redis held, even past MAX_SESSIONS_PER_USER of today."""
    lines = await backup_of(redis_client)
    await redis_client.flushall()
    tight = SessionStore(redis_client, SessionLimits(max_sessions_per_user=1))

    await restore(redis_client, lines)

    assert len((await tight.list_sessions(ANA)).sessions) == 2


# --- expiry ---------------------------------------------------------------------------------


def with_expiry(lines: list[str], expires_at: int | None) -> list[str]:
    changed = []
    for line in lines:
        record = json.loads(line)
        if record.get("kind") in ("session", "user"):
            record["expiresAt"] = expires_at
        changed.append(json.dumps(record) + "\n")
    return changed


async def test_what_would_have_expired_by_now_is_skipped(
    redis_client: aioredis.Redis, populated: dict[str, str]
) -> None:
    lines = with_expiry(await backup_of(redis_client), expires_at=1_000)
    await redis_client.flushall()

    report = await restore(redis_client, lines)

    assert await snapshot(redis_client) == {}
    assert (report.sessions, report.users, report.expired) == (0, 0, 6)


async def test_with_fresh_ttl_everything_lives_session_ttl_from_now(
    redis_client: aioredis.Redis, populated: dict[str, str]
) -> None:
    before = await snapshot(redis_client)
    lines = with_expiry(await backup_of(redis_client), expires_at=1_000)
    await redis_client.flushall()

    report = await restore(redis_client, lines, fresh_ttl=True)

    assert await snapshot(redis_client) == before
    assert report.expired == 0
    for key, life in (await expiries(redis_client)).items():
        assert TTL * 1000 - EXPIRY_SLACK_MS <= life <= TTL * 1000, key


async def test_a_record_without_an_expiry_gets_session_ttl(
    redis_client: aioredis.Redis, populated: dict[str, str]
) -> None:
    lines = with_expiry(await backup_of(redis_client), expires_at=None)
    await redis_client.flushall()

    await restore(redis_client, lines)

    lives = await expiries(redis_client)
    assert all(TTL * 1000 - EXPIRY_SLACK_MS <= life <= TTL * 1000 for life in lives.values())


# --- bad files ------------------------------------------------------------------------------


def edited(lines: list[str], number: int, change: Any) -> list[str]:
    """`lines` with line `number` (1-based) replaced by change(record) (a str: the raw line)."""
    copy = list(lines)
    record = json.loads(copy[number - 1])
    new = change(record)
    copy[number - 1] = new if isinstance(new, str) else json.dumps(new) + "\n"
    return copy


def set_field(record: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    target: Any = record
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = value
    return record


CORRUPTIONS = [
    pytest.param(lambda r: '{"kind": "session", "id": ', "not valid JSON", id="cut-json"),
    pytest.param(lambda r: set_field(r, "messages.1.role", "robot"), "messages.1.role",
                 id="bad-role"),
    pytest.param(lambda r: set_field(r, "messages.0.timestamp", "noon"), "messages.0.timestamp",
                 id="bad-type"),
    pytest.param(lambda r: set_field(r, "userId", "someone-else"), "does not belong",
                 id="id-of-another-user"),
    pytest.param(lambda r: set_field(r, "messages.1.seq", 1), "seq must increase",
                 id="seq-order"),
    pytest.param(lambda r: set_field(r, "kind", "sesion"), "does not match", id="unknown-kind"),
    pytest.param(lambda r: {**r, "extra": 1}, "extra", id="unknown-field"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "named"), CORRUPTIONS)
async def test_a_bad_line_is_named_and_a_dry_run_writes_nothing(
    redis_client: aioredis.Redis, populated: dict[str, str], change: Any, named: str
) -> None:
    lines = await backup_of(redis_client)
    bad = 1 + next(i for i, line in enumerate(lines) if populated["tides"] in line)
    broken = edited(lines, bad, change)
    await redis_client.flushall()

    with pytest.raises(InvalidBackup) as raised:
        await restore(redis_client, broken, dry_run=True, source="b.jsonl")

    assert raised.value.line == bad
    assert str(raised.value).startswith(f"b.jsonl line {bad}: ")
    assert named in str(raised.value)
    assert await snapshot(redis_client) == {}


async def test_a_restore_stops_at_a_bad_line_having_written_only_the_lines_before_it(
    redis_client: aioredis.Redis, populated: dict[str, str]
) -> None:
    lines = await backup_of(redis_client)
    sessions = [i + 1 for i, line in enumerate(lines) if '"kind":"session"' in line]
    bad = sessions[1]
    broken = edited(lines, bad, lambda r: set_field(r, "messages", [{"seq": 1}]))
    before, after = json.loads(lines[sessions[0] - 1]), json.loads(lines[sessions[2] - 1])
    await redis_client.flushall()

    with pytest.raises(InvalidBackup) as raised:
        await restore(redis_client, broken)

    assert raised.value.line == bad
    assert await redis_client.exists(session_key(before["id"])) == 1
    for record in (json.loads(lines[bad - 1]), after):
        assert await redis_client.exists(session_key(record["id"])) == 0
        assert await redis_client.exists(session_key(record["id"], ":messages")) == 0
        assert await redis_client.zscore(user_index_key(record["userId"]), record["id"]) is None


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda lines: lines[:-1], "without its end line"),
        (lambda lines: lines[:3], "without its end line"),
        (lambda lines: [*lines, lines[1]], "after the end line"),
        (lambda lines: lines[:1] + lines[2:], "the end line counts 3 sessions"),
        (lambda lines: ['{"hello": 1}\n', *lines[1:]], "not a chatbridge backup"),
        (lambda lines: [lines[0].replace('"version":2', '"version":3'), *lines[1:]],
         "format version 3; this chatbridge reads 1 and 2"),
        (lambda lines: [], "empty"),
    ],
    ids=["no-end", "truncated", "after-end", "count-mismatch", "no-header", "newer-version",
         "empty"],
)  # fmt: skip
async def test_an_incomplete_or_foreign_file_is_refused(
    redis_client: aioredis.Redis, populated: dict[str, str], change: Any, named: str
) -> None:
    lines = change(await backup_of(redis_client))
    await redis_client.flushall()

    with pytest.raises(InvalidBackup, match=named):
        await restore(redis_client, lines, dry_run=True)

    assert await snapshot(redis_client) == {}


async def test_a_session_id_held_by_another_user_is_refused_and_left_alone(
    redis_client: aioredis.Redis, store: SessionStore, populated: dict[str, str]
) -> None:
    lines = await backup_of(redis_client)
    await redis_client.hset(session_key(populated["tides"]), "userId", "cli:mallory")
    before = await snapshot(redis_client)

    with pytest.raises(InvalidBackup, match="another user"):
        await restore(redis_client, lines)

    tides = session_key(populated["tides"])
    assert await redis_client.hgetall(tides) == before[tides]


# --- scale ----------------------------------------------------------------------------------


def generated_backup(sessions: int, messages_each: int) -> list[str]:
    """A valid backup of `sessions` sessions of different users, built without Redis."""
    lines = [json.dumps({"format": "chatbridge-backup", "version": 1, "createdAt": 0}) + "\n"]
    text = "x" * 300
    for number in range(sessions):
        user = f"load:{number}"
        session_id = new_session_id(user)
        messages = [
            {"seq": seq, "role": "user" if seq % 2 else "assistant", "timestamp": 1_000 + seq,
             "content": f"{number}-{seq} {text}"}
            for seq in range(1, messages_each + 1)
        ]  # fmt: skip
        record = {
            "kind": "session", "id": session_id, "userId": user, "title": f"T{number}",
            "model": "test/model", "createdAt": 1_000, "updatedAt": 2_000, "seq": messages_each,
            "lastActivity": 2_000, "expiresAt": None, "messages": messages,
        }  # fmt: skip
        lines.append(json.dumps(record) + "\n")
    end = {"kind": "end", "sessions": sessions, "users": 0, "messages": sessions * messages_each}
    return [*lines, json.dumps(end) + "\n"]


async def test_a_backup_of_5000_sessions_streams_in_constant_memory(
    redis_client: aioredis.Redis,
) -> None:
    sessions, messages_each = 5_000, 4
    report = await restore(redis_client, generated_backup(sessions, messages_each))
    assert report.sessions == sessions

    total_bytes = lines = 0
    tracemalloc.start()
    try:
        async for line in backup_lines(redis_client):
            total_bytes += len(line)
            lines += 1
            if lines == sessions // 5:
                _, peak_at_a_fifth = tracemalloc.get_traced_memory()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert lines == sessions + 2
    assert total_bytes > 6_000_000
    # A list of every line would grow five-fold from a fifth of the way to the end; a stream
    # holds one batch of BATCH_SIZE sessions at a time, whatever the number of sessions.
    assert peak < 1.5 * peak_at_a_fifth, (peak, peak_at_a_fifth, BATCH_SIZE)
    assert peak < total_bytes / 4, (peak, total_bytes)


# --- the message encoding -------------------------------------------------------------------


BASIS = EntryBasis(1_700_000_000_000, "m/x")
FILES = {"9-1": b"\x00\xff\x80", "9-2": b"", "10-1": b"ok", "11-1": b"%PDF"}
IMAGE_AND_PDF = [[1, "i", "image/jpeg", "a.jpg", 3], [2, "d", "application/pdf", "b.pdf", 0]]
VOICE = [[1, "a", "audio/ogg", "voice 🌊.ogg", 2]]
READ_PDF = [[1, "f", "application/pdf", "scan.pdf", 4]]


def counted(entry: list[Any]) -> list[Any]:
    """The entry with its kind as the store writes it: its role and its content's tokens."""
    return [entry[0], entry[1] + TOKENS_UNIT * count_tokens(entry[3]), *entry[2:]]


# Each entry as written today against BASIS (its kind's tokens added by `counted`), beside the
# same message in the first layout.
UNCOUNTED_ENTRIES = [
    ([1, 0, 0, "hi"], [1, "u", 1_700_000_000_000, "hi"]),
    ([2, 1, 1, "hello"], [2, "a", 1_700_000_000_001, "hello", "m/x"]),
    ([3, 1, 2, "hello", 1, 2, None, ""], [3, "a", 1_700_000_000_002, "hello", "", 1, 2]),
    (
        [4, 1, 3, "hello", 10, 20, 0.0001],
        [4, "a", 1_700_000_000_003, "hello", "m/x", 10, 20, 0.0001],
    ),
    ([5, 2, 4, 'ünï 🌊 "/\\'], [5, "s", 1_700_000_000_004, 'ünï 🌊 "/\\']),
    # Stopped answers (/stop): usage unknown, or reported before the stop.
    (
        [6, 3, 5, "half an ans"],
        [6, "a", 1_700_000_000_005, "half an ans", "m/x", None, None, None, 1],
    ),
    ([7, 3, 6, "half", 10, 2], [7, "a", 1_700_000_000_006, "half", "m/x", 10, 2, None, 1]),
    ([8, 3, 7, "half", 10, 2, 0.5], [8, "a", 1_700_000_000_007, "half", "m/x", 10, 2, 0.5, 1]),
    # A user message with files (format version 2), kept or not.
    (
        [9, 0, 8, "", None, None, None, None, IMAGE_AND_PDF],
        [9, "u", 1_700_000_000_008, "", None, None, None, None, None, IMAGE_AND_PDF],
    ),
    (
        [10, 0, 9, "q", None, None, None, None, VOICE],
        [10, "u", 1_700_000_000_009, "q", None, None, None, None, None, VOICE],
    ),
    # A PDF the model reads itself (PDF_ENGINE=openrouter).
    (
        [11, 0, 10, "read it", None, None, None, None, READ_PDF],
        [11, "u", 1_700_000_000_010, "read it", None, None, None, None, None, READ_PDF],
    ),
    # Another model than the basis's, with and without usage; a time before createdAt.
    (
        [12, 1, 11, "other", 5, 6, 0.1, "m/y"],
        [12, "a", 1_700_000_000_011, "other", "m/y", 5, 6, 0.1],
    ),
    ([13, 1, 12, "import", None, None, None, "m/y"], [13, "a", 1_700_000_000_012, "import", "m/y"]),
    ([14, 0, -5, "early"], [14, "u", 1_699_999_999_995, "early"]),
    # A user message added with a model (HTTP API).
    ([15, 0, 13, "noted", None, None, None, "m/x"], [15, "u", 1_700_000_000_013, "noted", "m/x"]),
]
ENTRIES = [(counted(entry), first_layout) for entry, first_layout in UNCOUNTED_ENTRIES]


@pytest.mark.parametrize("entry", [entry for entry, _ in UNCOUNTED_ENTRIES])
def test_a_message_stored_before_counts_were_is_restored_with_its_count(
    entry: list[Any],
) -> None:
    raw = json.dumps(entry)

    assert json.loads(stored_entry(message_record(raw, BASIS, FILES), BASIS)) == counted(entry)


@pytest.mark.parametrize("entry", [entry for entry, _ in ENTRIES])
def test_a_stored_message_survives_the_backup_encoding_unchanged(entry: list[Any]) -> None:
    raw = json.dumps(entry)

    assert json.loads(stored_entry(message_record(raw, BASIS, FILES), BASIS)) == entry


@pytest.mark.parametrize(("entry", "first_layout"), ENTRIES)
def test_an_entry_of_the_first_layout_reads_as_its_lean_twin(
    entry: list[Any], first_layout: list[Any]
) -> None:
    lean = message_record(json.dumps(entry), BASIS, FILES)
    first = message_record(json.dumps(first_layout), BASIS, FILES)

    assert first == lean
    assert json.loads(stored_entry(first, BASIS)) == entry
