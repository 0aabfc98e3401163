"""Every session as JSON lines, and back (`chatbridge backup FILE` / `chatbridge restore FILE`).

The lines (core/backup/format.py): a header with the format version, one line per session with
all its messages (at most MAX_MESSAGES_PER_SESSION), so a restore writes each session whole or
not at all; one per user state (active session, /model choice); an end line with the counts.
Rate-limit logs and daily token counters are not kept.

Writing walks the keyspace with SCAN (never KEYS) in batches of BATCH_SIZE keys, reads each
batch with one pipeline of read-only scripts and yields lines as it goes: memory holds one
batch, whatever the number of sessions. SCAN may return a key twice; the line is then written
twice, which a restore takes as the same session twice.

Restoring checks each line before writing it and writes each line with one script, so a bad
line stops the restore at that line with nothing of it written (`dry_run` checks a whole file
first). Restoring is idempotent: a session is written as the file has it unless Redis holds it
with more messages ever stored (a later state, kept as it is); a user's active session and
model fill only what Redis lacks. Limits (MAX_SESSIONS_PER_USER, MAX_MESSAGES_PER_SESSION,
MAX_MESSAGE_LENGTH) are not applied: a restore puts back what Redis held. Each key gets the
expiry instant the backup recorded, and what would have expired by now is skipped; with
`fresh_ttl`, everything restored lives SESSION_TTL from now instead.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
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
)
from core.errors import InvalidBackup
from core.sessions.batches import ScriptBatches, scanned_keys
from core.sessions.keys import SESSION_ID_PATTERN, STATE, session_key, user_state_key, user_tag
from core.storage.connection import RedisClient

BATCH_SIZE = 200
SESSION_KEYS = "session:*"
USER_KEYS = f"user:{STATE}:{{*"
USER_STATE_KEY = re.compile(
    rf"user:{STATE}:\{{(?P<tag>[0-9a-f]{{4}})\}}:(?P<user_id>.+)", re.DOTALL
)
SCRIPT_NAMES = ("backup_session", "backup_user", "restore_session", "restore_user")


# --- the lines -----------------------------------------------------------------------------


# --- backup ---------------------------------------------------------------------------------


async def backup_lines(redis: RedisClient, counts: Counts | None = None) -> AsyncIterator[str]:
    """The backup, line by line: a header, every session, every user state, an end line."""
    counts = counts if counts is not None else Counts()
    scripts = ScriptBatches(redis, SCRIPT_NAMES)
    yield line_of(Header(format=FORMAT, version=VERSION, created_at=await scripts.server_time_ms()))
    async for batch in scanned_keys(redis, SESSION_KEYS, BATCH_SIZE, key_type="hash"):
        ids = [sid for key in batch if (sid := _session_id_in(key)) is not None]
        calls = [("backup_session", session_key(sid), (sid[:4], sid)) for sid in ids]
        for sid, reply in zip(ids, await scripts.run_batch(calls), strict=True):
            if reply:  # else it ended between the scan and the read
                record = _session_record(sid, reply)
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
    user_id, title, model, created, updated, seq, expires, score = reply[:8]
    return SessionRecord(
        kind="session",
        id=session_id,
        user_id=user_id,
        title=title,
        model=model,
        created_at=int(created),
        updated_at=int(updated),
        seq=int(seq),
        last_activity=int(float(score)) if score != "" else None,
        expires_at=int(expires) if expires != "" else None,
        messages=[message_record(raw) for raw in reply[8:]],
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
) -> RestoreReport:
    """Restore a backup from its lines, in order; `dry_run`: only check them.

    Raises InvalidBackup naming the first bad line; the lines before it are restored, nothing
    of it or after it is. Check a file with `dry_run` first to write nothing at all.
    """
    writer = _Writer(ScriptBatches(redis, SCRIPT_NAMES), ttl_seconds, fresh_ttl, source, dry_run)
    seen = Counts()
    end: EndRecord | None = None
    number = 0
    try:
        for number, raw in enumerate(lines, start=1):
            where = f"{source} line {number}"
            if number == 1:
                check_header(raw, where)
            elif isinstance(record := parse_record(raw, where, number, after=end), EndRecord):
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
    """Writes validated lines BATCH_SIZE at a time, one pipeline of scripts per batch."""

    def __init__(
        self, scripts: ScriptBatches, ttl_seconds: int, fresh_ttl: bool, source: str, dry_run: bool
    ) -> None:
        self._scripts = scripts
        self._ttl_seconds = ttl_seconds
        self._fresh_ttl = fresh_ttl
        self._source = source
        self._dry_run = dry_run
        self._pending: list[_Pending] = []
        self.report = RestoreReport()

    async def add(self, item: _Pending) -> None:
        self._pending.append(item)
        if len(self._pending) >= BATCH_SIZE:
            await self.flush()

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
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

    def _call(self, record: SessionRecord | UserRecord) -> tuple[str, str, list[str | int]]:
        is_fresh = self._fresh_ttl or record.expires_at is None
        expires = "" if is_fresh else str(record.expires_at)
        ttl = self._ttl_seconds
        if isinstance(record, UserRecord):
            user = record.user_id
            active, model = record.active or "", record.model or ""
            args: list[str | int] = [user_tag(user), user, active, model, expires, ttl]
            return "restore_user", user_state_key(record.user_id), args
        last_activity = record.last_activity
        args = [
            record.id[:4], record.id, record.user_id, record.title, record.model,
            record.created_at, record.updated_at, record.seq,
            record.updated_at if last_activity is None else last_activity, expires, ttl,
            *(stored_entry(message) for message in record.messages),
        ]  # fmt: skip
        return "restore_session", session_key(record.id), args
