"""Concurrent streams (issue 19, point 3): N turns at once, each answered by a model streaming
`tokens` tokens at `rate` tokens a second, through the HTTP SSE endpoint and the Telegram front,
against a bare aiohttp + httpx + redis-py loop doing the same in the same run.

**Processes.** The service measured runs alone in a child process (stream_service.py: the real
aiohttp app of bots/http, built as `python -m bots` builds it; or the bare loop), a fresh one
per side and row, so that its CPU, memory and event loop carry nothing else. The fake model
(stream_model.py) and the fake Bot API (fake_bot_api.py) are children of their own; the load
generator is this process. The machine has two cores: with every part busy they compete, and
the fake model's CPU share is reported so that a fake falling behind is seen.

**Load.** N streams start spread over one answer's time (tokens / rate) and each asks
TURNS_PER_STREAM times in a row, so that from the end of that spread N answers are under way
at every moment: a busy bot's steady state rather than one instant burst (whose queue would be
all that "time added" measured). HTTP: N sessions are created first (not measured); each turn
is `POST /api/chat/session` with `stream: true` on a new connection, read until its `done`
event with a raw socket (the load generator shares the machine and must cost little). The bare
loop takes the same request on the same path. Telegram: N private chats send their updates to
the front's webhook route (with its secret); a turn ends when the fake Bot API has the message
showing the whole answer. The front runs with its shipped settings (drafts every 0.3 s in
private chats, python-telegram-bot's limit of 30 requests/s per bot, CONCURRENT_UPDATES = 64
updates handled at once), so past 64 chats updates wait for a slot before their turn begins,
and at many chats final messages queue behind the limit. The bare loop is the baseline of both
fronts.

**Measured** in the service's process, from just before the first request to the last turn's
end: CPU per streamed token (process CPU time / (N x tokens)), event-loop lag p99 (a task
sleeping 10 ms records how late it wakes), resident memory per in-flight turn ((largest RSS -
RSS before) / N), Redis round trips per turn (socket writes of redis-py, a pipeline counts
once; ours includes whatever runs in the background meanwhile: the analytics flush, the model
list), and the time added before the model request: from the load generator's send to the fake
model's receipt (both `time.monotonic()`, one clock on Linux), p50 and p99.

`python -m benchmarks.streams --side http --streams 1000 --profile` runs one side under
cProfile and prints where its CPU goes, cumulative.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import os
import pstats
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.fake_bot_api import FakeBotApi, fake_bot_api
from benchmarks.harness import redis_server
from benchmarks.stream_model import answer_words
from benchmarks.stream_service import API_TOKEN, WEBHOOK_PATH, WEBHOOK_SECRET
from bots.telegram.front import WEBHOOK_SECRET_HEADER

ROOT = Path(__file__).resolve().parents[1]
FIRST_CHAT = 9_000_000
TURN_TIMEOUT = 900.0  # seconds one row may take before it is given up
CONNECT_AT_ONCE = 200  # connections opened at a time before a row starts
# Sessions created at a time before a row starts: redis-py 8's asyncio pool holds at most 100
# connections by default and refuses the 101st at once (MaxConnectionsError), which the
# service answers with 503 store_unavailable. The rows show what that does to a burst of turns.
CREATE_AT_ONCE = 50
WARMUP_TURNS = 2
# Each stream asks twice in a row, the N streams starting spread over one answer's time: from
# then on N answers are under way at every moment (a busy bot's steady state, not one instant
# burst, whose queue would be all the time added measured).
TURNS_PER_STREAM = 2
PIPE_LIMIT = 1 << 26
# The error code in the API's error JSON (a failed turn's cause, as the load tallies it).
ERROR_CODE = re.compile(rb'"code":\s*"([a-z_]+)"')


@dataclass(frozen=True)
class SideFigures:
    """One side of a row, as the service's process measured it."""

    turns: int
    failed: int
    failures: dict[str, int]  # how many turns failed, by what the load saw (a status, a code)
    seconds: float  # first request to last turn's end
    cpu_us_per_token: float
    lag_p99_ms: float
    lag_max_ms: float
    rss_kib_per_turn: float
    round_trips_per_turn: float
    added_p50_ms: float
    added_p99_ms: float
    model_cpu_share: float  # the fake model's CPU seconds over the row's seconds


