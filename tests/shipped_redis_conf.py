"""A redis-server with the persistence and memory settings of the shipped `redis.conf`.

The fault tests read them from the file itself (AOF, `appendfsync`, RDB `save` points,
`maxmemory` and its policy), so a change to `redis.conf` is a change to what they prove.
"""

from __future__ import annotations

from pathlib import Path

from tests.redis_process import RedisProcess

SHIPPED_REDIS_CONF = Path(__file__).resolve().parents[1] / "redis.conf"
DURABILITY_DIRECTIVES = frozenset({"save", "maxmemory", "maxmemory-policy"})
DURABILITY_PREFIXES = ("append", "aof-")


def durability_args(conf: Path = SHIPPED_REDIS_CONF) -> tuple[str, ...]:
    """The file's persistence and memory directives as `--name value` arguments, in order."""
    args: list[str] = []
    for line in conf.read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        name = words[0].lower()
        if name in DURABILITY_DIRECTIVES or name.startswith(DURABILITY_PREFIXES):
            args += [f"--{name}", " ".join(words[1:])]
    return tuple(args)


def durable_redis(directory: Path, *extra_args: str) -> RedisProcess:
    """A redis-server in `directory` (on a TCP port) persisting as the shipped one does.

    Its command line comes after RedisProcess's test defaults (no AOF, no RDB), so these win.
    """
    return RedisProcess(directory, *durability_args(), *extra_args)
