"""Every session as JSON lines, and back (`chatbridge backup FILE` / `chatbridge restore FILE`).

The lines (core/backup/format.py): a header with the format version, one line per session with
all its messages (at most MAX_MESSAGES_PER_SESSION) and the files it still keeps, so a restore
writes each session whole or not at all; one per user state (active session, /model choice);
an end line with the counts. Rate-limit logs and daily token counters are not kept.

Writing walks the keyspace with SCAN (never KEYS) in batches of BATCH_SIZE keys, reads each
batch with one pipeline of read-only scripts and yields lines as it goes: memory holds one
batch, whatever the number of sessions. Files would make a batch of 200 sessions gigabytes, so
a batch is read in parts of at most FILE_BYTES_PER_BATCH of files (by each session's
`fileBytes`, read in one more pipelined round trip; a session alone may pass it, and files
stored between the two reads are not counted), and a restore writes its pending sessions
whenever their files reach it. SCAN may return a key twice; the line is then written twice,
which a restore takes as the same session twice.

Restoring checks each line before writing it and writes each line with one script, so a bad
line stops the restore at that line with nothing of it written (`dry_run` checks a whole file
first). Restoring is idempotent: a session is written as the file has it unless Redis holds it
with more messages ever stored (a later state, kept as it is); a user's active session and
model fill only what Redis lacks. Limits (MAX_SESSIONS_PER_USER, MAX_MESSAGES_PER_SESSION,
MAX_MESSAGE_LENGTH, MAX_ATTACHMENT_BYTES_PER_SESSION) are not applied: a restore puts back what
Redis held. Each key gets the expiry instant the backup recorded (a session's files the
session's), and what would have expired by now is skipped; with `fresh_ttl`, everything
restored lives SESSION_TTL from now instead. Sessions of a version 1 file have no files.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from core.backup.format import (
    FORMAT,
    VERSION,
    Counts,
    EndRecord,
    Header,
    SessionRecord,
    UserRecord,
    check_end,
    check_header,
    line_of,
    message_record,
    parse_record,
    stored_entry,
    stored_files,
)
from core.errors import InvalidBackup
from core.sessions.batches import REDIS_ERRORS, ScriptBatches, scanned_keys
from core.sessions.codec import EntryBasis, as_bytes
from core.sessions.keys import SESSION_ID_PATTERN, STATE, session_key, user_state_key, user_tag
from core.sessions.scripts import store_error
from core.storage.connection import RedisClient
from core.summaries import summary_tokens
from core.tokens import count_tokens

BATCH_SIZE = 200
# Two sessions full at the default MAX_ATTACHMENT_BYTES_PER_SESSION (8 MiB). A file's bytes are
# held about six times over on their way to a line (the reply's text, the bytes, base64, the
# line), so a backup or restore needs about 100 MB at most, whatever the number of sessions.
FILE_BYTES_PER_BATCH = 16 * 1024 * 1024
SESSION_KEYS = "session:*"
USER_KEYS = f"user:{STATE}:{{*"
USER_STATE_KEY = re.compile(
    rf"user:{STATE}:\{{(?P<tag>[0-9a-f]{{4}})\}}:(?P<user_id>.+)", re.DOTALL
)
SCRIPT_NAMES = ("backup_session", "backup_user", "restore_session", "restore_user")


# --- the lines -----------------------------------------------------------------------------


# --- backup ---------------------------------------------------------------------------------


async def backup_lines(
    redis: RedisClient,
    counts: Counts | None = None,
    *,
    file_bytes_per_batch: int = FILE_BYTES_PER_BATCH,
) -> AsyncIterator[str]:
    """The backup, line by line: a header, every session, every user state, an end line."""
    counts = counts if counts is not None else Counts()
    scripts = ScriptBatches(redis, SCRIPT_NAMES)
    yield line_of(Header(format=FORMAT, version=VERSION, created_at=await scripts.server_time_ms()))
    async for batch in scanned_keys(redis, SESSION_KEYS, BATCH_SIZE, key_type="hash"):
        ids = [sid for key in batch if (sid := _session_id_in(key)) is not None]
        sizes = await _file_bytes(redis, ids)
        for part in _parts(ids, sizes, file_bytes_per_batch):
            calls = [("backup_session", session_key(sid), (sid[:4], sid)) for sid in part]
            for record in _session_records(part, await scripts.run_batch(calls)):
                counts.add(record)
                yield line_of(record)
    async for batch in scanned_keys(redis, USER_KEYS, BATCH_SIZE, key_type="hash"):
        users = [found for key in batch if (found := _user_in(key)) is not None]
        calls = [("backup_user", user_state_key(uid), (tag, uid)) for tag, uid in users]
        for (_, uid), reply in zip(users, await scripts.run_batch(calls), strict=True):
            if reply:
                user = _user_record(uid, reply)
                counts.add(user)
                yield line_of(user)
    end = EndRecord(kind="end", sessions=counts.sessions, users=counts.users,
                    messages=counts.messages)  # fmt: skip
    yield line_of(end)


async def _file_bytes(redis: RedisClient, ids: list[str]) -> list[int]:
    """Each session's `fileBytes` (0 without), in one pipelined round trip."""
    if not ids:
        return []
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for sid in ids:
                pipe.hget(session_key(sid), "fileBytes")
            found = await pipe.execute()
    except REDIS_ERRORS as exc:
        raise store_error(exc) from exc
    return [int(size) if size else 0 for size in found]


