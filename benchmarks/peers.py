"""The well-known peer: LangChain's RedisChatMessageHistory, on the same Redis in the same run.

Needs the `bench` extra (langchain-community). The peer is measured doing the work ours does:
per turn, read the session's history for the model, store the user's message and the reply,
with the same texts and the same TTL; and, for memory, the same conversations as
`measures.memory_per_message`, measured the same way (`used_memory` deltas after FLUSHALL).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from langchain_community.chat_message_histories import RedisChatMessageHistory
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from benchmarks.harness import REPLY
from benchmarks.measures import MODEL, _message_text, _rate, _used_memory
from core.sessions.limits import SessionLimits

TTL_SECONDS = SessionLimits().ttl_seconds  # ours: every session key expires after this
# LangChain reads a history whole, so its users start a new conversation every 20 turns (40
# messages, about what ours reads of a conversation of short messages).
CONVERSATION_TURNS = 20
MEMORY_SEED = 7  # measures.memory_per_message's: the same seed gives the same conversations

MessageText = Callable[[random.Random, int], str]


@dataclass(frozen=True)
class PeerFigures:
    turns_per_second: Mapping[int, float]  # by number of concurrent users
    messages: int
    langchain_bytes: int  # divide by measures.Memory.content_bytes: the contents are the same


async def peer_figures(
    url: str,
    concurrencies: tuple[int, ...],
    turns: int,
    sessions: int,
    messages_per_session: int,
) -> PeerFigures:
    """Every LangChain figure, with the sizes `python -m benchmarks` gives ours."""
    rates = {}
    for users in concurrencies:
        rates[users] = await langchain_turns_per_second(url, users, max(1, turns // users))
    stored = await langchain_bytes(url, sessions, messages_per_session)
    return PeerFigures(rates, sessions * messages_per_session, stored)


async def langchain_turns_per_second(
    url: str, users: int, turns_each: int, conversation_turns: int = CONVERSATION_TURNS
) -> float:
    """Turns per second of `users` concurrent users, each as RunnableWithMessageHistory runs it.

    Its async path (with a `history_messages_key`) calls `aget_messages()` before the model and
    `aadd_messages([question, answer])` after it. The class only has a sync redis-py client, so
    both run in the event loop's default executor (`run_in_executor(None, ...)`, the same pool
    `asyncio.to_thread` uses): that is how a LangChain app serves concurrent users, and it caps
    the Redis calls in flight at that pool's size (min(32, CPUs + 4) threads). A turn costs five
    round trips: LRANGE of the whole list, then LPUSH + EXPIRE per message.

    Warm-up, outside the timing as it is for ours (whose pool is warm from earlier measures):
    every user's history is built, and its connection opened, before the clock starts.
    """
    async with aioredis.Redis.from_url(url) as admin:
        await admin.flushall()
    histories = [
        RedisChatMessageHistory(f"bench:{number}:0", url=url, ttl=TTL_SECONDS)
        for number in range(users)
    ]
    await asyncio.gather(*(asyncio.to_thread(h.redis_client.ping) for h in histories))

    async def one_user(history: RedisChatMessageHistory) -> None:
        for turn_number in range(turns_each):
            if turn_number and turn_number % conversation_turns == 0:
                history.session_id = f"{history.session_id.rsplit(':', 1)[0]}:{turn_number}"
            await history.aget_messages()  # the context the model would be sent
            question = HumanMessage(f"question {turn_number}")
            await history.aadd_messages([question, _answer(REPLY, 12, 14)])  # InstantModel's usage

    try:
        return await _rate(
            lambda: asyncio.gather(*(one_user(h) for h in histories)), users * turns_each
        )
    finally:
        for history in histories:
            history.redis_client.close()


async def langchain_bytes(
    url: str, sessions: int, messages_per_session: int, contents: MessageText = _message_text
) -> int:
    """Redis memory (`used_memory` delta) for `memory_per_message`'s conversations, as LangChain
    stores them: a list of JSON messages per session, with the TTL ours has.

    Assistant messages carry the model and token counts ours stores, in LangChain's fields for
    them (`response_metadata`, `usage_metadata`).
    """
    rng = random.Random(MEMORY_SEED)  # noqa: S311  (reproducible test data, not security)
    conversations = [
        [contents(rng, index) for index in range(messages_per_session)] for _ in range(sessions)
    ]
    async with aioredis.Redis.from_url(url) as client:
        await client.flushall()
        baseline = await _used_memory(client)
        await asyncio.to_thread(_store, url, conversations)
        return await _used_memory(client) - baseline


def _store(url: str, conversations: Sequence[Sequence[str]]) -> None:
    """The class's own commands (LPUSH + EXPIRE per message), sent as one pipeline per session."""
    history = RedisChatMessageHistory("", url=url, ttl=TTL_SECONDS)
    client = history.redis_client
    try:
        for number, conversation in enumerate(conversations):
            history.session_id = f"bench:{number}"
            with client.pipeline(transaction=False) as pipe:
                history.redis_client = pipe
                history.add_messages(
                    [_message(index, text) for index, text in enumerate(conversation)]
                )
                pipe.execute()
    finally:
        client.close()


def _message(index: int, text: str) -> BaseMessage:
    """As `memory_per_message` stores them: user messages at even indexes, answers at odd."""
    return _answer(text, 120, 340) if index % 2 else HumanMessage(text)


def _answer(text: str, prompt_tokens: int, completion_tokens: int) -> AIMessage:
    """An answer with the model and token counts ours stores, in LangChain's fields for them."""
    return AIMessage(
        text,
        response_metadata={"model_name": MODEL},
        usage_metadata={
            "input_tokens": prompt_tokens,
            "output_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    )
