"""Shared by every benchmark: its own redis-server, a counting connection, an instant model
(and a paced one, for streaming)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection

from core.conversation import Usage
from core.llm.wire import ChatMessage, CompletionDone, StreamEvent, TextDelta
from core.storage.connection import MAX_CONNECTIONS, POOL_WAIT_SECONDS

REPLY = "A short answer from a model that takes no time at all to think."


class CountingConnection(Connection):
    """Counts writes to the socket: one per command, or one per pipeline — a round trip each."""

    round_trips = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.round_trips += 1
        await super().send_packed_command(command, check_health)


class InstantModel:
    """A model that answers at once, so the figures are ours and Redis's alone."""

    is_configured = True

    async def stream(
        self, messages: Sequence[ChatMessage], *, model: str, max_tokens: int | None = None
    ) -> AsyncIterator[StreamEvent]:
        for word in REPLY.split(" "):
            yield TextDelta(word + " ")
        yield CompletionDone(model=model, usage=Usage(12, 14, 0.00001), finish_reason="stop")


class NoTranscriber:
    """The benchmarks send no audio."""

    async def transcribe(self, audio: bytes, media_type: str) -> NoReturn:
        raise NotImplementedError("no audio in the benchmarks")


class PacedModel:
    """The same answer as InstantModel's, a word every `seconds_per_word`: a model that takes
    its time, so that a chat front has something to stream."""

    is_configured = True

    def __init__(self, seconds_per_word: float) -> None:
        self.seconds_per_word = seconds_per_word

    async def stream(
        self, messages: Sequence[ChatMessage], *, model: str, max_tokens: int | None = None
    ) -> AsyncIterator[StreamEvent]:
        for word in REPLY.split(" "):
            await asyncio.sleep(self.seconds_per_word)
            yield TextDelta(word + " ")
        yield CompletionDone(model=model, usage=Usage(12, 14, 0.00001), finish_reason="stop")


@contextmanager
def redis_server() -> Iterator[str]:
    """A fresh redis-server on a free port, like the shipped config minus persistence."""
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("make bench needs redis-server on PATH (apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        args = [
            executable,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            directory,
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "noeviction",
        ]
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL)  # noqa: S603
        try:
            _wait_for(port)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait()


def counting_client(url: str) -> aioredis.Redis:
    """A client whose pool waits for a free connection, as the service's does
    (core/storage/connection.py): redis-py's default pool refuses the 101st."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, decode_responses=True, encoding_errors="surrogateescape",
        connection_class=CountingConnection, max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_SECONDS,
    )  # fmt: skip
    return aioredis.Redis(connection_pool=pool)


async def command_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return sum(int(entry["calls"]) for name, entry in stats.items() if name != "cmdstat_info")


def _wait_for(port: int) -> None:
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return
        except OSError:
            time.sleep(0.02)
    raise SystemExit("redis-server did not start")
