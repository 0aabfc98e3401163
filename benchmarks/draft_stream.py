"""A streamed answer in a Telegram private chat: drafts against paced edits, on the same front.

**What runs.** The real `TelegramFront`, built as in `front_overhead.py` (webhook mode, updates
put on its queue, the strict fake Bot API in a child process), with the shipped settings
(TELEGRAM_EDIT_INTERVAL = 1.0 s, PTB's AIORateLimiter), and a model that streams the same
answer as the instant one, a word every WORD_SECONDS: 14 words over 1.4 s, so that both paths
have something to stream.

**The two sides**, each on chats of its own: `drafts`, the front as shipped (a private chat's
answer grows as drafts, then one sendMessage); `edits`, the same front with the fake refusing
drafts in those chats, so each streams as a group's answer does (a first message, then paced
edits). Each chat asks one warm-up question first, not counted: on the edits side its first
draft is the one refused, which turns the chat to edits for the rest of the run.

**Load.** `chats` private chats start together; each asks its next question once the last
answer is final (a closed loop), `updates_per_chat` times.

**Reported per answer:** Bot API requests (and which), CPU milliseconds of this process
(`time.process_time()`: front, PTB, httpx, redis-py), and the time from the update to the
first text the user sees (a draft, or the first message) and to the final message.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

from benchmarks.fake_bot_api import Answer, FakeBotApi, Stats, fake_bot_api
from benchmarks.front_overhead import SHIPPED, running_front
from benchmarks.harness import PacedModel

WORD_SECONDS = 0.1
FIRST_CHAT = 7_000_000
SIDES = ("drafts", "edits")


@dataclass(frozen=True)
class StreamSide:
    """One side of a row; times in ms, medians over the answers."""

    requests_per_answer: float
    by_method: dict[str, float]  # requests per answer, per Bot API method
    cpu_ms_per_answer: float
    first_text_p50_ms: float  # update -> the first text shown (a draft or a message)
    final_p50_ms: float  # update -> the message showing the whole answer


@dataclass(frozen=True)
class DraftStream:
    """One row: the same load streamed as drafts and as edits."""

    chats: int
    answers: int  # per side
    drafts: StreamSide
    edits: StreamSide


async def draft_stream(
    url: str, chats: tuple[int, ...] = (1, 20), updates_per_chat: int = 5
) -> list[DraftStream]:
    """One row per number of chats, each side on a Redis at `url` and chats of its own."""
    rows = []
    async with fake_bot_api() as fake:
        next_chat = FIRST_CHAT
        for count in chats:
            sides = {}
            for side in SIDES:
                ids = list(range(next_chat, next_chat + count))
                next_chat += count
                if side == "edits":
                    await fake.refuse_drafts(ids)
                sides[side] = await _measure(fake, url, ids, updates_per_chat)
            rows.append(DraftStream(count, count * updates_per_chat, **sides))
    return rows


async def _measure(fake: FakeBotApi, url: str, chat_ids: list[int], per_chat: int) -> StreamSide:
    model = PacedModel(WORD_SECONDS)
    updates = await fake.updates(chat_ids, per_chat + 1)  # a warm-up question first
    async with running_front(url, fake.base_url, SHIPPED, per_chat, model) as app:
        await asyncio.gather(*(fake.converse(app, updates[chat][:1]) for chat in chat_ids))
        before = await fake.stats()
        cpu = time.process_time()
        conversations = await asyncio.gather(
            *(fake.converse(app, updates[chat][1:]) for chat in chat_ids)
        )
        cpu = time.process_time() - cpu
        after = await fake.stats()
    answers = [answer for conversation in conversations for answer in conversation]
    return _side(answers, before, after, cpu)


def _side(answers: list[Answer], before: Stats, after: Stats, cpu: float) -> StreamSide:
    count = len(answers)
    methods = Counter(after.by_method)
    methods.subtract(before.by_method)
    return StreamSide(
        requests_per_answer=(after.requests - before.requests) / count,
        by_method={method: calls / count for method, calls in sorted(methods.items()) if calls},
        cpu_ms_per_answer=cpu * 1000 / count,
        first_text_p50_ms=_median_ms([a.first_at - a.sent_at for a in answers]),
        final_p50_ms=_median_ms([a.final_at - a.sent_at for a in answers]),
    )


def _median_ms(seconds: list[float]) -> float:
    ordered = sorted(seconds)
    return ordered[(len(ordered) - 1) // 2] * 1000
