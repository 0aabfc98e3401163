"""The websocket half of the fake Discord: Discord's gateway v10, JSON encoding.

One `FakeGateway` serves `GET /gateway` as a websocket. It speaks the documented handshake:

    server: HELLO (op 10, heartbeat_interval)      client: HEARTBEAT (op 1) any time
    client: IDENTIFY (op 2, token, intents, shard)  server: HEARTBEAT_ACK (op 11) to each
    server: READY (op 0, s 1), then GUILD_CREATE per guild of the shard
    client: RESUME (op 6) on a new connection     server: missed events, then RESUMED

and refuses the way Discord closes: 4001 unknown opcode, 4002 decode error (or a payload over
4096 bytes), 4003 not authenticated, 4004 authentication failed, 4005 already authenticated,
4010 invalid shard, 4012 invalid API version, 4013 invalid intents, 4014 disallowed
(privileged, not enabled in the portal) intents.

Transport compression is what the client asks for in the URL (`compress=zlib-stream`, which
discord.py always asks for unless it has zstd; or `zstd-stream`): every frame is then binary,
zlib frames ending with the Z_SYNC_FLUSH suffix `00 00 ff ff`.

Events reach sessions through `dispatch(event, data_for, guild_id=...)`: the shard is chosen as
Discord does (`(guild_id >> 22) % shard_count`, DMs on shard 0), `data_for(session)` may shape
the data per session (message content without the intent) or return None to skip it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import WSMsgType, web

API_VERSION = "10"
MAX_CLIENT_PAYLOAD = 4096
DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE, VOICE, RESUME, RECONNECT = 0, 1, 2, 3, 4, 6, 7
REQUEST_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 8, 9, 10, 11
GUILDS_INTENT = 1 << 0
MEMBERS_INTENT = 1 << 1
PRESENCES_INTENT = 1 << 8
GUILD_MESSAGES_INTENT = 1 << 9
DM_MESSAGES_INTENT = 1 << 12
MESSAGE_CONTENT_INTENT = 1 << 15
PRIVILEGED_INTENTS = MEMBERS_INTENT | PRESENCES_INTENT | MESSAGE_CONTENT_INTENT
# Every intent Discord defines (bits 0-16, 20, 21, 24, 25); anything else closes with 4013.
KNOWN_INTENTS = (1 << 17) - 1 | 1 << 20 | 1 << 21 | 1 << 24 | 1 << 25
ZLIB_SUFFIX = b"\x00\x00\xff\xff"


class GatewayHost(Protocol):
    """What the gateway needs from the fake Discord around it."""

    token: str
    heartbeat_interval_ms: int
    enabled_intents: int  # the privileged intents switched on in the "developer portal"

    @property
    def gateway_url(self) -> str: ...

    def ready_data(self, session: GatewaySession) -> dict[str, Any]: ...

    def guild_creates(self, session: GatewaySession) -> list[dict[str, Any]]: ...

    def members_chunk(self, guild_id: int, nonce: str | None) -> dict[str, Any]: ...


@dataclass
class GatewaySession:
    """One identified session; it outlives its connection so that RESUME can pick it up."""

    session_id: str
    intents: int
    shard: tuple[int, int]  # (shard_id, shard_count); (0, 1) when IDENTIFY sent none
    identify: dict[str, Any]
    sequence: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)  # every dispatch, for RESUME
    connection: GatewayConnection | None = None

    def has_intent(self, intent: int) -> bool:
        return bool(self.intents & intent)

    def serves_guild(self, guild_id: int | None) -> bool:
        shard_id, count = self.shard
        return (0 if guild_id is None else (guild_id >> 22) % count) == shard_id


@dataclass(frozen=True)
class Heartbeat:
    sequence: int | None
    at: float


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str


class GatewayConnection:
    """One websocket: frames go out in order through one writer, compressed as asked."""

    def __init__(self, ws: web.WebSocketResponse, compression: str | None) -> None:
        self.ws = ws
        self.compression = compression
        self.session: GatewaySession | None = None
        self._queue: asyncio.Queue[dict[str, Any] | _Close] = asyncio.Queue()
        self._zlib = zlib.compressobj() if compression == "zlib-stream" else None
        self._zstd = _zstd_compressor() if compression == "zstd-stream" else None
        self.is_closing = False
        self.is_done = asyncio.Event()  # set once the handler has let go of the socket

    def send(self, frame: dict[str, Any]) -> None:
        self._queue.put_nowait(frame)

    def close(self, code: int, reason: str) -> None:
        """Close after what is already queued has gone out."""
        self.is_closing = True
        self._queue.put_nowait(_Close(code, reason))

    async def run_writer(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):  # the client went away
            while True:
                item = await self._queue.get()
                if isinstance(item, _Close):
                    await self.ws.close(code=item.code, message=item.reason.encode())
                    return
                await self._write(json.dumps(item, separators=(",", ":")))

    async def _write(self, text: str) -> None:
        if self._zlib is not None:
            data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
            await self.ws.send_bytes(data)
        elif self._zstd is not None:
            await self.ws.send_bytes(self._zstd(text.encode()))
        else:
            await self.ws.send_str(text)


def _zstd_compressor() -> Callable[[bytes], bytes]:
    """A streaming zstd compressor flushed per frame, from the library discord.py itself uses."""
    try:
        from compression import zstd  # type: ignore[import-not-found]  # noqa: PLC0415 - Python 3.14+ only

        compressor = zstd.ZstdCompressor()
        return lambda data: compressor.compress(data, mode=zstd.ZstdCompressor.FLUSH_BLOCK)
    except ImportError:
        import zstandard  # type: ignore[import-not-found]  # noqa: PLC0415 - optional, as in discord.py

        stream = zstandard.ZstdCompressor().compressobj()
        return lambda data: stream.compress(data) + stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)


class FakeGateway:
    """The gateway of one fake Discord; see the module docstring."""

    def __init__(self, host: GatewayHost) -> None:
        self.host = host
        self.sessions: dict[str, GatewaySession] = {}
        self.identifies: list[dict[str, Any]] = []  # every IDENTIFY's `d`, token included
        self.resumes: list[dict[str, Any]] = []
        self.heartbeats: list[Heartbeat] = []
        self.heartbeat_acks = 0
        self.presence_updates: list[dict[str, Any]] = []
        self.close_codes: list[int] = []  # codes the fake closed connections with
        self.connections: list[GatewayConnection] = []  # open ones

    # Sending.

    def dispatch(
        self,
        event: str,
        data_for: Callable[[GatewaySession], dict[str, Any] | None],
        *,
        guild_id: int | None,
    ) -> int:
        """Send an event to every session that would get it; returns how many did."""
        delivered = 0
        for session in list(self.sessions.values()):
            if not session.serves_guild(guild_id):
                continue
            data = data_for(session)
            if data is not None:
                self._send_event(session, event, data)
                delivered += 1
        return delivered

    def _send_event(self, session: GatewaySession, event: str, data: dict[str, Any]) -> None:
        session.sequence += 1
        frame = {"op": DISPATCH, "t": event, "s": session.sequence, "d": data}
        session.log.append(frame)
        if session.connection is not None:
            session.connection.send(frame)

    async def drop_connections(self, code: int = 4000, reason: str = "") -> None:
        """Close every connection (sessions stay resumable unless Discord would not allow it)."""
        connections = list(self.connections)
        for connection in connections:
            connection.close(code, reason)
        waits = [connection.is_done.wait() for connection in connections]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), 5)

    def request_reconnect(self) -> None:
        """op 7 RECONNECT: the client should resume on a new connection."""
        for connection in self.connections:
            connection.send({"op": RECONNECT, "d": None, "s": None, "t": None})

    # The websocket.

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        connection = GatewayConnection(ws, request.query.get("compress"))
        self.connections.append(connection)
        writer = asyncio.create_task(connection.run_writer())
        try:
            if refusal := _refused_query(request):
                self._close(connection, *refusal)
            else:
                hello = {"heartbeat_interval": self.host.heartbeat_interval_ms, "_trace": ["fake"]}
                connection.send({"op": HELLO, "d": hello, "s": None, "t": None})
                await self._read(connection)
            if connection.is_closing:  # let the close frame (and what precedes it) go out
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(writer), 5)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self.connections.remove(connection)
            connection.is_done.set()
            if connection.session is not None and connection.session.connection is connection:
                connection.session.connection = None
        return ws

    async def _read(self, connection: GatewayConnection) -> None:
        async for message in connection.ws:
            if message.type is not WSMsgType.TEXT:
                self._close(connection, 4002, "Error while decoding payload.")
                return
            if len(message.data.encode()) > MAX_CLIENT_PAYLOAD:
                self._close(connection, 4002, "Error while decoding payload.")
                return
            try:
                payload = json.loads(message.data)
                op, data = payload["op"], payload.get("d")
            except (ValueError, KeyError, TypeError):
                self._close(connection, 4002, "Error while decoding payload.")
                return
            if not self._receive(connection, op, data):
                return

    def _receive(self, connection: GatewayConnection, op: Any, data: Any) -> bool:
        """Handle one client payload; False once the connection is being closed."""
        if op == HEARTBEAT:
            self.heartbeats.append(Heartbeat(data, time.monotonic()))
            self.heartbeat_acks += 1
            connection.send({"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None})
            return True
        if op == IDENTIFY:
            return self._identify(connection, data)
        if op == RESUME:
            return self._resume(connection, data)
        if op not in (PRESENCE, VOICE, REQUEST_MEMBERS):
            return self._close(connection, 4001, "Unknown opcode.")
        if connection.session is None:
            return self._close(connection, 4003, "Not authenticated.")
        if op == PRESENCE:
            self.presence_updates.append(data)
        elif op == REQUEST_MEMBERS:
            guild_id = int(data["guild_id"])
            self._send_event(
                connection.session,
                "GUILD_MEMBERS_CHUNK",
                self.host.members_chunk(guild_id, data.get("nonce")),
            )
        return True

    def _identify(self, connection: GatewayConnection, data: Any) -> bool:
        if not isinstance(data, dict):
            return self._close(connection, 4002, "Error while decoding payload.")
        self.identifies.append(data)
        if connection.session is not None:
            return self._close(connection, 4005, "Already authenticated.")
        if refusal := self._refused_identify(data):
            return self._close(connection, *refusal)
        shard = data.get("shard", [0, 1])
        session = GatewaySession(secrets.token_hex(16), data["intents"], (shard[0], shard[1]), data)
        self.sessions[session.session_id] = session
        session.connection = connection
        connection.session = session
        self._send_event(session, "READY", self.host.ready_data(session))
        if session.has_intent(GUILDS_INTENT):
            for guild in self.host.guild_creates(session):
                self._send_event(session, "GUILD_CREATE", guild)
        return True

    def _refused_identify(self, data: dict[str, Any]) -> tuple[int, str] | None:
        if data.get("token") != self.host.token:
            return 4004, "Authentication failed."
        intents = data.get("intents")
        if not isinstance(intents, int) or intents & ~KNOWN_INTENTS:
            return 4013, "Invalid intent(s)."
        if intents & PRIVILEGED_INTENTS & ~self.host.enabled_intents:
            return 4014, "Disallowed intent(s)."
        shard = data.get("shard", [0, 1])
        if not (isinstance(shard, list) and len(shard) == 2 and 0 <= shard[0] < shard[1]):
            return 4010, "Invalid shard."
        return None

    def _resume(self, connection: GatewayConnection, data: Any) -> bool:
        if not isinstance(data, dict):
            return self._close(connection, 4002, "Error while decoding payload.")
        self.resumes.append(data)
        if data.get("token") != self.host.token:
            return self._close(connection, 4004, "Authentication failed.")
        session = self.sessions.get(str(data.get("session_id")))
        if session is None:
            connection.send({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            return True
        if session.connection is not None and session.connection is not connection:
            session.connection.close(4000, "Session resumed elsewhere.")
        session.connection = connection
        connection.session = session
        seen = data.get("seq") or 0
        for frame in session.log:
            if frame["s"] > seen:
                connection.send(frame)
        self._send_event(session, "RESUMED", {"_trace": ["fake-gateway"]})
        return True

    def _close(self, connection: GatewayConnection, code: int, reason: str) -> bool:
        self.close_codes.append(code)
        connection.close(code, reason)
        return False


def _refused_query(request: web.Request) -> tuple[int, str] | None:
    if request.query.get("v") != API_VERSION:
        return 4012, "Invalid API version."
    if request.query.get("encoding", "json") != "json":
        return 4002, "Error while decoding payload."  # this fake speaks JSON only, not ETF
    if request.query.get("compress") not in (None, "zlib-stream", "zstd-stream"):
        return 4002, "Error while decoding payload."
    return None
