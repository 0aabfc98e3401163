"""Backup format version 2 (core/backup/) on a real Redis: a session's files travel in its line
and come back as the live store held them.

The oracle is what the store answers (listings with their kept flags, each file's bytes through
`read_attachment`, the images a later turn sends the fake model) and the documented key layout
(docs/data-model.md, "Attachments": the `:files` hash, the session's `fileBytes` and `creator`),
read with SCAN and plain commands.
"""

from __future__ import annotations

import base64
import json
import tracemalloc
from collections.abc import Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.backup.lines import backup_lines, restore_lines
from core.chat import ChatService, TurnSettings
from core.conversation import AttachmentKind, NewAttachment
from core.errors import AttachmentGone, InvalidBackup
from core.llm.openrouter import OpenRouterClient
from core.sessions.codec import as_bytes
from core.sessions.keys import new_session_id, session_key
from core.sessions.store import SessionStore
from tests.fakes.openrouter_server import FakeOpenRouter
from tests.integration.round_trips import CountingConnection, counting_client  # noqa: F401
from tests.integration.store_turns import make_store
from tests.integration.test_attachments_store import sent_images

pytestmark = pytest.mark.all_redis_topologies

TTL = 3600
EXPIRY_SLACK_MS = 5_000  # the round trip takes a moment: remaining lifetimes shrink by it
SPACE, PERSON = "telegram:chat:-1001", "telegram:7"  # a shared chat, and who started the session
BUDGET = 600  # MAX_ATTACHMENT_BYTES_PER_SESSION of these tests
# Every byte value, and sequences that are not UTF-8: the bytes must come back exactly.
BINARY = bytes(range(256)) + b"\xff\xfe\x00\xc3\x28\xed\xa0\x80"
PDF = b"%PDF-1.4\n" + bytes(range(255, -1, -1))
OLD, KEPT = b"a" * 100, b"c" * 50


def image(data: bytes, name: str) -> NewAttachment:
    return NewAttachment(AttachmentKind.IMAGE, "image/jpeg", name, data)


def document(data: bytes, name: str) -> NewAttachment:
    return NewAttachment(AttachmentKind.DOCUMENT, "application/pdf", name, data)


async def talk(
    chat: ChatService[SessionStore], text: str, files: Sequence[NewAttachment] = ()
) -> None:
    async with chat.turn(text, user_id=SPACE, attachments=files) as turn:
        assert [delta async for delta in turn.deltas()]


@pytest.fixture
def files_store(redis_client: aioredis.Redis) -> SessionStore:
    return make_store(redis_client, max_attachment_bytes_per_session=BUDGET)


@pytest.fixture
def files_chat(
    files_store: SessionStore, model_client: OpenRouterClient
) -> ChatService[SessionStore]:
    return ChatService(files_store, model_client, TurnSettings("", "test/model"))


@pytest.fixture
async def with_files(files_store: SessionStore, files_chat: ChatService[SessionStore]) -> str:
    """A shared chat's session with an image the budget dropped, a document and two images
    kept (fileBytes 579 of 600); returns its id."""
    session = await files_store.create_session(
        SPACE, title="Files", default_model="test/model", creator=PERSON
    )
    await talk(files_chat, "an old picture", [image(OLD, "old.jpg")])
    await talk(files_chat, "a document", [document(PDF, "notes.pdf")])
    # 100 + 265 held, 314 more: past 600, so old.jpg goes.
    await talk(files_chat, "two pictures", [image(BINARY, "all-bytes.jpg"), image(KEPT, "c.jpg")])
    return session.id


async def backup_of(redis: aioredis.Redis) -> list[str]:
    return [line async for line in backup_lines(redis)]


async def restore(redis: aioredis.Redis, lines: Sequence[str], **options: Any) -> Any:
    return await restore_lines(redis, lines, ttl_seconds=TTL, **options)


