"""The measurements: round trips per command, turns per second, bytes per message."""

from __future__ import annotations

import asyncio
import io
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pydoc_data import topics as pydoc_topics

import redis.asyncio as aioredis
from PIL import Image

from benchmarks.harness import (
    REPLY,
    CountingConnection,
    InstantModel,
    NoTranscriber,
    command_calls,
)
from core.attachments.intake import AttachmentIntake, IncomingFile, IntakeLimits
from core.chat import ChatService, TurnSettings
from core.commands import CommandHandler, TurnReply
from core.conversation import Role, Usage
from core.observability.activity import SessionActivity
from core.sessions.keys import (
    new_session_id,
    session_key,
    user_index_key,
    user_state_key,
    user_tag,
)
from core.sessions.limits import SessionLimits
from core.sessions.scripts import script_source
from core.sessions.store import SessionStore
from core.tokens import DEFAULT_CONTEXT_TOKENS

MODEL = "openai/gpt-4o-mini"
# Real English prose with code in it, as model answers are: the pydoc topics that ship with
# CPython (Lib/pydoc_data). Average word length matters here: per-message overhead is fixed, so
# a made-up vocabulary of short words (the first version of this benchmark) inflates the ratio.
WORDS = " ".join(pydoc_topics.topics.values()).split()
# Reading used_memory until it holds still, after dropping keys (see _forget_calls).
SETTLE_POLLS = 20
SETTLE_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Cost:
    round_trips: int
    commands: int


# What the service does to a photo (the shipped IMAGE_MAX_SIDE and MAX_ATTACHMENT_BYTES).
INTAKE_LIMITS = IntakeLimits(
    max_file_bytes=10 * 1024 * 1024, image_max_side=1568, max_document_chars=100_000
)


@dataclass(frozen=True)
class ImageCost:
    original_bytes: int
    stored_bytes: int
    turn: Cost


def build(
    client: aioredis.Redis, limits: SessionLimits | None = None
) -> tuple[ChatService, CommandHandler]:
    store = SessionStore(client, limits or SessionLimits())
    chat = ChatService(store, InstantModel(), TurnSettings("Be brief.", MODEL))
    return chat, CommandHandler(chat, intake=AttachmentIntake(INTAKE_LIMITS, NoTranscriber()))


async def run_command(
    commands: CommandHandler, user: str, message: str, files: Sequence[IncomingFile] = ()
) -> None:
    outcome = await commands.handle(user, message, files=files)
    if isinstance(outcome, TurnReply):
        async with outcome.turn as turn:
            async for _ in turn.deltas():
                pass


async def round_trips(client: aioredis.Redis, observer: aioredis.Redis) -> dict[str, Cost]:
    """Round trips (socket writes) and Redis commands (INFO commandstats) per chat command."""
    _, commands = build(client)
    user = "bench:round-trips"
    for warmup in ("/new warm", "load every script", "/sessions", "/switch 1", "/history"):
        await run_command(commands, user, warmup)
    costs = {}
    for label, message in [
        ("new session", "/new Tides"),
        ("plain turn", "How do tides work?"),
        ("/sessions", "/sessions"),
        ("/switch", "/switch 2"),
        ("/history", "/history"),
    ]:
        before_calls = await command_calls(observer)
        CountingConnection.round_trips = 0
        await run_command(commands, user, message)
        trips = CountingConnection.round_trips
        costs[label] = Cost(trips, await command_calls(observer) - before_calls - 1)
    return costs


def camera_photo(width: int = 4032, height: int = 3024) -> bytes:
    """A phone camera's JPEG (12 MP, quality 92): noise over a gradient, which compresses about
    as badly as a real scene does."""
    rng = random.Random(7)  # noqa: S311  (the same photo every run, not a secret)
    noise = Image.frombytes("L", (width, height), rng.randbytes(width * height))
    scene = Image.merge("RGB", (noise, Image.linear_gradient("L").resize((width, height)), noise))
    out = io.BytesIO()
    scene.save(out, format="JPEG", quality=92)
    return out.getvalue()


async def image_turn(client: aioredis.Redis, observer: aioredis.Redis) -> ImageCost:
    """A turn with a phone photo: its round trips, and the bytes Redis keeps of the photo."""
    _, commands = build(client)
    user = "bench:image"
    photo = camera_photo()
    await run_command(commands, user, "warm up", [IncomingFile(photo, "warm.jpg")])
    before_calls = await command_calls(observer)
    CountingConnection.round_trips = 0
    await run_command(commands, user, "What is in this picture?", [IncomingFile(photo, "p.jpg")])
    turn = Cost(CountingConnection.round_trips, await command_calls(observer) - before_calls - 1)
    session = await observer.hget(user_state_key(user), "active")
    stored = await observer.hstrlen(session_key(str(session), ":files"), "3-1")
    return ImageCost(len(photo), stored, turn)


