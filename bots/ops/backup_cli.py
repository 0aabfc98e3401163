"""`chatbridge backup FILE` and `chatbridge restore FILE`: every session as JSON lines, and back.

`-` means stdout (backup) or stdin (restore). Both run on the configured Redis, else on the
embedded one: the one of a service running in this directory (`make run`), or one started for
the command on the same `./data/`. The format and what a restore does are in core/backup/lines.py.

A backup file is written beside its name, readable by its owner only (it holds everyone's
conversations), and renamed into place once complete: a failed backup never leaves a file that
looks whole. A restore from a file checks every line before writing anything; from stdin it
cannot read twice, so the lines before a bad one are restored (restoring again is harmless).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from bots.runtime import open_services
from core.backup.format import Counts
from core.backup.lines import RestoreReport, backup_lines, restore_lines
from core.settings import Settings

STDIO = "-"
PRIVATE_FILE_MODE = 0o600


async def backup(settings: Settings, target: str) -> str:
    """Write the backup to `target`; returns the summary line."""
    counts = Counts()
    async with open_services(settings, may_join_embedded=True) as services:
        lines = backup_lines(services.redis, counts)
        if target == STDIO:
            await _write(lines, sys.stdout.buffer)
            where = "stdout"
        else:
            await _write_file(lines, Path(target))
            where = target
    return f"backed up {_numbers(counts.sessions, counts.messages, counts.users)} to {where}"


async def restore(settings: Settings, source: str, *, fresh_ttl: bool) -> str:
    """Restore the backup in `source`; returns the summary line."""
    if source == STDIO:
        return await _restore(settings, sys.stdin.buffer, "stdin", fresh_ttl=fresh_ttl)
    # A one-shot command: nothing else waits on this loop while the file is read.
    with Path(source).open("rb") as lines:  # noqa: ASYNC230
        return await _restore(settings, lines, source, fresh_ttl=fresh_ttl)


async def _restore(settings: Settings, lines: BinaryIO, source: str, *, fresh_ttl: bool) -> str:
    """A file that can be read twice is checked whole before anything is written."""
    ttl = settings.session_ttl
    async with open_services(settings, may_join_embedded=True) as services:
        if lines.seekable():
            await restore_lines(
                services.redis, lines, ttl_seconds=ttl, fresh_ttl=fresh_ttl, dry_run=True,
                source=source,
            )  # fmt: skip
            lines.seek(0)
        report = await restore_lines(
            services.redis, lines, ttl_seconds=ttl, fresh_ttl=fresh_ttl, source=source
        )
    return _restored(report, source)


def _restored(report: RestoreReport, source: str) -> str:
    summary = f"restored {_numbers(report.sessions, report.messages, report.users)} from {source}"
    if report.expired:
        summary += f"; skipped {_many(report.expired, 'record')} whose expiry had passed"
    if report.newer:
        summary += f"; kept {_many(report.newer, 'session')} that Redis holds in a later state"
    return summary


def _numbers(sessions: int, messages: int, users: int) -> str:
    return (
        f"{_many(sessions, 'session')} ({_many(messages, 'message')}) "
        f"and {_many(users, 'user state')}"
    )


def _many(count: int, thing: str) -> str:
    return f"{count} {thing}" if count == 1 else f"{count} {thing}s"


async def _write(lines: AsyncIterator[str], out: BinaryIO) -> None:
    async for line in lines:
        out.write(line.encode())
    out.flush()


async def _write_file(lines: AsyncIterator[str], path: Path) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)  # a leftover may be readable by others: start anew
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(descriptor, "wb") as out:
            await _write(lines, out)
            os.fsync(out.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
