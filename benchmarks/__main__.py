"""`make bench`: measure the chat path against its targets and write docs/benchmarks.md.

python -m benchmarks [--size tiny|default|full] [--output docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis

from benchmarks.harness import counting_client, redis_server
from benchmarks.measures import (
    Cost,
    Memory,
    memory_per_message,
    raw_turns_per_second,
    round_trips,
    turns_per_second,
)
from core.logs import configure_logging

HEADER = "| measure | ours | baseline | ratio | target | status |\n|---|---|---|---|---|---|"
THROUGHPUT_TARGET = 0.8
MEMORY_TARGET = 1.2
ROUND_TRIPS_TARGET = 2


@dataclass(frozen=True)
class Size:
    turns: int
    concurrencies: tuple[int, ...]
    sessions: int
    messages_per_session: int


SIZES = {
    "tiny": Size(turns=20, concurrencies=(1, 10), sessions=5, messages_per_session=10),
    "default": Size(
        turns=2000, concurrencies=(1, 10, 100), sessions=1000, messages_per_session=100
    ),
    "full": Size(
        turns=10_000, concurrencies=(1, 10, 100), sessions=10_000, messages_per_session=100
    ),
}


def status(is_met: bool) -> str:
    return "met" if is_met else "**missed**"


def round_trip_rows(costs: dict[str, Cost]) -> list[str]:
    rows = []
    for label, cost in costs.items():
        if label == "plain turn":
            target = f"{ROUND_TRIPS_TARGET} round trips"
            verdict = status(cost.round_trips <= ROUND_TRIPS_TARGET)
        else:
            target = verdict = "—"
        rows.append(
            f"| {label}: round trips (commands) | {cost.round_trips} ({cost.commands}) "
            f"| — | — | {target} | {verdict} |"
        )
    return rows


def throughput_row(users: int, ours: float, raw: float) -> str:
    ratio = ours / raw
    verdict = status(ratio >= THROUGHPUT_TARGET)
    return (
        f"| turns/s, {users} concurrent users (baseline: raw redis-py loop) | {ours:,.0f} "
        f"| {raw:,.0f} | {ratio:.2f} | ≥ {THROUGHPUT_TARGET} | {verdict} |"
    )


def memory_row(memory: Memory) -> str:
    ours = memory.ours_bytes / memory.content_bytes
    original = memory.original_bytes / memory.content_bytes
    return (
        f"| stored bytes per content byte, {memory.messages:,} messages "
        f"(baseline: original layout) | {ours:.2f} | {original:.2f} | {ours / original:.2f} "
        f"| ≤ {MEMORY_TARGET} | {status(ours <= MEMORY_TARGET)} |"
    )


async def measure(url: str, size: Size) -> list[str]:
    client = counting_client(url)
    observer = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        rows = round_trip_rows(await round_trips(client, observer))
        for users in size.concurrencies:
            turns_each = max(1, size.turns // users)
            ours = await turns_per_second(client, users, turns_each)
            raw = await raw_turns_per_second(client, users, turns_each)
            rows.append(throughput_row(users, ours, raw))
        sessions, per_session = size.sessions, size.messages_per_session
        rows.append(memory_row(await memory_per_message(observer, sessions, per_session)))
    finally:
        await client.aclose()
        await observer.aclose()
    return rows


def _first_field(path: str, prefix: str) -> str | None:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(prefix)), None)


def machine() -> str:
    cpu = _first_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown CPU"
    memory = _first_field("/proc/meminfo", "MemTotal") or "0 kB"
    gib = int(memory.split()[0]) / 1024 / 1024
    version = subprocess.run(
        ["redis-server", "--version"],  # noqa: S607  (the same PATH lookup the harness makes)
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split(" ")[2]
    python = platform.python_version()
    return f"{cpu}, {os.cpu_count()} cores, {gib:.0f} GiB; Python {python}; Redis {version[2:]}"


def commit() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "unknown"


def report(rows: list[str], size_name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""# Benchmarks

Written by `make bench` (`python -m benchmarks --size {size_name}`). Every baseline is measured
in the same run, on a redis-server the benchmark starts itself, with a model that answers at once.

- machine: {machine()}
- commit: {commit()}, {stamp}

{HEADER}
{chr(10).join(rows)}

Round trips are socket writes of our Redis client (a pipeline counts once); commands come from
`INFO commandstats`. The raw loop calls the same two Lua scripts per turn straight from redis-py,
without the chat service around them. The original layout is the first design's: a hash per
message plus a list of message ids per session.
"""


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--size", choices=sorted(SIZES), default="default")
    parser.add_argument("--output", type=Path, help="also write the report there (markdown)")
    args = parser.parse_args()
    configure_logging(level="WARNING", log_format="console")
    with redis_server() as url:
        rows = asyncio.run(measure(url, SIZES[args.size]))
    text = report(rows, args.size)
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