def counting_limits(turns_each: int) -> SessionLimits:
    """The per-user rate limit on, and just high enough that no turn of the run is refused."""
    return SessionLimits(rate_limit_messages=turns_each, rate_limit_window_seconds=3600)


async def turns_per_second(client: aioredis.Redis, users: int, turns_each: int) -> float:
    chat, _ = build(client, counting_limits(turns_each))
    await client.flushall()

    async def one_user(number: int) -> None:
        for turn_number in range(turns_each):
            async with chat.turn(f"question {turn_number}", user_id=f"bench:{number}") as turn:
                async for _ in turn.deltas():
                    pass

    return await _rate(
        lambda: asyncio.gather(*(one_user(n) for n in range(users))), users * turns_each
    )


async def raw_turns_per_second(client: aioredis.Redis, users: int, turns_each: int) -> float:
    """The floor: the same two round trips per turn, sent straight from redis-py."""
    await client.flushall()
    begin = client.register_script(script_source("begin_turn"))
    append = client.register_script(script_source("append_message"))
    await client.script_load(append.script)
    activity = SessionActivity(3600)
    rate_limit, window_ms, budget = counting_limits(turns_each).turn_limit_args()

    async def one_user(number: int) -> None:
        user = f"raw:{number}"
        tag, new_id = user_tag(user), new_session_id(user)
        for turn_number in range(turns_each):
            token = secrets.token_hex(12)
            reply = await begin(
                keys=[user_index_key(user)],
                args=[
                    tag,
                    user,
                    "",
                    new_id,
                    f"question {turn_number}",
                    token,
                    30000,
                    3600,
                    100,
                    DEFAULT_CONTEXT_TOKENS,
                    MODEL,
                    60,
                    rate_limit,
                    window_ms,
                    budget,
                ],
            )
            sid = reply[1]
            # The same pipeline the store sends: the append and the activity record.
            async with client.pipeline(transaction=False) as pipe:
                pipe.evalsha(
                    append.sha, 1, session_key(sid),
                    tag, sid, "", "a", REPLY, MODEL, 12, 14, 0.00001, 3600, 100, token, 0, "",
                    token,
                )  # fmt: skip
                activity.record(pipe, sid)
                await pipe.execute()

    return await _rate(
        lambda: asyncio.gather(*(one_user(n) for n in range(users))), users * turns_each
    )


@dataclass(frozen=True)
class Memory:
    mix: str
    messages: int
    content_bytes: int
    ours_bytes: int
    original_bytes: int


MessageText = Callable[[random.Random, int], str]


async def memory_per_message(
    client: aioredis.Redis, sessions: int, per_session: int, mix: str = "prose"
) -> Memory:
    """Redis memory for the same conversations in our layout and in the original design's;
    `mix`: "prose" (_message_text) or "chat" (chat_text)."""
    rng = random.Random(7)  # noqa: S311  (reproducible test data, not security)
    text_of: MessageText = chat_text if mix == "chat" else _message_text
    conversations = [[text_of(rng, index) for index in range(per_session)] for _ in range(sessions)]
    await _load_scripts(client)
    content = sum(len(text.encode()) for conversation in conversations for text in conversation)
    await client.flushall()
    baseline = await _used_memory(client)
    store = SessionStore(client, SessionLimits(max_messages_per_session=per_session))
    for number, conversation in enumerate(conversations):
        session = await store.create_session(f"bench:{number}", default_model=MODEL)
        for index, text in enumerate(conversation):
            if index % 2:
                await store.append_message(
                    session.id, Role.ASSISTANT, text, model=MODEL, usage=Usage(120, 340, 0.000231)
                )
            else:
                await store.append_message(session.id, Role.USER, text)
    await _forget_calls(client)
    ours = await _used_memory(client) - baseline
    await client.flushall()
    baseline = await _used_memory(client)
    for number, conversation in enumerate(conversations):
        await _original_layout(client, f"bench:{number}", conversation)
    original = await _used_memory(client) - baseline
    return Memory(mix, sessions * per_session, content, ours, original)


async def _load_scripts(client: aioredis.Redis) -> None:
    """Run the store's scripts once before the baseline: Redis keeps their source (about
    0.5 MB with lib.lua), which would otherwise count as stored messages (19 x at SIZE=tiny)."""
    store = SessionStore(client, SessionLimits())
    session = await store.create_session("bench:warm-up", default_model=MODEL)
    await store.append_message(session.id, Role.USER, "warm up")
    await client.flushall()


