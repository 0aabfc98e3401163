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

from benchmarks.draft_stream import WORD_SECONDS, DraftStream, StreamSide, draft_stream
from benchmarks.front_overhead import FrontOverhead, front_overhead
from benchmarks.harness import REPLY, counting_client, redis_server
from benchmarks.measures import (
    Cost,
    ImageCost,
    Memory,
    _message_text,
    chat_text,
    image_turn,
    memory_per_message,
    raw_turns_per_second,
    round_trips,
    turns_per_second,
)
from benchmarks.peers import langchain_bytes, langchain_turns_per_second
from benchmarks.scale import ScaleResult, scale
from benchmarks.streams import SideFigures, StreamsRow, concurrent_streams
from core.observability.logs import configure_logging

HEADER = "| measure | ours | baseline | ratio | target | status |\n|---|---|---|---|---|---|"
THROUGHPUT_TARGET = 0.8
MEMORY_TARGET = 1.1
SCALE_TARGET = 1.5  # the median at the largest size within 1.5x of the smallest: flat
ROUND_TRIPS_TARGET = 2


@dataclass(frozen=True)
class Size:
    turns: int
    concurrencies: tuple[int, ...]
    sessions: int
    messages_per_session: int
    scale_sizes: tuple[int, ...]
    scale_samples: int
    front_chats: tuple[int, ...]
    front_updates_per_chat: int | None = None  # None: 200 per row, spread over its chats
    draft_chats: tuple[int, ...] = (1, 20)
    draft_updates_per_chat: int = 5
    stream_counts: tuple[int, ...] = (100, 1_000)  # concurrent streams per row
    stream_tokens: int = 300  # per answer, at STREAM_RATE tokens/s


SIZES = {
    "tiny": Size(
        turns=20, concurrencies=(1, 10), sessions=5, messages_per_session=10,
        scale_sizes=(50, 200), scale_samples=20, front_chats=(1, 5),
        front_updates_per_chat=1, draft_chats=(1, 5), draft_updates_per_chat=2,
        stream_counts=(20, 100), stream_tokens=100,
    ),
    "default": Size(
        turns=2000, concurrencies=(1, 10, 100), sessions=1000, messages_per_session=100,
        scale_sizes=(1_000, 10_000, 100_000), scale_samples=300, front_chats=(1, 200),
    ),
    "full": Size(
        turns=10_000, concurrencies=(1, 10, 100), sessions=10_000, messages_per_session=100,
        scale_sizes=(1_000, 10_000, 100_000), scale_samples=1000, front_chats=(1, 200),
        stream_counts=(100, 1_000, 5_000),
    ),
}  # fmt: skip


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


def image_rows(cost: ImageCost) -> list[str]:
    trips = cost.turn.round_trips
    return [
        f"| turn with a 12 MP phone photo: round trips (commands) | {trips} "
        f"({cost.turn.commands}) | — | — | {ROUND_TRIPS_TARGET} round trips "
        f"| {status(trips <= ROUND_TRIPS_TARGET)} |",
        f"| bytes Redis keeps of that photo (baseline: the photo as sent) "
        f"| {cost.stored_bytes:,} | {cost.original_bytes:,} "
        f"| {cost.stored_bytes / cost.original_bytes:.3f} | — | — |",
    ]


def throughput_rows(users: int, ours: float, raw: float, langchain: float) -> list[str]:
    ratio = ours / raw
    verdict = status(ratio >= THROUGHPUT_TARGET)
    return [
        f"| turns/s, {users} concurrent users (baseline: raw redis-py loop) | {ours:,.0f} "
        f"| {raw:,.0f} | {ratio:.2f} | ≥ {THROUGHPUT_TARGET} | {verdict} |",
        f"| turns/s, {users} concurrent users (baseline: LangChain RedisChatMessageHistory) "
        f"| {ours:,.0f} | {langchain:,.0f} | {ours / langchain:.2f} | > 1 "
        f"| {status(ours > langchain)} |",
    ]