async def keyspace(redis: aioredis.Redis) -> dict[str, Any]:
    """Every key a backup keeps, as the data model lays it out, `:files` bytes included (turn
    logs, token counts and the `seen` mark are not kept)."""
    state: dict[str, Any] = {}
    for pattern in ("session:*", "user:sessions:*", "user:state:*"):
        async for key in redis.scan_iter(match=pattern, count=500):
            kind = await redis.type(key)
            if kind == "hash":
                state[key] = {f: as_bytes(v) for f, v in (await redis.hgetall(key)).items()}
            elif kind == "list":
                state[key] = [json.loads(entry) for entry in await redis.lrange(key, 0, -1)]
            elif kind == "zset":
                state[key] = await redis.zrange(key, 0, -1, withscores=True)
    return state


def line_of_session(lines: list[str], session_id: str) -> int:
    """The 1-based number of the session's line."""
    return 1 + next(i for i, line in enumerate(lines) if f'"id":"{session_id}"' in line)


# --- round trip -----------------------------------------------------------------------------


async def test_files_restored_into_an_empty_redis_come_back_byte_identical_and_listed_alike(
    files_store: SessionStore, redis_client: aioredis.Redis, with_files: str
) -> None:
    before = await keyspace(redis_client)
    listing = await files_store.read_messages(with_files, limit=100)
    files_key = session_key(with_files, ":files")
    life = await redis_client.pttl(files_key)

    lines = await backup_of(redis_client)
    await redis_client.flushall()
    report = await restore(redis_client, lines)

    assert await keyspace(redis_client) == before
    assert (report.sessions, report.messages) == (1, 6)
    assert await files_store.read_messages(with_files, limit=100) == listing
    listed = [a for m in listing.messages for a in m.attachments]
    assert [(a.name, a.kept) for a in listed] == [
        ("old.jpg", False), ("notes.pdf", True), ("all-bytes.jpg", True), ("c.jpg", True),
    ]  # fmt: skip
    for attachment, original in zip(listed[1:], (PDF, BINARY, KEPT), strict=True):
        found, data = await files_store.read_attachment(with_files, attachment.id)
        assert (found, data) == (attachment, original)
    with pytest.raises(AttachmentGone):
        await files_store.read_attachment(with_files, listed[0].id)
    session = await redis_client.hgetall(session_key(with_files))
    assert (session["fileBytes"], session["creator"]) == ("579", PERSON)
    # The files live exactly as long as their session, as the live store has them.
    assert life - EXPIRY_SLACK_MS <= await redis_client.pttl(files_key) <= life
    assert await redis_client.pexpiretime(files_key) == await redis_client.pexpiretime(
        session_key(with_files)
    )


async def test_a_restored_session_sends_its_images_to_the_model_and_keeps_its_budget(
    files_chat: ChatService[SessionStore],
    files_store: SessionStore,
    redis_client: aioredis.Redis,
    fake_openrouter: FakeOpenRouter,
    with_files: str,
) -> None:
    lines = await backup_of(redis_client)
    await redis_client.flushall()
    await restore(redis_client, lines)

    await talk(files_chat, "and those pictures?")
    assert sent_images(fake_openrouter) == [BINARY, KEPT]

    # 579 held: 21 more bytes reach the budget exactly and drop nothing...
    await talk(files_chat, "at the budget", [image(b"d" * 21, "d.jpg")])
    assert await redis_client.hget(session_key(with_files), "fileBytes") == "600"
    # ...one more passes it: the oldest file kept, the document, goes.
    await talk(files_chat, "one byte over", [image(b"e", "e.jpg")])
    listed = [a for m in (await files_store.read_messages(with_files)).messages
              for a in m.attachments]  # fmt: skip
    assert [(a.name, a.kept) for a in listed] == [
        ("old.jpg", False), ("notes.pdf", False), ("all-bytes.jpg", True), ("c.jpg", True),
        ("d.jpg", True), ("e.jpg", True),
    ]  # fmt: skip
    assert await redis_client.hget(session_key(with_files), "fileBytes") == "336"


async def test_restoring_files_twice_changes_nothing(
    redis_client: aioredis.Redis, with_files: str
) -> None:
    lines = await backup_of(redis_client)
    await redis_client.flushall()

    await restore(redis_client, lines)
    once = await keyspace(redis_client)
    await restore(redis_client, lines)

    assert await keyspace(redis_client) == once


