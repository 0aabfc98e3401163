"""OpenRouter's wire format: what a model call takes and gives, and how replies are read.

A call takes `ChatMessage`s; a streamed reply is `TextDelta`s then one `CompletionDone`; a whole
reply is a `Completion`. Reading turns OpenRouter's SSE chunks, JSON bodies and error statuses
into those values or into `core.errors.ModelError`s; a failure another attempt may fix comes
out as `Retryable`, which the client (openrouter.py) retries and never lets out.

Only what cannot have reached the model is `Retryable`: a connection that was never made
(connect errors and timeouts, a pool timeout) and the statuses that say no model took the
request (RETRYABLE_STATUSES). Once the request went out, the model may be generating, and
OpenRouter bills what it generates, so a connection lost after that (a read or write error, a
reset, the peer closing) and anything read from a 200 (an in-body error, an error chunk, a cut
or empty stream) fail at once.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from email.utils import mktime_tz, parsedate_tz
from functools import cached_property
from typing import Any, NamedTuple, overload

import httpx

from core.conversation import Usage
from core.errors import (
    ModelEmptyAnswer,
    ModelError,
    ModelRateLimited,
    ModelRejected,
    ModelStreamBroken,
    ModelTimeout,
    ModelUnavailable,
)

# Statuses that say no model started on the request, so asking again costs nothing: 429 rate
# limited, 502 the chosen model is down, 503 no provider can take it (OpenRouter answers with
# an error status only while no model has started; once one has, the status is 200 and errors
# come in the body). Not 408, 500 or 504, though statuses too: a timeout, or an internal error
# we cannot place, may come after a model spent time and tokens on the request, and the same
# request would most likely fail the same way, after as long a wait.
RETRYABLE_STATUSES = frozenset({429, 502, 503})

JSONObject = dict[str, Any]


# One part of a multimodal message, as OpenRouter takes it: {"type": "text", "text": ...},
# {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,..."}}.
ContentPart = dict[str, Any]


class ChatMessage(NamedTuple):
    """One message of a model's context (a tuple: a turn builds up to 40 of them)."""

    role: str  # "system" | "user" | "assistant"
    content: str | tuple[ContentPart, ...]  # text, or parts when it carries images


class EncodedMessages(Sequence[ChatMessage]):
    """A model's context whose messages after `head` come already encoded: `encoded` holds
    their request JSON, objects `{"role": ..., "content": ...}` joined by commas, as the store
    builds them from stored messages (begin_turn.lua) so that no Python object is made per
    message. The client puts `encoded` into the request body as it is (`request_json`); read as
    a sequence (fakes, tests) it is decoded once."""

    def __init__(self, head: Sequence[ChatMessage], encoded: str) -> None:
        self.head = tuple(head)
        self.encoded = encoded

    @cached_property
    def _messages(self) -> tuple[ChatMessage, ...]:
        decoded = json.loads(f"[{self.encoded}]") if self.encoded else []
        return self.head + tuple(ChatMessage(m["role"], m["content"]) for m in decoded)

    @overload
    def __getitem__(self, index: int) -> ChatMessage: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[ChatMessage]: ...

    def __getitem__(self, index: int | slice) -> ChatMessage | Sequence[ChatMessage]:
        return self._messages[index]

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[ChatMessage]:
        return iter(self._messages)


def decoded_part(messages: Sequence[ChatMessage]) -> Sequence[ChatMessage]:
    """The messages that are not encoded already: an EncodedMessages' head, else all."""
    return messages.head if isinstance(messages, EncodedMessages) else messages


def messages_json(messages: Sequence[ChatMessage]) -> str:
    """`messages` as a request's JSON array; an EncodedMessages' encoded part goes in as it is."""
    plain = [{"role": m.role, "content": _content(m)} for m in decoded_part(messages)]
    encoded = [compact_json(plain)[1:-1]]
    if isinstance(messages, EncodedMessages):
        encoded.append(messages.encoded)
    return "[" + ",".join(part for part in encoded if part) + "]"