def _parts(ids: list[str], sizes: list[int], limit: int) -> Iterator[list[str]]:
    """`ids` in order, cut so that a part's files add up to at most `limit` bytes (or are one
    session's)."""
    part: list[str] = []
    held = 0
    for sid, size in zip(ids, sizes, strict=True):
        if part and held + size > limit:
            yield part
            part, held = [], 0
        part.append(sid)
        held += size
    if part:
        yield part


def _session_records(ids: list[str], replies: list[Any]) -> Iterator[SessionRecord]:
    """The replies are let go once read, before the next part's files come."""
    for sid, reply in zip(ids, replies, strict=True):
        if reply:  # else it ended between the scan and the read
            yield _session_record(sid, reply)


def _session_id_in(key: str) -> str | None:
    """The id of a session hash key `session:{T}:<sid>`; None for any other hash."""
    prefix, _, session_id = key.rpartition(":")
    if SESSION_ID_PATTERN.match(session_id) and prefix == f"session:{{{session_id[:4]}}}":
        return session_id
    return None


def _user_in(key: str) -> tuple[str, str] | None:
    """(tag, userId) of a user state hash key `user:state:{T}:<userId>`; None for any other."""
    found = USER_STATE_KEY.fullmatch(key)
    if found and user_tag(found["user_id"]) == found["tag"]:
        return found["tag"], found["user_id"]
    return None


def _session_record(session_id: str, reply: list[Any]) -> SessionRecord:
    """backup_session.lua's reply: the session's fields, its files (id, bytes), its messages."""
    user_id, title, model, created, updated, seq, expires, score, creator, file_bytes = reply[:10]
    system_prompt, summary, summary_up_to, told_summary, entry_model = reply[10:15]
    files_end = 16 + int(reply[15])
    pairs = iter(reply[16:files_end])
    files = {file_id: as_bytes(data) for file_id, data in zip(pairs, pairs, strict=True)}
    return SessionRecord(
        kind="session",
        id=session_id,
        user_id=user_id,
        creator=creator or None,
        title=title,
        model=model,
        created_at=int(created),
        updated_at=int(updated),
        seq=int(seq),
        last_activity=int(float(score)) if score != "" else None,
        expires_at=int(expires) if expires != "" else None,
        file_bytes=int(file_bytes) if file_bytes != "" else None,
        system_prompt=system_prompt or None,
        summary=summary or None,
        summary_up_to=int(summary_up_to) if summary else None,
        told_summary=told_summary != "",
        entry_model=entry_model if entry_model not in ("", model) else None,
        messages=[
            message_record(raw, EntryBasis(int(created), entry_model), files)
            for raw in reply[files_end:]
        ],
    )


def _user_record(user_id: str, reply: list[Any]) -> UserRecord:
    active, model, expires = reply
    return UserRecord(
        kind="user",
        user_id=user_id,
        active=active or None,
        model=model or None,
        expires_at=int(expires) if expires != "" else None,
    )


# --- restore --------------------------------------------------------------------------------


@dataclass
class RestoreReport:
    sessions: int = 0  # written as the file has them (with dry_run: that would be written)
    messages: int = 0
    users: int = 0
    expired: int = 0  # sessions and users whose expiry had passed: skipped
    newer: int = 0  # sessions Redis holds in a later state: kept


@dataclass(frozen=True)
class _Pending:
    line: int
    record: SessionRecord | UserRecord