async def _original_layout(client: aioredis.Redis, user: str, conversation: list[str]) -> None:
    """As the original design stored it: session hash, user list, list of ids, hash per message."""
    session_id = secrets.token_hex(16)
    async with client.pipeline(transaction=False) as pipe:
        pipe.hset(
            f"session:{session_id}",
            mapping={
                "id": session_id,
                "userId": user,
                "title": "Chat",
                "model": MODEL,
                "createdAt": "2026-11-26T10:00:00.000Z",
            },
        )
        pipe.rpush(f"user:{user}:sessions", session_id)
        for index, text in enumerate(conversation):
            message_id = secrets.token_hex(16)
            fields = {
                "id": message_id,
                "role": "assistant" if index % 2 else "user",
                "content": text,
                "timestamp": "2026-11-26T10:00:00.000Z",
            }
            if index % 2:
                fields |= {"model": MODEL, "promptTokens": "120", "completionTokens": "340"}
            pipe.hset(
                f"message:{message_id}", items=[part for pair in fields.items() for part in pair]
            )
            pipe.rpush(f"session:{session_id}:messages", message_id)
        await pipe.execute()


def _message_text(rng: random.Random, index: int) -> str:
    """Chat-like sizes: questions of 5-60 words, answers of 30-250 words."""
    low, high = (30, 250) if index % 2 else (5, 60)
    return prose(rng, rng.randint(low, high))


# A chat mix: short questions, answers of a few paragraphs, in English and Brazilian
# Portuguese, some with emoji. Sentences are drawn from these, so byte counts are realistic:
# Portuguese takes two bytes per accented letter, an emoji four.
CHAT_SENTENCES = (
    "Can you help me with this?", "Thanks, that worked!", "What about the second option?",
    "Why does it fail when the list is empty?", "Make it shorter, please.",
    "Pode me ajudar com isso?", "Obrigado, funcionou! 🙏", "E se a lista estiver vazia?",
    "Não entendi a última parte, pode explicar de novo?", "Qual é a diferença entre os dois?",
    "Sure, here is how it works.", "The short answer is yes, with one exception.",
    "First, check that the configuration file exists and is readable by the service.",
    "Then restart the process so that it picks up the new value.",
    "If the error persists, look at the logs: the first line usually names the cause.",
    "Claro! Aqui está uma explicação passo a passo.",
    "Primeiro, verifique se o arquivo de configuração existe e pode ser lido.",
    "Depois, reinicie o serviço para que ele leia o novo valor. ✅",
    "Se o erro continuar, veja os registros: a primeira linha costuma dizer a causa.",
    "Isso acontece porque a função não trata o caso em que a lista está vazia. 😅",
    "Great question! 🎉", "That should do it. 👍", "Ótima pergunta! 🤔",
)  # fmt: skip


def chat_text(rng: random.Random, index: int) -> str:
    """Chat-like sizes: questions of 20-300 bytes, answers of 200-2,000 bytes, in paragraphs."""
    low, high = (200, 2000) if index % 2 else (20, 300)
    target = rng.randint(low, high)
    text = ""
    while len(text.encode()) < target:
        sentence = rng.choice(CHAT_SENTENCES)
        separator = "\n\n" if index % 2 and rng.random() < 0.25 else " "
        text = f"{text}{separator}{sentence}" if text else sentence
    return text.encode()[:target].decode(errors="ignore")


def prose(rng: random.Random, words: int) -> str:
    """`words` consecutive words of WORDS from a random place."""
    start = rng.randrange(len(WORDS) - words)
    return " ".join(WORDS[start : start + words])


async def _forget_calls(client: aioredis.Redis) -> None:
    """Drop what each append kept for a repeat of it (call:{T}:<id>, a minute: docs/data-model.md,
    "Repeated calls"), as expiry would: the layout is measured holding the conversations only.

    Redis shrinks its key table on a later tick of its cron (10 a second), as it would once the
    records expired; the memory is read once it has settled."""
    keys = [key async for key in client.scan_iter(match="call:*", count=1000)]
    for first in range(0, len(keys), 1000):
        await client.delete(*keys[first : first + 1000])
    used, previous = await _used_memory(client), -1
    for _ in range(SETTLE_POLLS):
        if used == previous:
            return
        await asyncio.sleep(SETTLE_POLL_SECONDS)
        used, previous = await _used_memory(client), used


async def _used_memory(client: aioredis.Redis) -> int:
    return int((await client.info("memory"))["used_memory"])


async def _rate(run: Callable[[], Awaitable[object]], count: int) -> float:
    started = time.perf_counter()
    await run()
    return count / (time.perf_counter() - started)