def request_json(body: JSONObject, messages: Sequence[ChatMessage]) -> bytes:
    """The request body: `body`'s fields and `messages`, as compact JSON (what httpx sends for
    `json=`)."""
    fields = compact_json(body)
    return f'{{"messages":{messages_json(messages)}{"," if body else ""}{fields[1:]}'.encode()


def compact_json(value: Any) -> str:
    """`value` as compact JSON, as httpx writes a request's `json=`."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _content(message: ChatMessage) -> str | list[ContentPart]:
    return message.content if isinstance(message.content, str) else list(message.content)


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class CompletionDone:
    """Always the last event of a successful stream."""

    model: str  # the model that actually answered, which may be a fallback
    usage: Usage | None
    finish_reason: str | None


StreamEvent = TextDelta | CompletionDone


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    model: str
    usage: Usage | None
    finish_reason: str | None


@dataclass(eq=False)  # eq=False keeps the exception hashable, as tracebacks expect
class Retryable(Exception):  # a signal between reader and client: it never leaves core.llm
    """A failed attempt that another attempt may fix; `error` is raised if none is left."""

    error: ModelError
    status: int | None = None
    retry_after: float | None = None


class StreamReader:
    """Turns one SSE response into StreamEvents, remembering the text for partial_text."""

    def __init__(self, response: httpx.Response, model: str) -> None:
        self._response = response
        self._parts: list[str] = []
        self._model = model
        self._usage: Usage | None = None
        self._finish_reason: str | None = None

    async def events(self) -> AsyncGenerator[StreamEvent, None]:
        try:
            async for event in self._read():
                yield event
        except ModelError as error:
            # OpenRouter answered 200: the model had the request, and may have billed it.
            error.reached_model = True
            error.reported_tokens = self._usage.total_tokens if self._usage else None
            raise

    async def _read(self) -> AsyncGenerator[StreamEvent, None]:
        is_done = False
        try:
            async for data in _sse_data(self._response.aiter_lines()):
                if data == "[DONE]":
                    is_done = True
                    break
                delta = self._handle(data)
                if delta is not None:
                    yield delta
        except httpx.TimeoutException as exc:
            raise self._cut_off(ModelTimeout()) from exc
        except httpx.HTTPError as exc:
            # The answer had begun: the model has the request. Never retried (see the top).
            raise self._cut_off(ModelUnavailable()) from exc
        if not is_done and self._finish_reason is None:
            raise self._cut_off(ModelUnavailable())
        if _is_blank(self._parts):
            # A failure the breaker counts, never retried (the model had the request).
            raise ModelEmptyAnswer
        yield CompletionDone(self._model, self._usage, self._finish_reason)

    def _handle(self, data: str) -> TextDelta | None:
        chunk = json_object(data)
        if chunk is None:
            raise self._cut_off(ModelStreamBroken())
        if "error" in chunk:
            raise self._cut_off(error_for_code(chunk["error"]))
        self._model = _text(chunk.get("model")) or self._model
        self._usage = _usage_from(chunk.get("usage")) or self._usage
        choice = _first_choice(chunk)
        finish_reason = _text(choice.get("finish_reason"))
        if finish_reason == "error":
            raise self._cut_off(ModelStreamBroken())
        self._finish_reason = finish_reason or self._finish_reason
        delta = choice.get("delta")
        content = _text(delta.get("content")) if isinstance(delta, dict) else None
        if content is None:
            return None
        self._parts.append(content)
        return TextDelta(content)

    def _cut_off(self, before_any_text: Exception) -> Exception:
        """Once text went out, every failure is a broken stream carrying that text."""
        if self._parts:
            return ModelStreamBroken(partial_text="".join(self._parts))
        return before_any_text


async def _sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The data of each SSE event; comments (`: OPENROUTER PROCESSING`) and other fields dropped."""
    buffer: list[str] = []
    async for line in lines:
        if line.startswith("data:"):
            buffer.append(line.removeprefix("data:").removeprefix(" "))
        elif not line and buffer:
            yield "\n".join(buffer)
            buffer = []