@dataclass(frozen=True)
class StreamsRow:
    streams: int
    tokens: int
    rate: float
    bare: SideFigures
    http: SideFigures
    telegram: SideFigures


# --- child processes -------------------------------------------------------------------------


class Child:
    """A child speaking JSON lines: its first line is its URL, then one reply per request."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        if process.stdin is None or process.stdout is None:
            raise ValueError("a benchmark child needs its stdin and stdout piped")
        self.process, self.stdin, self.stdout = process, process.stdin, process.stdout
        self.url = ""

    async def ask(self, request: dict[str, Any]) -> Any:
        self.stdin.write(json.dumps(request).encode() + b"\n")
        await self.stdin.drain()
        line = await self.stdout.readline()
        if not line:
            raise RuntimeError("a benchmark child died; see its stderr above")
        return json.loads(line)["reply"]


@contextlib.asynccontextmanager
async def child(code: str, *args: str) -> AsyncIterator[Child]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("PTB_TIMEDELTA", "true")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env=env, cwd=ROOT, limit=PIPE_LIMIT,
    )  # fmt: skip
    running = Child(process)
    try:
        line = await running.stdout.readline()
        if not line:
            raise RuntimeError("a benchmark child did not start; see its stderr above")
        running.url = json.loads(line)["reply"]
        yield running
    finally:
        running.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


def fake_model(tokens: int, rate: float) -> contextlib.AbstractAsyncContextManager[Child]:
    code = "from benchmarks.stream_model import serve; serve()"
    return child(code, str(tokens), str(rate))


def service(
    side: str, redis_url: str, model_url: str, bot_api_url: str | None, profile: str | None
) -> contextlib.AbstractAsyncContextManager[Child]:
    code = "from benchmarks.stream_service import serve; serve()"
    return child(code, side, redis_url, model_url, bot_api_url or "-", profile or "-")


# --- one side of a row ---------------------------------------------------------------------


async def concurrent_streams(
    redis_url: str, counts: Sequence[int], tokens: int = 300, rate: float = 50.0
) -> list[StreamsRow]:
    """A row per number of streams: the bare loop, ours over HTTP, ours over Telegram."""
    rows = []
    async with fake_model(tokens, rate) as model, fake_bot_api() as bot_api:
        await bot_api.set_final_text(" ".join(answer_words(tokens)))
        next_chat = FIRST_CHAT
        for count in counts:
            sides = {}
            for side in ("bare", "http", "telegram"):
                sides[side] = await measure_side(
                    side, count, redis_url, model, bot_api, next_chat, tokens, rate
                )
                next_chat += count + WARMUP_TURNS
            rows.append(StreamsRow(count, tokens, rate, **sides))
    return rows


async def measure_side(  # noqa: PLR0917  (one row's every input, named at each call)
    side: str,
    count: int,
    redis_url: str,
    model: Child,
    bot_api: FakeBotApi,
    first_chat: int,
    tokens: int,
    rate: float,
    profile: str | None = None,
) -> SideFigures:
    bot_api_url = bot_api.base_url if side == "telegram" else None
    async with service(side, redis_url, model.url, bot_api_url, profile) as measured:
        limits = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(measured.url, connector=limits) as client:
            load: TelegramLoad | HttpLoad
            if side == "telegram":
                load = TelegramLoad(client, bot_api, first_chat, count)
            else:
                load = HttpLoad(client, measured.url, side, count)
            await load.prepare()
            await load.warm_up()
            await model.ask({"receipts": True})  # forget the warm-up's
            idle = await measured.ask({"reset": True})
            model_cpu = (await model.ask({"receipts": True}))[1]
            started = time.monotonic()
            spread = tokens / rate
            sent, failures = await asyncio.wait_for(load.run(spread), TURN_TIMEOUT)
            seconds = time.monotonic() - started
            report = await measured.ask({"report": True})
            receipts, model_cpu_after = await model.ask({"receipts": True})
    added = sorted(receipts[str(k)] - at for k, at in sent.items() if str(k) in receipts)
    failed = sum(failures.values())
    done = count * TURNS_PER_STREAM - failed
    return SideFigures(
        turns=count * TURNS_PER_STREAM,
        failed=failed,
        failures=dict(failures.most_common()),
        seconds=seconds,
        cpu_us_per_token=report["cpu"] * 1e6 / max(1, done * tokens),
        lag_p99_ms=report["lag_p99"] * 1000,
        lag_max_ms=report["lag_max"] * 1000,
        rss_kib_per_turn=(report["peak_rss"] - idle["rss"]) / 1024 / count,
        round_trips_per_turn=report["round_trips"] / (count * TURNS_PER_STREAM),
        added_p50_ms=_percentile(added, 0.50),
        added_p99_ms=_percentile(added, 0.99),
        model_cpu_share=(model_cpu_after - model_cpu) / seconds,
    )


def _percentile(ordered: Sequence[float], share: float) -> float:
    """Nearest rank, seconds in, milliseconds out; NaN when nothing was measured."""
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)] * 1000


class HttpLoad:
    """N turns through `POST /api/chat/session` with `stream: true`, each on a connection of
    its own, read until its `done` event with a raw socket (the load generator must cost
    little: it shares the machine)."""

    def __init__(self, client: aiohttp.ClientSession, url: str, side: str, count: int) -> None:
        self.client, self.side, self.count = client, side, count
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.sessions: list[str] = []
        self.next_turn = 0

    async def prepare(self) -> None:
        total = self.count + WARMUP_TURNS
        if self.side == "bare":
            self.sessions = [f"{index:032x}" for index in range(total)]
            return
        for first in range(0, total, CREATE_AT_ONCE):
            batch = range(first, min(total, first + CREATE_AT_ONCE))
            self.sessions += await asyncio.gather(*(self._create(index) for index in batch))

    async def _create(self, index: int) -> str:
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        body = {"userId": f"bench-stream-{index}", "title": "Tides"}
        async with self.client.post("/api/sessions", json=body, headers=headers) as response:
            if response.status != 201:
                raise RuntimeError(f"creating a session: {response.status} {await response.text()}")
            return str((await response.json())["id"])

    async def warm_up(self) -> None:
        for session in self.sessions[-WARMUP_TURNS:]:
            connection = await asyncio.open_connection(self.host, self.port)
            await self._turn(connection, session, -1)

    async def run(self, spread: float) -> tuple[dict[int, float], Counter[str]]:
        sent: dict[int, float] = {}
        failures: Counter[str] = Counter()

        async def one_client(index: int) -> None:
            await asyncio.sleep(spread * index / self.count)
            for turn in range(TURNS_PER_STREAM):
                number = index * TURNS_PER_STREAM + turn
                try:
                    connection = await asyncio.open_connection(self.host, self.port)
                except OSError as error:
                    failures[f"connect: {type(error).__name__}"] += 1
                    continue
                failure = await self._turn(connection, self.sessions[index], number, sent)
                if failure is not None:
                    failures[failure] += 1

        await asyncio.gather(*(one_client(index) for index in range(self.count)))
        return sent, failures

    async def _turn(
        self,
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        session: str,
        index: int,
        sent: dict[int, float] | None = None,
    ) -> str | None:
        """None once the answer is streamed whole, else why not."""
        reader, writer = connection
        marker = f"turn-{index}" if index >= 0 else "warm-up"
        body = json.dumps(
            {"sessionId": session, "message": f"How do tides work? {marker}", "stream": True}
        ).encode()
        head = (
            f"POST /api/chat/session HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {API_TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        if sent is not None:
            sent[index] = time.monotonic()
        writer.write(head + body)
        try:
            return await _read_until_done(reader)
        except OSError as error:
            return f"connection: {type(error).__name__}"
        finally:
            writer.close()


async def _read_until_done(reader: asyncio.StreamReader) -> str | None:
    """None once an SSE `done` event comes on a 200; else the status and error code seen."""
    first = await reader.read(65536)
    if not first:
        return "no response"
    if not first.startswith(b"HTTP/1.1 200"):
        status = first[9:12].decode(errors="replace")
        code = ERROR_CODE.search(first)
        return f"{status} {code.group(1).decode()}" if code else status
    tail = first
    while b"event: done" not in tail:
        data = await reader.read(65536)
        if not data:
            # An `error` event ends a stream that had begun: its code is the cause.
            code = ERROR_CODE.search(tail) if b"event: error" in tail else None
            return f"error event {code.group(1).decode()}" if code else "stream cut"
        tail = tail[-512:] + data
    return None


class TelegramLoad:
    """N private chats, one update each, to the front's webhook route; a turn ends when the
    fake Bot API has the message showing the whole answer."""

    def __init__(
        self, client: aiohttp.ClientSession, bot_api: FakeBotApi, first_chat: int, count: int
    ) -> None:
        self.client, self.bot_api, self.count = client, bot_api, count
        self.chats = list(range(first_chat, first_chat + count + WARMUP_TURNS))
        self.updates: dict[int, list[dict[str, Any]]] = {}

    async def prepare(self) -> None:
        self.updates = await self.bot_api.updates(self.chats, TURNS_PER_STREAM)

    async def warm_up(self) -> None:
        for chat in self.chats[-WARMUP_TURNS:]:
            await self._turn(chat, -1)

    async def run(self, spread: float) -> tuple[dict[int, float], Counter[str]]:
        sent: dict[int, float] = {}
        failures: Counter[str] = Counter()

        async def one_chat(index: int, chat: int) -> None:
            await asyncio.sleep(spread * index / self.count)
            for turn in range(TURNS_PER_STREAM):
                failure = await self._turn(chat, index * TURNS_PER_STREAM + turn, sent, turn)
                if failure is not None:
                    failures[failure] += 1

        chats = enumerate(self.chats[: self.count])
        await asyncio.gather(*(one_chat(index, chat) for index, chat in chats))
        return sent, failures

    async def _turn(
        self, chat: int, index: int, sent: dict[int, float] | None = None, turn: int = 0
    ) -> str | None:
        """None once the chat shows the whole answer, else why not."""
        update = self.updates[chat][turn]
        marker = f"turn-{index}" if index >= 0 else "warm-up"
        update["message"]["text"] = f"How do tides work? {marker}"
        at = time.monotonic()
        answer = self.bot_api.expect(chat, at)
        if sent is not None:
            sent[index] = at
        headers = {WEBHOOK_SECRET_HEADER: WEBHOOK_SECRET}
        async with self.client.post(WEBHOOK_PATH, json=update, headers=headers) as response:
            if response.status != 200:
                return f"webhook {response.status}"
        try:
            await answer.done
        except RuntimeError as error:
            return str(error)[:80]
        return None


# --- profiling -----------------------------------------------------------------------------


async def profile_side(side: str, count: int, tokens: int, rate: float, top: int) -> str:
    """One side at `count` streams under cProfile: its figures and top functions, cumulative."""
    with tempfile.TemporaryDirectory() as directory, redis_server() as redis_url:
        path = str(Path(directory) / "profile")
        async with fake_model(tokens, rate) as model, fake_bot_api() as bot_api:
            await bot_api.set_final_text(" ".join(answer_words(tokens)))
            figures = await measure_side(
                side, count, redis_url, model, bot_api, FIRST_CHAT, tokens, rate, path
            )
        out = io.StringIO()
        stats = pstats.Stats(path, stream=out)
        stats.sort_stats("cumulative").print_stats(top)
        stats.sort_stats("tottime").print_stats(top)
        return f"{figures}\n{out.getvalue()}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streams")
    parser.add_argument("--side", choices=("bare", "http", "telegram"), default="http")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.profile:
        print(asyncio.run(profile_side(args.side, args.streams, args.tokens, args.rate, args.top)))
        return
    with redis_server() as redis_url:
        for row in asyncio.run(
            concurrent_streams(redis_url, [args.streams], args.tokens, args.rate)
        ):
            print(row)


if __name__ == "__main__":
    main()