async def test_the_line_describes_every_file_and_carries_the_bytes_of_those_kept(
    redis_client: aioredis.Redis, with_files: str
) -> None:
    lines = await backup_of(redis_client)

    assert json.loads(lines[0])["version"] == 2
    record = json.loads(lines[line_of_session(lines, with_files) - 1])
    assert (record["creator"], record["fileBytes"]) == (PERSON, 579)
    old, pdf, binary = (record["messages"][i]["attachments"] for i in (0, 2, 4))
    assert old == [{"n": 1, "kind": "image", "mediaType": "image/jpeg", "name": "old.jpg",
                    "size": 100, "data": None}]  # fmt: skip
    assert pdf == [{"n": 1, "kind": "document", "mediaType": "application/pdf",
                    "name": "notes.pdf", "size": len(PDF),
                    "data": base64.b64encode(PDF).decode()}]  # fmt: skip
    assert [(f["n"], f["name"], base64.b64decode(f["data"])) for f in binary] == [
        (1, "all-bytes.jpg", BINARY), (2, "c.jpg", KEPT),
    ]  # fmt: skip
    # Answers and messages without files carry no list.
    assert all("attachments" not in record["messages"][i] for i in (1, 3, 5))


async def test_a_session_without_files_and_its_owner_as_creator_carries_nulls(
    store: SessionStore, redis_client: aioredis.Redis
) -> None:
    session = await store.create_session("cli:ana", title="Plain", default_model="test/model")

    lines = await backup_of(redis_client)

    record = json.loads(lines[line_of_session(lines, session.id) - 1])
    assert (record["creator"], record["fileBytes"]) == (None, None)
    await redis_client.flushall()
    await restore(redis_client, lines)
    assert sorted(await redis_client.hkeys(session_key(session.id))) == [
        "createdAt", "model", "seq", "title", "updatedAt", "userId",
    ]  # fmt: skip
    assert not await redis_client.exists(session_key(session.id, ":files"))


# --- version 1 ------------------------------------------------------------------------------


def version_1_backup(user: str, session_id: str, **extra: Any) -> list[str]:
    session = {
        "kind": "session", "id": session_id, "userId": user, "title": "Old", "model": "test/model",
        "createdAt": 1_700_000_000_000, "updatedAt": 1_700_000_001_000, "seq": 2,
        "lastActivity": 1_700_000_001_000, "expiresAt": None, "messages": [
            {"seq": 1, "role": "user", "timestamp": 1_700_000_000_500, "content": "q"},
            {"seq": 2, "role": "assistant", "timestamp": 1_700_000_001_000, "content": "a",
             "model": "test/model"}],
        **extra,
    }  # fmt: skip
    records = (
        {"format": "chatbridge-backup", "version": 1, "createdAt": 1_700_000_000_000},
        session,
        {"kind": "end", "sessions": 1, "users": 0, "messages": 2},
    )
    return [json.dumps(record) + "\n" for record in records]


async def test_a_version_1_file_restores_and_its_session_then_takes_files(
    files_store: SessionStore,
    files_chat: ChatService[SessionStore],
    redis_client: aioredis.Redis,
    fake_openrouter: FakeOpenRouter,
) -> None:
    session_id = new_session_id(SPACE)

    await restore(redis_client, version_1_backup(SPACE, session_id))

    assert await redis_client.hkeys(session_key(session_id)) == [
        "userId", "title", "model", "createdAt", "updatedAt", "seq", "entryModel",
    ]  # fmt: skip
    assert not await redis_client.exists(session_key(session_id, ":files"))
    page = await files_store.read_messages(session_id)
    assert [(m.content, m.attachments) for m in page.messages] == [("q", ()), ("a", ())]
    await files_store.switch_session(SPACE, session_id)
    await talk(files_chat, "now a picture", [image(BINARY, "p.jpg")])
    assert sent_images(fake_openrouter) == [BINARY]
    assert await redis_client.hget(session_key(session_id), "fileBytes") == str(len(BINARY))


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"creator": PERSON}, "creator: not in format version 1"),
        ({"fileBytes": 0}, "fileBytes: not in format version 1"),
    ],
    ids=["creator", "fileBytes"],
)
async def test_a_version_1_file_with_fields_of_version_2_is_refused(
    redis_client: aioredis.Redis, extra: dict[str, Any], named: str
) -> None:
    lines = version_1_backup(SPACE, new_session_id(SPACE), **extra)

    with pytest.raises(InvalidBackup, match=named) as raised:
        await restore(redis_client, lines)

    assert raised.value.line == 2


