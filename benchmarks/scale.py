"""Scale: latency of /sessions, /switch, a chat turn and health as stored sessions grow.

One database grows through `sizes` (1k, 10k, 100k sessions by default), five sessions per user
(users = sessions / 5), each session two turns long (a question and an answer, twice). At each
size every operation is timed through the real layers on users drawn uniformly from the whole
population, one at a time. Rounds of five calls (the four operations, and the store's PING:
all /health does, and a control that no data can slow down) run in a shuffled order, so that
noise from the rest of the machine falls on all of them alike. Each size is measured in PASSES
passes a little apart, each after a warm-up; a percentile is the median of the passes'
percentiles, so that one stalled pass does not decide it.

Population goes through the restore path (core/backup/lines.py: one pipelined `restore_session.lua`
per session and `restore_user.lua` per user, BATCH_SIZE to a round trip), which writes the keys
the chat path writes: the session hash and its message list, expiring SESSION_TTL after the
session's last message, the owner's index and state hash, expiring with the owner's newest
session. The one thing a restore leaves out, the activity record `/api/sessions/health` counts
(core/observability/activity.py), is written here as create_session and append_message would
have: each session in the bucket of its creation and of each answer.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

import redis.asyncio as aioredis

from benchmarks.measures import MODEL, build, prose
from core.backup.format import FORMAT, VERSION
from core.backup.lines import restore_lines
from core.commands import CommandHandler, Reply, TurnReply
from core.observability.activity import BUCKETS_PER_WINDOW, KEY_PREFIX, SHORTEST_BUCKET_SECONDS
from core.sessions.keys import new_session_id
from core.sessions.limits import SessionLimits
from core.sessions.store import TITLE_LENGTH

SIZES = (1_000, 10_000, 100_000)
SAMPLES = 300
PASSES = 5
PAUSE_SECONDS = 0.5
WARMUP_ROUNDS = 25
SESSIONS_PER_USER = 5
TURNS_PER_SESSION = 2  # four messages
TEXT_POOL = 500
ACTIVITY_BATCH = 1_000
# Every stored session was active within SESSION_TTL, or it would have expired. A user's five
# sessions start SESSION_GAP_MS apart, the first FIRST_SESSION_AGO_MS ago less up to
# START_SPREAD_MS, each lasting about two minutes: all were last active between 45 and 4
# minutes ago, so they expire (SESSION_TTL after their last activity, as the service's sliding
# expiry has it) 15 minutes or more after they are written. A run must end before then.
FIRST_SESSION_AGO_MS = 45 * 60_000
START_SPREAD_MS = 10 * 60_000
SESSION_GAP_MS = 7 * 60_000
# The turn's rate-limit log is written and checked as in production; the limit is only raised
# (to its maximum, 1000) so that small development sizes never see a refusal.
LIMITS = SessionLimits(rate_limit_messages=1000)
USAGE = {"promptTokens": 12, "completionTokens": 14, "cost": 0.00001}  # InstantModel's usage
QUESTION = "How do tides work, and why are there two of them a day?"


@dataclass(frozen=True)
class Latency:
    """Milliseconds: the median, over the passes, of each pass's percentile."""

    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class ScaleStep:
    """One size: what it holds and how fast each operation answered."""

    sessions: int
    users: int
    populate_seconds: float  # growing the database from the previous size to this one
    used_memory_bytes: int  # INFO memory used_memory, right after populating
    active_sessions_counted: int  # what /api/sessions/health reports (HyperLogLog, about ±1%)
    sessions_command: Latency  # "/sessions"
    switch_command: Latency  # "/switch <1-5>": the listing, then the switch
    turn: Latency  # a plain message, streamed to its end
    health: Latency  # store.ping() + store.active_session_count(), as /api/sessions/health
    ping: Latency  # store.ping(), all /health does: a control, independent of the data


@dataclass(frozen=True)
class Flatness:
    """Each operation's percentile at the largest size divided by the same at the smallest."""

    sessions_command: float
    switch_command: float
    turn: float
    health: float
    ping: float


@dataclass(frozen=True)
class ScaleResult:
    samples: int  # per operation per size and pass, warm-up excluded
    passes: int
    steps: tuple[ScaleStep, ...]
    p99_ratio: Flatness  # the target: about 1 when nothing grows with the data
    p50_ratio: Flatness  # less at the mercy of a busy machine than p99
    seconds: float  # the whole measure, populating included


