"""A webhook receiver on 127.0.0.1 that checks every signature and can fail on purpose.

It verifies each request with `core.events.signing.verify_signature`, the recipe
docs/webhooks.md gives receivers, and records every request (accepted or not). Faults are
queued and consumed one per request, in order:

    receiver.fail(500, times=2)      # answer 500 twice, then accept
    receiver.answer_slowly(5.0)      # hold one request longer than the sender waits
    receiver.drop_connection()       # close the connection without an answer
    receiver.fail_always(503)        # until `heal()`
    await receiver.stop(); ...; await receiver.start()   # connection refused meanwhile
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from core.events.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)
from tests.redis_process import free_port

PATH = "/hooks/chatbridge"


@dataclass(frozen=True)
class Delivery:
    """One request as received."""

    headers: CIMultiDict[str]
    body: bytes
    is_signed_correctly: bool
    status: int  # what the receiver answered (0: no answer)
    received_at: float  # time.monotonic()

    @property
    def event(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document

    @property
    def event_id(self) -> str:
        return str(self.event["id"])


@dataclass(frozen=True)
class _Fault:
    kind: str  # "status" | "slow" | "drop"
    status: int = 500
    seconds: float = 0.0


class FakeWebhookReceiver:
    """`start()`, give `url` to the sender, read `accepted` / `requests`, `stop()`."""

    def __init__(self, secret: str, *, path: str = PATH) -> None:
        self.secret = secret
        self.path = path
        self.port = free_port()
        self.requests: list[Delivery] = []
        self._faults: deque[_Fault] = deque()
        self._always: _Fault | None = None
        self._before_answer: deque[Callable[[], Awaitable[object]]] = deque()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def accepted(self) -> list[Delivery]:
        """Requests answered 2xx: the deliveries that count."""
        return [d for d in self.requests if 200 <= d.status < 300]

    def accepted_ids(self) -> Counter[str]:
        return Counter(d.event_id for d in self.accepted)

    def accepted_of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [d.event for d in self.accepted if d.event["type"] == event_type]

    def attempts_of(self, event_id: str) -> list[Delivery]:
        return [d for d in self.requests if d.event_id == event_id]

    def fail(self, status: int = 500, *, times: int = 1) -> None:
        self._faults.extend(_Fault("status", status=status) for _ in range(times))

    def answer_slowly(self, seconds: float, *, times: int = 1) -> None:
        self._faults.extend(_Fault("slow", seconds=seconds) for _ in range(times))

    def drop_connection(self, *, times: int = 1) -> None:
        self._faults.extend(_Fault("drop") for _ in range(times))

    def fail_always(self, status: int = 500) -> None:
        self._always = _Fault("status", status=status)

    def before_next_answer(self, action: Callable[[], Awaitable[object]]) -> None:
        """Run `action` once, after the next request arrives and before it is answered."""
        self._before_answer.append(action)

    def heal(self) -> None:
        self._always = None
        self._faults.clear()

    async def start(self) -> None:
        """Listen (again, on the same port after `stop()`)."""
        app = web.Application()
        app.router.add_post(self.path, self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        """Stop listening: connections are refused until `start()`."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        fault = self._always or (self._faults.popleft() if self._faults else None)
        status = 200 if fault is None else fault.status
        if fault is not None and fault.kind in ("drop", "slow"):
            status = 0  # no answer (a slow one comes after the sender gave up)
        self.requests.append(
            Delivery(
                headers=CIMultiDict(request.headers),
                body=body,
                is_signed_correctly=self._verify(request, body),
                status=status,
                received_at=time.monotonic(),
            )
        )
        if self._before_answer:
            await self._before_answer.popleft()()
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.seconds)  # cancelled when the sender gives up
        if fault is not None and fault.kind == "drop":
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError  # ends the handler; the client sees a closed socket
        return web.json_response({"ok": status < 300}, status=status)

    def _verify(self, request: web.Request, body: bytes) -> bool:
        return verify_signature(
            self.secret,
            body,
            request.headers.get(TIMESTAMP_HEADER, ""),
            request.headers.get(SIGNATURE_HEADER, ""),
            now=time.time(),
        ) and bool(request.headers.get(EVENT_HEADER) and request.headers.get(DELIVERY_HEADER))
