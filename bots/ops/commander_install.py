"""Installing Redis Commander for `make commander`: the version tools/commander pins, with npm ci.

tools/commander/package.json names one exact version and package-lock.json pins every package
below it, so `npm ci` installs the same tree everywhere, into tools/commander/node_modules
(git-ignored). It runs again only when one of those two files changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from core.errors import ConfigError

COMMANDER_DIR = Path(__file__).resolve().parents[2] / "tools" / "commander"
ENTRY_POINT = Path("node_modules", "redis-commander", "bin", "redis-commander.js")
# Inside node_modules, so that `npm ci` (which empties it first) also removes a stale stamp.
INSTALLED_STAMP = Path("node_modules", ".chatbridge-installed")
# bcrypt is an optional native module (Redis Commander falls back to bcryptjs), and no install
# script is needed: nothing is compiled, nothing is downloaded but the locked tarballs.
NPM_CI = ("ci", "--omit=optional", "--ignore-scripts", "--no-audit", "--no-fund")
INSTALL_HINT = (
    "Redis Commander needs Node.js and npm: install them "
    "(Debian/Ubuntu: apt-get install nodejs npm)"
)


class CommanderError(Exception):
    """Redis Commander could not be installed or started (not a configuration problem)."""


def require_node() -> str:
    node = shutil.which("node")
    if node is None:
        raise ConfigError(INSTALL_HINT)
    return node


def install(directory: Path = COMMANDER_DIR) -> Path:
    """Redis Commander's entry point, after `npm ci` unless this lock file is installed already."""
    wanted = _lock_digest(directory)
    entry_point = directory / ENTRY_POINT
    with _exclusive(directory / "package.json"):  # two installs at once would clash
        stamp = directory / INSTALLED_STAMP
        if entry_point.is_file() and stamp.is_file() and stamp.read_text() == wanted:
            return entry_point
        npm = shutil.which("npm")
        if npm is None:
            raise ConfigError(INSTALL_HINT)
        print(
            f"chatbridge: installing Redis Commander {pinned_version(directory)} "
            f"into {directory / 'node_modules'} (npm ci)",
            file=sys.stderr,
            flush=True,
        )
        result = subprocess.run(  # noqa: S603  (our own arguments)
            [npm, *NPM_CI],
            cwd=directory,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not entry_point.is_file():
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise CommanderError(f"npm ci failed with exit code {result.returncode}:\n{tail}")
        stamp.write_text(wanted)
    return entry_point


def pinned_version(directory: Path = COMMANDER_DIR) -> str:
    manifest = json.loads((directory / "package.json").read_text(encoding="utf-8"))
    return str(manifest["dependencies"]["redis-commander"])


def _lock_digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        path = directory / name
        if not path.is_file():
            raise ConfigError(f"{path} is missing: it pins the Redis Commander that is installed")
        digest.update(path.read_bytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
