"""A scripted, in-memory `ChatModel` (core.chat): each request gets the next answer of a script.

It keeps the contract of the real client (core.llm.openrouter.OpenRouterClient.stream):

- `stream()` is an async generator: nothing is asked, and nothing raised, until the turn reads
  its first event; without a key that read raises ModelNotConfigured and nothing is recorded;
- an answer is its text deltas, then one CompletionDone naming the model that answered (the
  one asked unless the script names a fallback);
- an error before any text is raised as scripted; once text went out, every failure is a
  ModelStreamBroken carrying that text, as the client's stream reader makes it.

Three scripts go past that contract on purpose, to see what a turn does: `cut_off` ends without
CompletionDone, `held` waits at a `Gate` until the test opens it (a stall, or a model still
answering when the service stops), and `endless` never ends (keep-alive comments forever).
With the script used up, the model echoes the last user message, as the fake OpenRouter
server does:

    model = ScriptedModel(answer("Hel", "lo", usage=Usage(5, 2)), failure(ModelUnavailable()))
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from core.conversation import Usage
from core.errors import ModelError, ModelNotConfigured, ModelStreamBroken
from core.llm.wire import ChatMessage, CompletionDone, StreamEvent, TextDelta

ECHO_PREFIX = "echo: "


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """What one call of `stream()` asked for."""

    messages: tuple[ChatMessage, ...]
    model: str
    max_tokens: int | None = None


class Gate:
    """Where a held answer waits: `await gate.reached()` to know it is there, `open()` to go on."""

    def __init__(self) -> None:
        self._reached = asyncio.Event()
        self._opened = asyncio.Event()

    async def reached(self) -> None:
        await self._reached.wait()

    def open(self) -> None:
        self._opened.set()

    async def pass_through(self) -> None:
        self._reached.set()
        await self._opened.wait()


@dataclass(frozen=True, slots=True)
class Answer:
    """One scripted answer: its text deltas, then how the stream ends."""

    deltas: tuple[str, ...] = ()
    gate: Gate | None = None  # waited at after the deltas
    error: ModelError | None = None  # raised after the deltas (and the gate)
    is_complete: bool = True  # False: the stream just stops, without CompletionDone
    model: str | None = None  # the model that answered; None: the one asked
    usage: Usage | None = None
    finish_reason: str | None = "stop"


def answer(
    *deltas: str, model: str | None = None, usage: Usage | None = None, finish_reason: str = "stop"
) -> Answer:
    return Answer(deltas, model=model, usage=usage, finish_reason=finish_reason)


def failure(error: ModelError, *, after: Sequence[str] = ()) -> Answer:
    """`error` before any text; after text (`after`), a ModelStreamBroken carrying that text."""
    return Answer(tuple(after), error=error)


def cut_off(*deltas: str) -> Answer:
    """The deltas, then the end of the stream without a CompletionDone."""
    return Answer(deltas, is_complete=False)


def held(gate: Gate, *deltas: str, usage: Usage | None = None) -> Answer:
    """The deltas, then a wait at `gate`; once it opens, the answer completes."""
    return Answer(deltas, gate=gate, usage=usage)


def endless(*deltas: str) -> Answer:
    """The deltas, then nothing more and never an end: how a stream kept alive by OpenRouter's
    processing comments looks to a turn (the client reads the comments and yields nothing)."""
    return Answer(deltas, gate=Gate())


def text_of(message: ChatMessage) -> str:
    """A message's text: its text parts, when it carries images."""
    if isinstance(message.content, str):
        return message.content
    return "".join(part["text"] for part in message.content if part["type"] == "text")


def echo_of(messages: Sequence[ChatMessage]) -> Answer:
    """The answer when the script is used up: the last user message echoed, in two deltas."""
    last_user = next((text_of(m) for m in reversed(messages) if m.role == "user"), "")
    usage = Usage(prompt_tokens=len(messages), completion_tokens=2)
    return answer(ECHO_PREFIX, last_user, usage=usage)


class ScriptedModel:
    """Answers each request with the next scripted answer; records every request."""

    def __init__(self, *script: Answer, is_configured: bool = True) -> None:
        self._script: deque[Answer] = deque(script)
        self._is_configured = is_configured
        self.requests: list[ModelRequest] = []
        self.open_streams = 0  # asked and not yet ended, closed or failed

    @property
    def is_configured(self) -> bool:
        return self._is_configured

    def then(self, *answers: Answer) -> ScriptedModel:
        """Script the next requests' answers, after those already scripted."""
        self._script.extend(answers)
        return self

    async def stream(
        self, messages: Sequence[ChatMessage], *, model: str, max_tokens: int | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        if not self._is_configured:
            raise ModelNotConfigured
        self.requests.append(ModelRequest(tuple(messages), model, max_tokens))
        scripted = self._script.popleft() if self._script else echo_of(messages)
        self.open_streams += 1
        try:
            for text in scripted.deltas:
                yield TextDelta(text)
            if scripted.gate is not None:
                await scripted.gate.pass_through()
            if scripted.error is not None:
                raise _cut_off(scripted.error, "".join(scripted.deltas))
            if scripted.is_complete:
                answering = scripted.model or model
                yield CompletionDone(answering, scripted.usage, scripted.finish_reason)
        finally:
            self.open_streams -= 1


def _cut_off(error: ModelError, partial_text: str) -> ModelError:
    """Once text went out, every failure is a broken stream carrying that text."""
    return ModelStreamBroken(partial_text=partial_text) if partial_text else error