async def restore_lines(
    redis: RedisClient,
    lines: Iterable[str | bytes],
    *,
    ttl_seconds: int,
    fresh_ttl: bool = False,
    dry_run: bool = False,
    source: str = "backup",
    file_bytes_per_batch: int = FILE_BYTES_PER_BATCH,
) -> RestoreReport:
    """Restore a backup from its lines, in order; `dry_run`: only check them.

    Raises InvalidBackup naming the first bad line; the lines before it are restored, nothing
    of it or after it is. Check a file with `dry_run` first to write nothing at all.
    """
    writer = _Writer(
        ScriptBatches(redis, SCRIPT_NAMES), ttl_seconds=ttl_seconds, fresh_ttl=fresh_ttl,
        source=source, dry_run=dry_run, file_bytes_per_batch=file_bytes_per_batch,
    )  # fmt: skip
    seen = Counts()
    end: EndRecord | None = None
    number = version = 0
    try:
        for number, raw in enumerate(lines, start=1):
            where = f"{source} line {number}"
            if number == 1:
                version = check_header(raw, where)
            elif isinstance(
                record := parse_record(raw, where, number, version=version, after=end), EndRecord
            ):
                end = record
            else:
                seen.add(record)
                await writer.add(_Pending(number, record))
    except InvalidBackup:
        await writer.flush()  # what came before the bad line
        raise
    await writer.flush()
    check_end(end, seen, number, source)
    return writer.report


class _Writer:
    """Writes validated lines BATCH_SIZE at a time (fewer once their files reach
    file_bytes_per_batch), one pipeline of scripts per batch."""

    def __init__(
        self, scripts: ScriptBatches, *, ttl_seconds: int, fresh_ttl: bool, source: str,
        dry_run: bool, file_bytes_per_batch: int,
    ) -> None:  # fmt: skip
        self._scripts = scripts
        self._ttl_seconds = ttl_seconds
        self._fresh_ttl = fresh_ttl
        self._source = source
        self._dry_run = dry_run
        self._file_bytes_per_batch = file_bytes_per_batch
        self._pending: list[_Pending] = []
        self._pending_file_bytes = 0
        self.report = RestoreReport()

    async def add(self, item: _Pending) -> None:
        self._pending.append(item)
        if isinstance(item.record, SessionRecord):
            self._pending_file_bytes += item.record.file_bytes or 0
        is_full = self._pending_file_bytes >= self._file_bytes_per_batch
        if len(self._pending) >= BATCH_SIZE or is_full:
            await self.flush()

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        self._pending_file_bytes = 0
        if self._dry_run:
            for item in pending:
                self._count(item.record, "RESTORED")
            return
        calls = [self._call(item.record) for item in pending]
        for item, outcome in zip(pending, await self._scripts.run_batch(calls), strict=True):
            if outcome == "OTHER_OWNER":
                raise InvalidBackup(
                    where=f"{self._source} line {item.line}",
                    reason="Redis holds this session id for another user; it was left as it is",
                    line=item.line,
                )
            self._count(item.record, outcome)

    def _count(self, record: SessionRecord | UserRecord, outcome: str) -> None:
        report = self.report
        if outcome == "EXPIRED":
            report.expired += 1
        elif outcome == "NEWER":
            report.newer += 1
        elif isinstance(record, SessionRecord):
            report.sessions += 1
            report.messages += len(record.messages)
        else:
            report.users += 1

    def _call(self, record: SessionRecord | UserRecord) -> tuple[str, str, list[str | int | bytes]]:
        is_fresh = self._fresh_ttl or record.expires_at is None
        expires = "" if is_fresh else str(record.expires_at)
        ttl = self._ttl_seconds
        if isinstance(record, UserRecord):
            user = record.user_id
            active, model = record.active or "", record.model or ""
            args: list[str | int | bytes] = [user_tag(user), user, active, model, expires, ttl]
            return "restore_user", user_state_key(record.user_id), args
        last_activity = record.last_activity
        files = stored_files(record)
        file_bytes = "" if record.file_bytes is None else record.file_bytes
        # Entries are written against the session's basis, which restore_session.lua stores;
        # a session without messages or an entryModel of its own keeps none, as it had none.
        basis = EntryBasis(record.created_at, record.entry_model or record.model)
        has_basis = bool(record.messages) or record.entry_model is not None
        args = [
            record.id[:4], record.id, record.user_id, record.title, record.model,
            record.created_at, record.updated_at, record.seq,
            record.updated_at if last_activity is None else last_activity, expires, ttl,
            record.creator or "", file_bytes, record.system_prompt or "", record.summary or "",
            record.summary_up_to or "", "1" if record.told_summary else "",
            basis.model if has_basis else "",
            count_tokens(record.system_prompt) if record.system_prompt else "",
            summary_tokens(record.summary) if record.summary else "", len(files),
            *(part for file in files for part in file),
            *(stored_entry(message, basis) for message in record.messages),
        ]  # fmt: skip
        return "restore_session", session_key(record.id), args
