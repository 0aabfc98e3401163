"""A lean fake model for streams.py, in a child process: OpenRouter's streamed chat completion
(SSE chunks of `chat.completion.chunk`, a last chunk with usage, `data: [DONE]`), a token every
1/rate seconds, for thousands of streams at once.

tests/fakes/openrouter_server.py is strict (it validates every request, counts the prompt's
tokens with tiktoken, records every request) and costs too much CPU per request and per delta
to pace thousands of streams on a shared core; this one parses only what it needs: the request
line, Content-Length, and the `turn-<number>` marker the load generator puts in each question,
whose arrival time it records (`time.monotonic()`, system-wide on Linux, so comparable with the
parent's). One ticker writes the next token of every open stream each 1/rate seconds: one
timer for all streams, pre-encoded chunks, no per-stream task.

Control on stdin/stdout, one JSON line each way: `{"receipts": true}` answers the arrival
times recorded since the last such request, with this process's CPU seconds.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

MARKER = re.compile(rb"turn-(\d+)")
MODELS_BODY = json.dumps(
    {
        "data": [
            {
                "id": "openai/gpt-4o-mini",
                "context_length": 128000,
                "architecture": {"input_modalities": ["text"], "output_modalities": ["text"]},
                "pricing": {"prompt": "0.00000015", "completion": "0.0000006"},
            }
        ]
    }
).encode()
WORDS = ("tides", "rise", "and", "fall", "twice", "a", "day", "as", "the", "moon", "pulls")


def answer_words(tokens: int) -> list[str]:
    """The answer, a word per token: the same for every stream, so that a front's final text
    can be recognised (streams.py tells the fake Bot API what it is)."""
    return [WORDS[index % len(WORDS)] for index in range(tokens)]


def _chunk(payload: Mapping[str, object]) -> bytes:
    """One SSE event in one HTTP/1.1 chunk."""
    event = b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
    return f"{len(event):x}\r\n".encode() + event + b"\r\n"


def _delta(word: str, first: bool) -> dict[str, object]:
    content = word if first else " " + word
    return {
        "id": "gen-bench",
        "object": "chat.completion.chunk",
        "model": "openai/gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": content}}],
    }


def encoded_answer(tokens: int) -> list[bytes]:
    """Every chunk of one answer: a token each, then the usage and [DONE] with the last one."""
    chunks = [_chunk(_delta(word, index == 0)) for index, word in enumerate(answer_words(tokens))]
    final = {
        "id": "gen-bench",
        "object": "chat.completion.chunk",
        "model": "openai/gpt-4o-mini",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": tokens, "total_tokens": tokens + 20},
    }
    done = b"data: [DONE]\n\n"
    chunks[-1] += _chunk(final) + f"{len(done):x}\r\n".encode() + done + b"\r\n0\r\n\r\n"
    return chunks


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


@dataclass
class Streams:
    """The streams under way; each gets its next chunk on every tick."""

    chunks: list[bytes]
    under_way: dict[asyncio.Transport, int] = field(default_factory=dict)
    receipts: dict[int, float] = field(default_factory=dict)

    def tick(self) -> None:
        ended = []
        for transport, sent in self.under_way.items():
            if transport.is_closing():
                ended.append(transport)
                continue
            transport.write(self.chunks[sent])
            if sent + 1 == len(self.chunks):
                ended.append(transport)
            else:
                self.under_way[transport] = sent + 1
        for transport in ended:
            del self.under_way[transport]


class ModelProtocol(asyncio.Protocol):
    """One client connection, kept alive between requests (httpx reuses its connections)."""

    def __init__(self, streams: Streams) -> None:
        self.streams = streams
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.Transport):  # always, for a TCP server
            self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.streams.under_way.pop(self.transport, None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end]
            length = _content_length(head)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self._answer(head, body)

    def _answer(self, head: bytes, body: bytes) -> None:
        if self.transport is None:
            return
        if head.startswith(b"GET"):
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(MODELS_BODY)).encode() + b"\r\n\r\n" + MODELS_BODY
            )  # fmt: skip
            return
        now = time.monotonic()
        markers = MARKER.findall(body)
        if markers:
            self.streams.receipts[int(markers[-1])] = now
        self.transport.write(STREAM_HEAD)
        self.streams.under_way[self.transport] = 0


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


async def _ticking(streams: Streams, seconds: float) -> None:
    """A tick every `seconds` on the clock (not after the last one): a late tick is not
    followed by a late next one, so the rate holds while the process keeps up."""
    loop = asyncio.get_running_loop()
    due = loop.time()
    while True:
        due += seconds
        await asyncio.sleep(max(0.0, due - loop.time()))
        streams.tick()


def serve() -> None:
    """argv after -c: tokens per answer, tokens a second."""
    asyncio.run(_serve(int(sys.argv[1]), float(sys.argv[2])))


async def _serve(tokens: int, rate: float) -> None:
    loop = asyncio.get_running_loop()
    streams = Streams(encoded_answer(tokens))
    server = await loop.create_server(lambda: ModelProtocol(streams), "127.0.0.1", 0, backlog=8192)
    port = server.sockets[0].getsockname()[1]
    ticker = asyncio.create_task(_ticking(streams, 1 / rate))

    def say(message: object) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    say({"reply": f"http://127.0.0.1:{port}/api/v1"})
    try:
        while line := await asyncio.to_thread(sys.stdin.readline):
            if "receipts" in json.loads(line):
                receipts, streams.receipts = streams.receipts, {}
                say({"reply": [receipts, time.process_time()]})
    finally:
        ticker.cancel()
        server.close()