def memory_rows(memory: Memory, langchain_stored: int) -> list[str]:
    ours = memory.ours_bytes / memory.content_bytes
    original = memory.original_bytes / memory.content_bytes
    langchain = langchain_stored / memory.content_bytes
    label = f"stored bytes per content byte, {memory.mix}, {memory.messages:,} messages"
    return [
        f"| {label} (baseline: original layout) | {ours:.2f} | {original:.2f} "
        f"| {ours / original:.2f} | ≤ {MEMORY_TARGET} | {status(ours <= MEMORY_TARGET)} |",
        f"| {label} (baseline: LangChain's list of JSON) | {ours:.2f} | {langchain:.2f} "
        f"| {ours / langchain:.2f} | < 1 | {status(ours < langchain)} |",
    ]


FRONT_TARGET_MS = 20.0


def front_rows(rows: list[FrontOverhead]) -> list[str]:
    """Update to final message, ours against a bare python-telegram-bot handler."""
    lines = []
    for row in rows:
        setup = (
            f"edit interval {row.edit_interval:g} s, rate limiter on"
            if row.rate_limiter
            else f"edit interval {row.edit_interval:g} s, no rate limiter"
        )
        lines.append(
            f"| Telegram update → final message, p99 ms, {row.chats} concurrent chats ({setup}; "
            f"baseline: bare PTB handler; p50 {row.ours_p50_ms:.1f} vs {row.baseline_p50_ms:.1f}; "
            f"{row.ours_per_second:,.1f} vs {row.baseline_per_second:,.1f} updates/s) "
            f"| {row.ours_p99_ms:,.1f} | {row.baseline_p99_ms:,.1f} "
            f"| +{row.added_p99_ms:,.1f} ms | < +{FRONT_TARGET_MS:g} ms "
            f"| {status(row.added_p99_ms < FRONT_TARGET_MS)} |"
        )
    return lines


FRONT_CPU_TARGET_MS = 0.5


def front_cpu_rows(rows: list[FrontOverhead]) -> list[str]:
    """CPU per update in the burst without pacing: what the front costs beyond bare PTB."""
    lines = []
    for row in rows:
        if row.rate_limiter or row.edit_interval:
            continue
        added = row.ours_cpu_ms_per_update - row.baseline_cpu_ms_per_update
        lines.append(
            f"| Telegram CPU ms per update, this process, {row.chats} concurrent chats (edit "
            f"interval 0 s, no rate limiter; baseline: bare PTB handler; "
            f"{row.ours_requests_per_update:.1f} vs {row.baseline_requests_per_update:.1f} "
            f"Bot API requests per update) | {row.ours_cpu_ms_per_update:.2f} "
            f"| {row.baseline_cpu_ms_per_update:.2f} | +{added:.2f} ms "
            f"| ≤ +{FRONT_CPU_TARGET_MS:g} ms | {status(added <= FRONT_CPU_TARGET_MS)} |"
        )
    return lines


STREAM_RATE = 50.0  # tokens a second, as the issue has it
STREAM_CPU_TARGET = 1.3  # CPU per streamed token, ours over the bare loop's
STREAM_LAG_TARGET_MS = 50.0  # event-loop lag p99, at up to 1,000 streams
STREAM_ADDED_TARGET_MS = 5.0  # request received -> model request sent, p99, up to 1,000
STREAM_TARGET_UP_TO = 1_000  # the targets hold "at 1,000 streams"; not judged above


def stream_rows(rows: list[StreamsRow]) -> list[str]:
    """Concurrent streams: each front against the bare loop of the same row."""
    lines = []
    for row in rows:
        for front, ours in (("HTTP SSE endpoint", row.http), ("Telegram front", row.telegram)):
            lines += _stream_front_rows(row, front, ours)
    return lines


