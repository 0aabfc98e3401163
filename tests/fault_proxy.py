"""A TCP proxy between our Redis client and a real redis-server, under the test's control.

It forwards both ways, reading the client's requests and the server's replies one RESP value
at a time (redis-py sends every command as an array of bulk strings), so that a test can:

- drop the reply to the next command matching a predicate, after Redis ran it, and reset the
  client's connection instead (`drop_reply`): what a network blip between a script and its
  reply does, and why redis-py's retry runs the script a second time;
- reset every client connection now (`reset_connections`);
- hold every reply back for a while (`delay_replies`);
- hold the replies to the commands matching a predicate until the test lets them go
  (`hold_replies`): Redis ran them, and their connections stay taken meanwhile.

    async with FaultProxy(redis_server.address) as proxy:
        client = redis_from_settings(load_settings(), url=proxy.url)
        lost = proxy.drop_reply(evalsha_of("append_message"))

Every command that went through is kept in `commands`, so a test can count how many times
Redis was asked to run a script.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from core.sessions.scripts import script_sha

CRLF = b"\r\n"
# RESP3 types whose value is one line, and those followed by a length and that many bytes.
LINE_TYPES = frozenset(b"+-:_,#(")
BLOB_TYPES = frozenset(b"$=!")
# Aggregates: how many values follow per announced element.
AGGREGATE_TYPES = {ord("*"): 1, ord("~"): 1, ord(">"): 1, ord("%"): 2, ord("|"): 2}


@dataclass(frozen=True)
class Command:
    """One request as the client sent it: the command's name (upper case) and its arguments."""

    name: str
    args: tuple[bytes, ...]

    @property
    def script_sha(self) -> str | None:
        """The SHA1 name of the script an EVALSHA runs, else None."""
        if self.name in ("EVALSHA", "EVALSHA_RO") and self.args:
            return self.args[0].decode()
        return None

    def arg(self, index: int) -> str:
        """One argument as text ('' when there is none at `index`)."""
        return self.args[index].decode() if -len(self.args) <= index < len(self.args) else ""


Matcher = Callable[[Command], bool]


def evalsha_of(script_name: str, *, when: Matcher | None = None) -> Matcher:
    """Matches an EVALSHA of one of core/sessions/lua's scripts (and `when`, if given)."""
    sha = script_sha(script_name)
    return lambda command: command.script_sha == sha and (when is None or when(command))


@dataclass
class DroppedReply:
    """A `drop_reply` rule: fires once, at the first command it matches."""

    matches: Matcher
    command: Command | None = None  # the command whose reply was dropped
    _fired: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def has_fired(self) -> bool:
        return self._fired.is_set()

    async def fired(self) -> Command:
        await self._fired.wait()
        assert self.command is not None
        return self.command


@dataclass
class HeldReplies:
    """A `hold_replies` rule: the replies to every command it matches wait until `release()`."""

    matches: Matcher
    held: int = 0  # replies from Redis waiting now
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self._released.set()

    async def passage(self) -> None:
        self.held += 1
        try:
            await self._released.wait()
        finally:
            self.held -= 1