def transport_failure(exc: httpx.HTTPError) -> Exception:
    # Retried only when no byte of the request can have left: a connection never made (or
    # never taken from the pool) reached nobody. Every other failure may come after the
    # request was sent, whole or in part (a read, write or close error, a reset, the peer
    # closing before it answered), and the model may be generating (and billing) already;
    # a read timeout says so most of all, and waiting again rarely helps.
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return Retryable(ModelTimeout())
    if isinstance(exc, httpx.ConnectError):
        return Retryable(ModelUnavailable())
    if isinstance(exc, httpx.TimeoutException):
        return ModelTimeout()
    return ModelUnavailable()


def response_error(response: httpx.Response, max_retry_after: float) -> Exception:
    retry_after = _parse_retry_after(response.headers.get("Retry-After"))
    return _status_error(response.status_code, retry_after, max_retry_after)


def read_failure(exc: httpx.HTTPError) -> Retryable:
    """A read (a GET: the models list) that failed in transit: it changed and billed nothing,
    so asking again is always safe."""
    if isinstance(exc, httpx.TimeoutException):
        return Retryable(ModelTimeout())
    return Retryable(ModelUnavailable())


def read_response_error(response: httpx.Response, max_retry_after: float) -> Exception:
    """A read's error status: retried unless it is a refusal (a 4xx but 408 and 429) or asks
    to wait longer than `max_retry_after`."""
    retry_after = _parse_retry_after(response.headers.get("Retry-After"))
    final = _error_for_status(response.status_code, retry_after)
    if isinstance(final, ModelRejected) or (
        retry_after is not None and retry_after > max_retry_after
    ):
        return final
    return Retryable(final, response.status_code, retry_after)


def _status_error(status: int, retry_after: float | None, cap: float) -> Exception:
    final = _error_for_status(status, retry_after)
    if status not in RETRYABLE_STATUSES or (retry_after is not None and retry_after > cap):
        return final
    return Retryable(final, status, retry_after)


def _error_for_status(status: int, retry_after: float | None = None) -> ModelError:
    if status == 429:
        return ModelRateLimited(retry_after=retry_after)
    if status == 408:
        return ModelTimeout()
    if 400 <= status < 500:
        return ModelRejected(status=status)
    return ModelUnavailable()


def error_for_code(error: object) -> ModelError:
    """An in-body error object; OpenRouter uses HTTP codes there, but sometimes strings.

    Never retried: OpenRouter puts an error in the body only once the model had started on
    the request (the status was already 200).
    """
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, int) and not isinstance(code, bool):
        return _error_for_status(code)
    return ModelStreamBroken()


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds, from either of its forms: delay-seconds or an HTTP date."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        parsed = parsedate_tz(value)
        if parsed is None:
            return None
        seconds = mktime_tz(parsed) - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def json_object(text: str) -> JSONObject | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _first_choice(payload: JSONObject) -> JSONObject:
    choices = payload.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    return first if isinstance(first, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _is_blank(parts: list[str]) -> bool:
    """No text at all, or only whitespace: an answer as useless as none, never stored."""
    return all(part.isspace() for part in parts)


def _usage_from(value: object) -> Usage | None:
    if not isinstance(value, dict):
        return None
    prompt, completion = value.get("prompt_tokens"), value.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    cost = value.get("cost")
    has_cost = isinstance(cost, int | float) and not isinstance(cost, bool)
    return Usage(prompt, completion, cost if has_cost else None)


def completion_from(payload: JSONObject, requested_model: str) -> Completion:
    choice = _first_choice(payload)
    finish_reason = _text(choice.get("finish_reason"))
    if finish_reason == "error":
        raise ModelUnavailable  # a 200: the model had the request, so not retried
    message = choice.get("message")
    content = _text(message.get("content")) if isinstance(message, dict) else None
    if content is None or _is_blank([content]):
        raise ModelEmptyAnswer
    model = _text(payload.get("model")) or requested_model
    return Completion(content, model, _usage_from(payload.get("usage")), finish_reason)