def _stream_front_rows(row: StreamsRow, front: str, ours: SideFigures) -> list[str]:
    bare, judged = row.bare, row.streams <= STREAM_TARGET_UP_TO
    where = (
        f"{row.streams:,} concurrent streams through the {front} ({row.tokens} tokens at "
        f"{row.rate:g}/s; service in its own process; {ours.seconds:.1f} vs {bare.seconds:.1f} s"
        f"{_failures(ours, bare)}; baseline: bare aiohttp + httpx + redis-py loop"
    )
    cpu_ratio = ours.cpu_us_per_token / bare.cpu_us_per_token

    def judge(is_met: bool) -> str:
        return status(is_met) if judged else "—"

    lag_target = f"< {STREAM_LAG_TARGET_MS:g} ms" if judged else "—"
    added_target = f"< {STREAM_ADDED_TARGET_MS:g} ms" if judged else "—"
    return [
        f"| {where}): CPU µs per streamed token | {ours.cpu_us_per_token:,.1f} "
        f"| {bare.cpu_us_per_token:,.1f} | {cpu_ratio:.2f} | ≤ {STREAM_CPU_TARGET}x "
        f"| {status(cpu_ratio <= STREAM_CPU_TARGET)} |",
        f"| {where}; max {ours.lag_max_ms:,.0f} vs {bare.lag_max_ms:,.0f}): event-loop lag "
        f"p99, ms | {ours.lag_p99_ms:,.1f} | {bare.lag_p99_ms:,.1f} | — | {lag_target} "
        f"| {judge(ours.lag_p99_ms < STREAM_LAG_TARGET_MS)} |",
        f"| {where}): resident memory per in-flight turn, KiB | {ours.rss_kib_per_turn:,.1f} "
        f"| {bare.rss_kib_per_turn:,.1f} | — | — | — |",
        f"| {where}): Redis round trips per turn | {ours.round_trips_per_turn:.2f} "
        f"| {bare.round_trips_per_turn:.2f} | — | — | — |",
        f"| {where}; p50 {ours.added_p50_ms:,.1f} vs {bare.added_p50_ms:,.1f}): time added "
        f"before the model request, p99 ms | {ours.added_p99_ms:,.1f} "
        f"| {bare.added_p99_ms:,.1f} | — | {added_target} "
        f"| {judge(ours.added_p99_ms < STREAM_ADDED_TARGET_MS)} |",
    ]


def _failures(ours: SideFigures, bare: SideFigures) -> str:
    if not ours.failed and not bare.failed:
        return ""
    return (
        f"; {ours.failed} vs {bare.failed} turns failed"
        f" ({_causes(ours) or 'none'} vs {_causes(bare) or 'none'})"
    )


def _causes(side: SideFigures, most: int = 3) -> str:
    """The commonest reasons the load saw for a side's failed turns."""
    return ", ".join(f"{cause}: {count}" for cause, count in list(side.failures.items())[:most])


METHOD_NAMES = {
    "sendMessageDraft": "drafts",
    "sendMessage": "sends",
    "editMessageText": "edits",
    "sendChatAction": "typing",
}


def _requests(side: StreamSide) -> str:
    """Requests per answer by kind, e.g. "4.0 drafts + 1.0 sends"."""
    return " + ".join(
        f"{count:.1f} {METHOD_NAMES.get(method, method)}"
        for method, count in side.by_method.items()
    )


def draft_rows(rows: list[DraftStream]) -> list[str]:
    """A private chat's streamed answer as drafts (ours) against paced edits (baseline)."""
    words = len(REPLY.split(" "))
    lines = []
    for row in rows:
        drafts, edits = row.drafts, row.edits
        where = (
            f"Telegram private chat, an answer streamed as drafts, {words} words over "
            f"{words * WORD_SECONDS:.1f} s, {row.chats} concurrent chats"
        )
        lines += [
            f"| {where}: Bot API requests per answer (baseline: paced edits; {_requests(drafts)} "
            f"vs {_requests(edits)}) | {drafts.requests_per_answer:.1f} "
            f"| {edits.requests_per_answer:.1f} "
            f"| {drafts.requests_per_answer / edits.requests_per_answer:.2f} | — | — |",
            f"| {where}: update → final message, p50 ms (baseline: paced edits; first text shown "
            f"p50 {drafts.first_text_p50_ms:,.0f} vs {edits.first_text_p50_ms:,.0f} ms) "
            f"| {drafts.final_p50_ms:,.0f} | {edits.final_p50_ms:,.0f} "
            f"| {drafts.final_p50_ms / edits.final_p50_ms:.2f} | — | — |",
            f"| {where}: CPU ms per answer, this process (baseline: paced edits) "
            f"| {drafts.cpu_ms_per_answer:.1f} | {edits.cpu_ms_per_answer:.1f} "
            f"| {drafts.cpu_ms_per_answer / edits.cpu_ms_per_answer:.2f} | — | — |",
        ]
    return lines