class FaultProxy:
    """Listens on 127.0.0.1 (any free port) and forwards to `upstream`."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._rules: list[DroppedReply] = []
        self._holds: list[HeldReplies] = []
        self.reply_delay = 0.0
        self.commands: list[Command] = []
        self.resets = 0
        self.replies_delayed = 0  # replies that arrived from Redis and were held back

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the proxy first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            await link.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def drop_reply(self, matches: Matcher) -> DroppedReply:
        """Drop the reply to the next command `matches` accepts, and reset its connection."""
        rule = DroppedReply(matches)
        self._rules.append(rule)
        return rule

    def hold_replies(self, matches: Matcher) -> HeldReplies:
        """Hold back the replies to the commands `matches` accepts until `release()`."""
        rule = HeldReplies(matches)
        self._holds.append(rule)
        return rule

    def reset_connections(self) -> int:
        """Reset every client connection now (TCP RST); returns how many there were."""
        links = list(self._links)
        for link in links:
            link.reset()
        return len(links)

    def delay_replies(self, seconds: float) -> None:
        """Hold every reply back `seconds` before forwarding it (0: forward at once again)."""
        self.reply_delay = seconds

    def count(self, matches: Matcher) -> int:
        """How many commands that went through `matches` accepts."""
        return sum(1 for command in self.commands if matches(command))

    def _claim(self, command: Command) -> DroppedReply | HeldReplies | None:
        """The first unfired rule that matches `command`, now taken by it, else the first
        unreleased hold that matches it."""
        for rule in self._rules:
            if rule.command is None and rule.matches(command):
                rule.command = command
                return rule
        for hold in self._holds:
            if not hold._released.is_set() and hold.matches(command):
                return hold
        return None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(self, (reader, writer), upstream)
        self._links.add(link)
        try:
            await link.run()
        finally:
            self._links.discard(link)


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _Link:
    """One client connection and its own connection to Redis."""

    def __init__(self, proxy: FaultProxy, client: Stream, upstream: Stream) -> None:
        self._proxy = proxy
        self._client_reader, self._client_writer = client
        self._upstream_reader, self._upstream_writer = upstream
        # One entry per request forwarded, in order: the rule dropping or holding its reply.
        self._pending: deque[DroppedReply | HeldReplies | None] = deque()
        self._tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        self._tasks = [
            asyncio.create_task(self._forward_requests()),
            asyncio.create_task(self._forward_replies()),
        ]
        await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        await self.close()

    def reset(self) -> None:
        """Abort the client's side with a TCP RST, as a peer or a middlebox that gives up."""
        sock = self._client_writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._client_writer.transport.abort()
        self._upstream_writer.transport.abort()
        self._proxy.resets += 1

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for writer in (self._client_writer, self._upstream_writer):
            writer.transport.abort()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task

    async def _forward_requests(self) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                raw, command = await read_request(self._client_reader)
                self._proxy.commands.append(command)
                self._pending.append(self._proxy._claim(command))
                self._upstream_writer.write(raw)
                await self._upstream_writer.drain()

    async def _forward_replies(self) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                raw = await read_value(self._upstream_reader)
                # A RESP3 push (`>`) answers no request; anything else answers the oldest.
                rule = self._pending.popleft() if raw[:1] != b">" else None
                if isinstance(rule, HeldReplies):
                    await rule.passage()
                elif rule is not None:
                    # Redis has run the command (its reply is here): the client never learns.
                    self.reset()
                    rule._fired.set()
                    return
                if self._proxy.reply_delay > 0:
                    self._proxy.replies_delayed += 1
                    await asyncio.sleep(self._proxy.reply_delay)
                self._client_writer.write(raw)
                await self._client_writer.drain()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, Command]:
    """One request: its raw bytes and the command. redis-py sends arrays of bulk strings."""
    header = await reader.readuntil(CRLF)
    if header[:1] != b"*":
        raise ConnectionError(f"not a RESP array request: {header[:20]!r}")
    raw, parts = [header], []
    for _ in range(int(header[1:-2])):
        length_line = await reader.readuntil(CRLF)
        data = await reader.readexactly(int(length_line[1:-2]) + 2)
        raw += [length_line, data]
        parts.append(data[:-2])
    name = parts[0].decode(errors="replace").upper() if parts else ""
    return b"".join(raw), Command(name, tuple(parts[1:]))


async def read_value(reader: asyncio.StreamReader) -> bytes:
    """One RESP2/RESP3 value (a reply), as raw bytes."""
    line = await reader.readuntil(CRLF)
    kind = line[0]
    if kind in LINE_TYPES:
        return line
    length = int(line[1:-2])
    if kind in BLOB_TYPES:
        return line + (await reader.readexactly(length + 2) if length >= 0 else b"")
    if kind in AGGREGATE_TYPES:
        values = [await read_value(reader) for _ in range(max(length, 0) * AGGREGATE_TYPES[kind])]
        return line + b"".join(values)
    raise ConnectionError(f"unknown RESP type in {line[:20]!r}")