async def test_a_version_1_file_with_attachments_is_refused(redis_client: aioredis.Redis) -> None:
    lines = version_1_backup(SPACE, new_session_id(SPACE))
    record = json.loads(lines[1])
    record["messages"][0]["attachments"] = [
        {"n": 1, "kind": "image", "mediaType": "image/jpeg", "name": "p.jpg", "size": 1,
         "data": "eA=="}
    ]  # fmt: skip
    lines[1] = json.dumps(record) + "\n"

    with pytest.raises(InvalidBackup, match="attachments: not in format version 1"):
        await restore(redis_client, lines)


# --- bad files ------------------------------------------------------------------------------


def changed_file(record: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    """The record with `field` of the document's file (message 2, the first kept) set."""
    record["messages"][2]["attachments"][0][field] = value
    return record


CORRUPTIONS = [
    pytest.param(lambda r: changed_file(r, "data", "not base64!"),
                 "messages.2.attachments.0.data: not valid base64", id="not-base64"),
    pytest.param(lambda r: changed_file(r, "data", base64.b64encode(PDF).decode()[:-2]),
                 "messages.2.attachments.0.data: not valid base64", id="cut-base64"),
    pytest.param(lambda r: changed_file(r, "data", " " + base64.b64encode(PDF).decode()),
                 "messages.2.attachments.0.data: not valid base64", id="stray-space"),
    pytest.param(lambda r: changed_file(r, "size", len(PDF) + 1),
                 f"size: {len(PDF) + 1} bytes, but its data holds {len(PDF)}", id="size-above"),
    pytest.param(lambda r: changed_file(r, "size", len(PDF) - 1),
                 f"size: {len(PDF) - 1} bytes, but its data holds {len(PDF)}", id="size-below"),
    pytest.param(lambda r: changed_file(r, "kind", "video"), "messages.2.attachments.0.kind",
                 id="unknown-kind"),
    pytest.param(lambda r: {**r, "fileBytes": 580},
                 "fileBytes: 580, but the files kept add up to 579 bytes", id="file-bytes-above"),
    pytest.param(lambda r: {**r, "fileBytes": 578},
                 "fileBytes: 578, but the files kept add up to 579 bytes", id="file-bytes-below"),
    pytest.param(lambda r: {**r, "fileBytes": None},
                 "fileBytes: None, but the files kept add up to 579 bytes", id="file-bytes-gone"),
    pytest.param(lambda r: set_second_n(r, 1), "n must increase", id="n-repeated"),
]  # fmt: skip


def set_second_n(record: dict[str, Any], n: int) -> dict[str, Any]:
    record["messages"][4]["attachments"][1]["n"] = n
    return record


@pytest.mark.parametrize(("change", "named"), CORRUPTIONS)
async def test_a_corrupted_file_is_refused_naming_the_line_and_nothing_is_written(
    redis_client: aioredis.Redis, with_files: str, change: Any, named: str
) -> None:
    lines = await backup_of(redis_client)
    bad = line_of_session(lines, with_files)
    lines[bad - 1] = json.dumps(change(json.loads(lines[bad - 1]))) + "\n"
    await redis_client.flushall()

    with pytest.raises(InvalidBackup) as raised:
        await restore(redis_client, lines, dry_run=True, source="b.jsonl")

    assert raised.value.line == bad
    assert str(raised.value).startswith(f"b.jsonl line {bad}: ")
    assert named in str(raised.value)
    assert await keyspace(redis_client) == {}


# --- streaming ------------------------------------------------------------------------------


def backup_with_files(sessions: int, file_size: int) -> list[str]:
    """A valid version 2 backup of `sessions` sessions with one file of `file_size` bytes each,
    built without Redis."""
    lines = [json.dumps({"format": "chatbridge-backup", "version": 2, "createdAt": 0}) + "\n"]
    for number in range(sessions):
        user = f"load:{number}"
        data = bytes([number % 256]) * file_size
        message = {
            "seq": 1, "role": "user", "timestamp": 1_000, "content": f"picture {number}",
            "attachments": [{"n": 1, "kind": "image", "mediaType": "image/jpeg", "name": "p.jpg",
                             "size": file_size, "data": base64.b64encode(data).decode()}],
        }  # fmt: skip
        record = {
            "kind": "session", "id": new_session_id(user), "userId": user, "creator": None,
            "title": f"T{number}", "model": "test/model", "createdAt": 1_000, "updatedAt": 2_000,
            "seq": 1, "lastActivity": 2_000, "expiresAt": None, "fileBytes": file_size,
            "messages": [message],
        }  # fmt: skip
        lines.append(json.dumps(record) + "\n")
    end = {"kind": "end", "sessions": sessions, "users": 0, "messages": sessions}
    return [*lines, json.dumps(end) + "\n"]


SESSIONS, FILE_SIZE = 24, 512 * 1024
PART_BYTES = 2 * FILE_SIZE  # two sessions' files at a time


async def test_files_are_backed_up_and_restored_a_few_sessions_at_a_time(
    redis_client: aioredis.Redis,
) -> None:
    """All 24 sessions are one SCAN batch: only the cut by file bytes keeps memory to a few."""
    lines = backup_with_files(SESSIONS, FILE_SIZE)
    total_bytes = sum(len(line) for line in lines)

    tracemalloc.start()
    try:
        report = await restore(redis_client, lines, file_bytes_per_batch=PART_BYTES)
        _, restore_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        backed_up = []
        async for line in backup_lines(redis_client, file_bytes_per_batch=PART_BYTES):
            backed_up.append(len(line))
        _, backup_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert report.sessions == SESSIONS
    assert len(backed_up) == SESSIONS + 2
    assert sum(backed_up) > SESSIONS * FILE_SIZE * 4 / 3
    # A file is held a few times over on its way (lines.py, FILE_BYTES_PER_BATCH); every
    # session's files at once would be the whole 17 MB of lines, several times over.
    assert restore_peak < 6 * PART_BYTES < total_bytes / 2, (restore_peak, total_bytes)
    assert backup_peak < 6 * PART_BYTES, (backup_peak, total_bytes)


async def test_a_backup_part_holds_sessions_whose_files_add_up_to_at_most_the_limit(
    counting_client: aioredis.Redis,  # noqa: F811
    redis_topology: str,
) -> None:
    if redis_topology != "single":
        pytest.skip("counted on the single server's client")
    await restore(counting_client, backup_with_files(3, 100))

    async def round_trips(limit: int) -> int:
        CountingConnection.writes = 0
        lines = [line async for line in backup_lines(counting_client, file_bytes_per_batch=limit)]
        assert len(lines) == 5
        return CountingConnection.writes

    await round_trips(300)  # loads the scripts
    at_the_limit = await round_trips(300)  # all three files: one part
    assert await round_trips(301) == at_the_limit
    assert await round_trips(299) == at_the_limit + 1  # two, then one
    assert await round_trips(100) == at_the_limit + 2  # one each
    assert await round_trips(99) == at_the_limit + 2  # a session alone may pass the limit


async def test_a_restore_writes_its_pending_sessions_once_their_files_reach_the_limit(
    counting_client: aioredis.Redis,  # noqa: F811
    redis_topology: str,
) -> None:
    if redis_topology != "single":
        pytest.skip("counted on the single server's client")
    lines = backup_with_files(3, 100)
    await restore(counting_client, lines)  # loads the scripts

    async def round_trips(limit: int) -> int:
        CountingConnection.writes = 0
        await restore(counting_client, lines, file_bytes_per_batch=limit)
        return CountingConnection.writes

    below = await round_trips(201)  # 300 reach it only with the last: one pipeline
    assert await round_trips(200) == below + 1  # the first two reach it, then the last
    assert await round_trips(199) == below + 1
    assert await round_trips(100) == below + 2  # each alone reaches it