SCALE_OPERATIONS = {
    "sessions_command": "/sessions",
    "switch_command": "/switch",
    "turn": "plain turn",
    "health": "active-session count (/api/sessions/health, before its 5 s reuse)",
    "ping": "Redis ping (/health): a control",
}


def scale_rows(result: ScaleResult) -> list[str]:
    """p50 at the largest size against p50 at the smallest, from the same growing database.

    The verdict reads the median: on two shared cores a p99 mostly measures the other jobs
    (repeated runs moved the p99 ratio of the flat operations between 0.5 and 1.9).
    """
    first, last = result.steps[0], result.steps[-1]
    rows = []
    for name, label in SCALE_OPERATIONS.items():
        small, large = getattr(first, name), getattr(last, name)
        ratio = large.p50_ms / small.p50_ms
        target, verdict = ("flat", status(ratio <= SCALE_TARGET)) if name != "ping" else ("—", "—")
        rows.append(
            f"| {label}: p50 ms at {last.sessions:,} sessions (baseline: at {first.sessions:,}; "
            f"p99 {small.p99_ms:.2f} → {large.p99_ms:.2f}) | {large.p50_ms:.2f} "
            f"| {small.p50_ms:.2f} | {ratio:.2f} | {target} | {verdict} |"
        )
    return rows