async def scale(url: str, sizes: tuple[int, ...] = SIZES, samples: int = SAMPLES) -> ScaleResult:
    """Grow one database through `sizes` (sessions, ascending) and time each operation at each.

    Flushes the database first: run it on the benchmark's own redis-server.
    """
    if not sizes or list(sizes) != sorted(sizes) or sizes[0] < SESSIONS_PER_USER:
        raise ValueError(f"sizes must ascend from at least {SESSIONS_PER_USER}: {sizes}")
    started = time.perf_counter()
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        await client.flushdb()
        _, commands = build(client, LIMITS)
        rng = random.Random(5)  # noqa: S311  (reproducible test data, not security)
        texts = _Texts(rng)
        steps: list[ScaleStep] = []
        for previous, size in zip((0, *sizes), sizes, strict=False):
            users = range(previous // SESSIONS_PER_USER, size // SESSIONS_PER_USER)
            began = time.perf_counter()
            await _populate(client, users, texts, rng)
            populate_seconds = time.perf_counter() - began
            memory = int((await client.info("memory"))["used_memory"])
            counted = await commands.store.active_session_count()
            timings = await _measure(commands, users.stop, samples, rng)
            steps.append(ScaleStep(users.stop * SESSIONS_PER_USER, users.stop, populate_seconds,
                                   memory, counted, **timings))  # fmt: skip
    finally:
        await client.aclose()
    first, last = steps[0], steps[-1]
    return ScaleResult(samples, PASSES, tuple(steps), _flatness(first, last, "p99_ms"),
                       _flatness(first, last, "p50_ms"), time.perf_counter() - started)  # fmt: skip


def user_id(number: int) -> str:
    """A platform-qualified id, as the Telegram front makes them."""
    return f"telegram:{100_000_000 + number}"


# --- populating ----------------------------------------------------------------------------


class _Texts:
    """A pool of chat-like texts (questions of 5-20 words, answers of 20-80), reused."""

    def __init__(self, rng: random.Random) -> None:
        self.questions = [_words(rng, 5, 20).capitalize() + "?" for _ in range(TEXT_POOL)]
        self.answers = [_words(rng, 20, 80).capitalize() + "." for _ in range(TEXT_POOL)]


def _words(rng: random.Random, low: int, high: int) -> str:
    return prose(rng, rng.randint(low, high))


class _Activity:
    """What SessionActivity holds once the service has written the sessions: each one in the
    bucket of its creation and of each answer (create_session and append_message record it),
    every bucket expiring one window and one bucket after its latest record."""

    def __init__(self, window_seconds: int) -> None:
        self.window_ms = window_seconds * 1000
        bucket_seconds = math.ceil(window_seconds / BUCKETS_PER_WINDOW)
        self.bucket_ms = max(SHORTEST_BUCKET_SECONDS, bucket_seconds) * 1000
        self.session_ids: dict[int, list[str]] = defaultdict(list)
        self.latest_ms: dict[int, int] = {}

    def add(self, session_id: str, moment_ms: int) -> None:
        bucket = moment_ms // self.bucket_ms
        self.session_ids[bucket].append(session_id)
        self.latest_ms[bucket] = max(moment_ms, self.latest_ms.get(bucket, 0))

    async def write(self, client: aioredis.Redis) -> None:
        for bucket, session_ids in self.session_ids.items():
            key = f"{KEY_PREFIX}{bucket}"
            expires_ms = self.latest_ms[bucket] + self.window_ms + self.bucket_ms
            async with client.pipeline(transaction=False) as pipe:
                for first in range(0, len(session_ids), ACTIVITY_BATCH):
                    pipe.pfadd(key, *session_ids[first : first + ACTIVITY_BATCH])
                # Never shorten what an earlier step set: NX for a new key, GT for an old one.
                pipe.pexpireat(key, expires_ms, nx=True)
                pipe.pexpireat(key, expires_ms, gt=True)
                await pipe.execute()


async def _populate(
    client: aioredis.Redis, users: range, texts: _Texts, rng: random.Random
) -> None:
    """Add `users`, each with SESSIONS_PER_USER sessions, as the chat path would leave them."""
    if not users:
        return
    seconds, micros = await client.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    activity = _Activity(LIMITS.ttl_seconds)
    lines = _backup_lines(users, now_ms, texts, rng, activity)
    report = await restore_lines(client, lines, ttl_seconds=LIMITS.ttl_seconds, source="scale")
    if report.sessions != len(users) * SESSIONS_PER_USER or report.users != len(users):
        raise RuntimeError(f"populating wrote {report}, not {len(users)} users' sessions")
    await activity.write(client)


def _backup_lines(
    users: range, now_ms: int, texts: _Texts, rng: random.Random, activity: _Activity
) -> Iterator[str]:
    """A backup file's lines for `users`; each session's activity goes to `activity`."""
    yield json.dumps({"format": FORMAT, "version": VERSION, "createdAt": now_ms})
    ttl_ms = LIMITS.ttl_seconds * 1000
    messages = 0
    for number in users:
        uid = user_id(number)
        created_ms = now_ms - FIRST_SESSION_AGO_MS + rng.randrange(START_SPREAD_MS)
        newest: dict[str, Any] = {}
        for _ in range(SESSIONS_PER_USER):
            newest = _session_record(uid, created_ms, ttl_ms, texts, rng)
            activity.add(newest["id"], created_ms)
            for message in newest["messages"][1::2]:
                activity.add(newest["id"], message["timestamp"])
            messages += len(newest["messages"])
            created_ms += SESSION_GAP_MS
            yield json.dumps(newest)
        yield json.dumps({"kind": "user", "userId": uid, "active": newest["id"], "model": None,
                          "expiresAt": newest["expiresAt"]})  # fmt: skip
    yield json.dumps({"kind": "end", "sessions": len(users) * SESSIONS_PER_USER,
                      "users": len(users), "messages": messages})  # fmt: skip


def _session_record(
    uid: str, created_ms: int, ttl_ms: int, texts: _Texts, rng: random.Random
) -> dict[str, Any]:
    """An untitled session after TURNS_PER_SESSION turns: titled after its first question,
    expiring SESSION_TTL after its last message (the sliding expiry)."""
    messages: list[dict[str, Any]] = []
    moment = created_ms
    for _ in range(TURNS_PER_SESSION):
        moment += rng.randrange(5_000, 60_000)
        question = {"seq": len(messages) + 1, "role": "user", "timestamp": moment,
                    "content": rng.choice(texts.questions)}  # fmt: skip
        moment += rng.randrange(500, 5_000)
        answer = {"seq": len(messages) + 2, "role": "assistant", "timestamp": moment,
                  "content": rng.choice(texts.answers), "model": MODEL, "usage": USAGE}  # fmt: skip
        messages += [question, answer]
    return {
        "kind": "session",
        "id": new_session_id(uid),
        "userId": uid,
        "title": messages[0]["content"].split("\n")[0][:TITLE_LENGTH],
        "model": MODEL,
        "createdAt": created_ms,
        "updatedAt": moment,
        "seq": len(messages),
        "lastActivity": moment,
        "expiresAt": moment + ttl_ms,
        "messages": messages,
    }


# --- measuring ----------------------------------------------------------------------------


Operation = Callable[[str, random.Random], Awaitable[None]]


def _operations(commands: CommandHandler) -> dict[str, Operation]:
    """Each operation as a front performs it, for one user; a refusal or error raises."""

    async def sessions_command(user: str, rng: random.Random) -> None:
        _check(await commands.handle(user, "/sessions"), "/sessions")

    async def switch_command(user: str, rng: random.Random) -> None:
        number = rng.randint(1, SESSIONS_PER_USER)
        _check(await commands.handle(user, f"/switch {number}"), "/switch")

    async def turn(user: str, rng: random.Random) -> None:
        outcome = await commands.handle(user, QUESTION)
        if not isinstance(outcome, TurnReply):
            raise TypeError(f"a plain message gave {outcome!r}")
        async with outcome.turn as running:
            async for _ in running.deltas():
                pass
        if running.reply is None:
            raise RuntimeError("the turn stored no answer")

    async def health(user: str, rng: random.Random) -> None:
        await commands.store.ping()
        await commands.store.active_session_count()

    async def ping(user: str, rng: random.Random) -> None:
        await commands.store.ping()

    operations = (sessions_command, switch_command, turn, health, ping)
    return {operation.__name__: operation for operation in operations}


def _check(outcome: object, command: str) -> None:
    if not isinstance(outcome, Reply) or outcome.is_error:
        raise RuntimeError(f"{command} answered {outcome!r}")


async def _measure(
    commands: CommandHandler, users: int, samples: int, rng: random.Random
) -> dict[str, Latency]:
    """Each operation's latency, as the median of PASSES passes a little apart in time.

    A busy neighbour on the machine can stall a whole pass; the median pass leaves it out.
    """
    operations = _operations(commands)
    passes: dict[str, list[Latency]] = {name: [] for name in operations}
    for number in range(PASSES):
        if number:
            await asyncio.sleep(PAUSE_SECONDS)
        timings = await _one_pass(operations, users, samples, rng)
        for name, values in timings.items():
            passes[name].append(_latency(values))
    return {
        name: Latency(
            p50_ms=statistics.median(pass_.p50_ms for pass_ in found),
            p99_ms=statistics.median(pass_.p99_ms for pass_ in found),
        )
        for name, found in passes.items()
    }


async def _one_pass(
    operations: dict[str, Operation], users: int, samples: int, rng: random.Random
) -> dict[str, list[float]]:
    """Milliseconds per call: rounds of every operation in a shuffled order, each on a user
    drawn uniformly from the population; the first WARMUP_ROUNDS rounds are left out."""
    timings: dict[str, list[float]] = {name: [] for name in operations}
    order = list(operations.items())
    gc.collect()
    for round_number in range(WARMUP_ROUNDS + samples):
        rng.shuffle(order)
        for name, operation in order:
            user = user_id(rng.randrange(users))
            began = time.perf_counter()
            await operation(user, rng)
            elapsed_ms = (time.perf_counter() - began) * 1000
            if round_number >= WARMUP_ROUNDS:
                timings[name].append(elapsed_ms)
    return timings


def _latency(values: Sequence[float]) -> Latency:
    if len(values) < 2:
        only = values[0] if values else float("nan")
        return Latency(only, only)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return Latency(p50_ms=cuts[49], p99_ms=cuts[98])


def _flatness(first: ScaleStep, last: ScaleStep, percentile: str) -> Flatness:
    def ratio(operation: str) -> float:
        latest: float = getattr(getattr(last, operation), percentile)
        earliest: float = getattr(getattr(first, operation), percentile)
        return latest / earliest

    return Flatness(**{field.name: ratio(field.name) for field in fields(Flatness)})