def scale_table(result: ScaleResult) -> str:
    lines = [
        "| sessions (users) | /sessions p50/p99 | /switch p50/p99 | turn p50/p99 "
        "| count p50/p99 | ping p50/p99 | used_memory | populated in |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for step in result.steps:
        cells = [
            f"{getattr(step, name).p50_ms:.2f} / {getattr(step, name).p99_ms:.2f}"
            for name in SCALE_OPERATIONS
        ]
        lines.append(
            f"| {step.sessions:,} ({step.users:,}) | {' | '.join(cells)} "
            f"| {step.used_memory_bytes / 1e6:.1f} MB | {step.populate_seconds:.1f} s |"
        )
    return "\n".join(lines)


async def measure_chat_path(url: str, size: Size) -> list[str]:
    client = counting_client(url)
    observer = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        rows = round_trip_rows(await round_trips(client, observer))
        rows += image_rows(await image_turn(client, observer))
        for users in size.concurrencies:
            turns_each = max(1, size.turns // users)
            ours = await turns_per_second(client, users, turns_each)
            raw = await raw_turns_per_second(client, users, turns_each)
            langchain = await langchain_turns_per_second(url, users, turns_each)
            rows += throughput_rows(users, ours, raw, langchain)
    finally:
        await client.aclose()
        await observer.aclose()
    return rows


async def measure_memory(url: str, size: Size) -> list[str]:
    """On a Redis of its own: client buffers left by the throughput runs would skew it."""
    observer = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        sessions, per_session = size.sessions, size.messages_per_session
        rows = []
        for mix in ("prose", "chat"):
            memory = await memory_per_message(observer, sessions, per_session, mix)
            contents = chat_text if mix == "chat" else _message_text
            stored = await langchain_bytes(url, sessions, per_session, contents)
            rows += memory_rows(memory, stored)
        return rows
    finally:
        await observer.aclose()


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


NOTES_MARKER = "<!-- Written by hand below this line; `make bench` keeps it. -->"


def report(rows: list[str], scaled: ScaleResult, size_name: str, notes: str) -> str:
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
without the chat service around them (no streaming, no model request, no metrics); both get
the context as begin_turn.lua encodes it, sized by the token counts stored with each message.
LangChain's `RedisChatMessageHistory` (langchain-community) does per turn what its
`RunnableWithMessageHistory` does: read the history, then add the question and the answer (5
round trips, run in the default thread pool; a new conversation every 20 turns, so it never reads
more than our 40-message context). Memory is measured on a Redis of its own, as `used_memory`
deltas for the same conversations in each layout (ours once the minute-long records a repeated
call would find are gone); the original layout is the first design's (a hash per message plus
a list of ids). Ours stores each message as one lean entry (its role number with its content's
tokens, ms since the session began, the model only when it is not the session's `entryModel`:
docs/data-model.md, "Messages"), and the store's scripts are loaded before the baseline is read
(Redis keeps their source). Two mixes: "prose", runs of consecutive words from the Python
documentation that ships with CPython (`pydoc_data`), questions of 5-60 words, answers of
30-250, about 570 bytes on average; and "chat", questions of 20-300 bytes and answers of
200-2,000 bytes in paragraphs, from English and pt-BR sentences with emoji. The Telegram rows
run the real front in webhook mode against the fake Bot API in a child process, from the update
put on the queue to the fake's receipt of the message showing the whole answer; the baseline is
a python-telegram-bot handler that sends the same reply with one `sendMessage` and no core.
With the shipped edit interval the final text waits for the chat's next edit slot, so that row
measures the interval; the row without interval and rate limiter measures the processing.
Those updates come from private chats, but an instant answer is complete before any draft or
preview is due: one sendMessage.
The draft rows stream an answer from a model that sends a word every 0.1 s through the same
front with the shipped settings, in private chats: as drafts (then one sendMessage), against
the same chats with drafts refused by the fake, which stream as a group does (a first message,
then edits at most every 1 s). A warm-up question per chat goes first, uncounted.
The concurrent-streams rows (benchmarks/streams.py) run the service measured alone in a child
process (the real aiohttp app of bots/http, or the bare loop), the fake model, the fake Bot API
and the load generator in others: N streams start spread over one answer's time and ask twice
each, so N answers are under way at once; the Telegram front keeps its shipped settings. CPU,
loop lag (a 10 ms sleep's overshoot), peak RSS and Redis round trips are the measured
process's own; time added runs from the client's send to the fake model's receipt.

## Scale: one database grown to {scaled.steps[-1].sessions:,} sessions

Milliseconds; {scaled.samples} samples per operation at each size in each of {scaled.passes}
passes, users drawn at random, each figure the median over the passes. The count is what
`/api/sessions/health` asks Redis for (a merge of up to 60 HyperLogLogs); the endpoint reuses
it for 5 s, so at most one such merge per process every 5 s. The ping is a control: nothing
stored can slow it, so when it moves, the machine was busy.

{scale_table(scaled)}

{NOTES_MARKER}

{notes}"""


def kept_notes(output: Path | None) -> str:
    """The hand-written part of an existing report (below NOTES_MARKER), if any."""
    if output is None or not output.exists():
        return ""
    _, marker, notes = output.read_text().partition(NOTES_MARKER)
    return notes.lstrip("\n") if marker else ""


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--size", choices=sorted(SIZES), default="default")
    parser.add_argument("--output", type=Path, help="also write the report there (markdown)")
    args = parser.parse_args()
    configure_logging(level="WARNING", log_format="console")
    size = SIZES[args.size]
    # Each part on a fresh redis-server: what one leaves behind must not weigh on the next.
    with redis_server() as url:
        rows = asyncio.run(measure_chat_path(url, size))
    with redis_server() as url:
        rows += asyncio.run(measure_memory(url, size))
    with redis_server() as url:
        overhead = front_overhead(url, size.front_chats, size.front_updates_per_chat)
        overheads = asyncio.run(overhead)
        rows += front_rows(overheads) + front_cpu_rows(overheads)
    with redis_server() as url:
        streamed = draft_stream(url, size.draft_chats, size.draft_updates_per_chat)
        rows += draft_rows(asyncio.run(streamed))
    with redis_server() as url:
        streamed_at_once = concurrent_streams(
            url, size.stream_counts, size.stream_tokens, STREAM_RATE
        )
        rows += stream_rows(asyncio.run(streamed_at_once))
    with redis_server() as url:
        scaled = asyncio.run(scale(url, size.scale_sizes, size.scale_samples))
    rows += scale_rows(scaled)
    text = report(rows, scaled, args.size, kept_notes(args.output))
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
