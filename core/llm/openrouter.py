"""The OpenRouter chat completions client: one pooled HTTP client, retries, SSE streaming.

Every failure leaves this module as a `core.errors.ModelError`:

    ModelNotConfigured   no API key; raised before any request
    ModelRejected        400/401/402/403/404 (any other 4xx too): never retried
    ModelRateLimited     429 after the retries, or at once when Retry-After exceeds the cap
    ModelUnavailable     5xx, connection failures, unreadable replies, after the retries
    ModelTimeout         408 or connect timeouts after the retries; a read timeout at once
    ModelStreamBroken    the stream was cut, or carried an error chunk, after text was yielded
    ModelCircuitOpen     the model's circuit breaker is open: raised before any request

Every request (each retry too) is admitted by the model's circuit breaker and reports to it
how it ended (core.llm.breaker), so a failing provider stops getting requests for a while.

Error texts are the errors' own defaults: no key and no upstream body ever reaches them.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.utils import mktime_tz, parsedate_tz
from typing import Any, NamedTuple, TypeVar

import httpx
import structlog
from pydantic import SecretStr

from core.conversation import Usage
from core.errors import (
    ModelError,
    ModelNotConfigured,
    ModelRateLimited,
    ModelRejected,
    ModelStreamBroken,
    ModelTimeout,
    ModelUnavailable,
)
from core.llm.breaker import Attempt, ModelBreaker
from core.observability.metrics import Metrics
from core.settings import Settings

COMPLETIONS_PATH = "/chat/completions"
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

logger = structlog.get_logger(__name__)
# Backoff jitter only spreads clients apart; it needs no cryptographic quality.
_jitter = random.Random()  # noqa: S311

T = TypeVar("T")
JSONObject = dict[str, Any]
# The response, the reader's remaining events, and its first event (already pulled).
_OpenedStream = tuple[httpx.Response, AsyncGenerator["StreamEvent", None], "StreamEvent"]


class ChatMessage(NamedTuple):
    """One message of a model's context (a tuple: a turn builds up to 40 of them)."""

    role: str  # "system" | "user" | "assistant"
    content: str


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


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3  # total tries, the first included
    base_delay: float = 0.5  # seconds; exponential backoff with full jitter, capped
    max_delay: float = 8.0
    max_retry_after: float = 30.0  # a longer Retry-After is not waited for


@dataclass(eq=False)  # eq=False keeps the exception hashable, as tracebacks expect
class _Retryable(Exception):  # an internal signal: it never leaves this module
    """A failed attempt that another attempt may fix; `error` is raised if none is left."""

    error: ModelError
    status: int | None = None
    retry_after: float | None = None


class OpenRouterClient:
    """Chat completions from OpenRouter, whole or streamed; build once, share, `aclose()`."""

    def __init__(
        self,
        *,
        api_key: SecretStr | None,
        base_url: str,
        fallback_models: Sequence[str] = (),
        app_url: str = "https://github.com/chatbridge/chatbridge",
        app_title: str = "chatbridge",
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        retry: RetryPolicy = RetryPolicy(),  # frozen, so one shared default is safe
        breaker: ModelBreaker | None = None,  # None: a breaker that never opens
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        key = api_key.get_secret_value().strip() if api_key is not None else ""
        self._is_configured = bool(key)
        self._fallback_models = tuple(fallback_models)
        self._retry = retry
        self.breaker = breaker if breaker is not None else ModelBreaker(failures=0)
        headers = {"HTTP-Referer": app_url, "X-Title": app_title}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics | None = None) -> OpenRouterClient:
        return cls(
            api_key=settings.openrouter_api_key,
            base_url=settings.openrouter_base_url,
            fallback_models=settings.fallback_models,
            breaker=ModelBreaker.from_settings(settings, metrics),
        )

    @property
    def is_configured(self) -> bool:
        return self._is_configured

    async def complete(self, messages: Sequence[ChatMessage], *, model: str) -> Completion:
        """The whole reply in one response."""
        if not self._is_configured:
            raise ModelNotConfigured
        body = self._body(messages, model, stream=False)
        completion, admitted = await self._with_retries(
            model, lambda: self._complete_once(body, model)
        )
        admitted.succeeded()
        return completion

    async def stream(
        self, messages: Sequence[ChatMessage], *, model: str
    ) -> AsyncGenerator[StreamEvent, None]:
        """The reply as TextDeltas, then one CompletionDone; retried only before the first."""
        if not self._is_configured:
            raise ModelNotConfigured
        body = self._body(messages, model, stream=True)
        (response, events, first), admitted = await self._with_retries(
            model, lambda: self._open_stream(body, model)
        )
        admitted.answering()
        try:
            event = first
            while True:
                if isinstance(event, CompletionDone):
                    admitted.succeeded()  # before the consumer may stop reading
                yield event
                event = await anext(events)
        except StopAsyncIteration:
            return
        except ModelError as error:
            admitted.ended_with(error)  # a stream cut after its first text counts too
            raise
        finally:
            admitted.released()  # a no-op once settled; else the consumer left early
            await events.aclose()
            await response.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def _body(self, messages: Sequence[ChatMessage], model: str, *, stream: bool) -> JSONObject:
        body: JSONObject = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": stream,
            "usage": {"include": True},
        }
        if self._fallback_models:
            body["models"] = [model, *self._fallback_models]
        return body

    async def _with_retries(
        self, model: str, attempt_once: Callable[[], Awaitable[T]]
    ) -> tuple[T, Attempt]:
        """Up to `attempts` requests, each admitted by the breaker (ModelCircuitOpen if not).

        Failed attempts are reported to the breaker here; the caller settles the one returned.
        """
        attempts = max(1, self._retry.attempts)
        for attempt in range(1, attempts + 1):
            admitted = self.breaker.admit(model)
            try:
                return await _reporting_failures(admitted, attempt_once), admitted
            except _Retryable as failure:
                if attempt == attempts:
                    raise failure.error from failure.__cause__
                delay = round(self._delay(attempt, failure.retry_after), 3)
                reason, status = failure.error.code, failure.status
            self.breaker.check(model)  # opened by this failure: no point in waiting to retry
            logger.warning(
                "model_retry", reason=reason, status=status, attempt=attempt, delay=delay
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        ceiling = min(self._retry.max_delay, self._retry.base_delay * 2 ** (attempt - 1))
        return _jitter.uniform(0.0, ceiling)

    async def _complete_once(self, body: JSONObject, model: str) -> Completion:
        try:
            response = await self._http.post(COMPLETIONS_PATH, json=body)
        except httpx.HTTPError as exc:
            raise _transport_failure(exc) from exc
        if not response.is_success:
            raise _response_error(response, self._retry.max_retry_after)
        payload = _json_object(response.text)
        if payload is None:
            raise _Retryable(ModelUnavailable(), status=response.status_code)
        if "error" in payload:
            raise _error_for_code(payload["error"])
        return _completion_from(payload, model)

    async def _open_stream(self, body: JSONObject, model: str) -> _OpenedStream:
        request = self._http.build_request("POST", COMPLETIONS_PATH, json=body)
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _transport_failure(exc) from exc
        if not response.is_success:
            await response.aclose()
            raise _response_error(response, self._retry.max_retry_after)
        try:
            events = _StreamReader(response, model).events()
            # Pulling the first event here keeps every pre-text failure inside the retries.
            first = await anext(events)
        except BaseException:
            await response.aclose()
            raise
        return response, events, first


async def _reporting_failures(admitted: Attempt, attempt_once: Callable[[], Awaitable[T]]) -> T:
    """One request; if it fails, the breaker is told how."""
    try:
        return await attempt_once()
    except _Retryable:
        admitted.failed()
        raise
    except ModelError as error:
        admitted.ended_with(error)
        raise
    except BaseException:
        admitted.released()  # cancelled, or a bug: nothing learned about the provider
        raise


class _StreamReader:
    """Turns one SSE response into StreamEvents, remembering the text for partial_text."""

    def __init__(self, response: httpx.Response, model: str) -> None:
        self._response = response
        self._parts: list[str] = []
        self._model = model
        self._usage: Usage | None = None
        self._finish_reason: str | None = None

    async def events(self) -> AsyncGenerator[StreamEvent, None]:
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
            raise self._cut_off(_Retryable(ModelUnavailable())) from exc
        if not is_done and self._finish_reason is None:
            raise self._cut_off(_Retryable(ModelUnavailable()))
        yield CompletionDone(self._model, self._usage, self._finish_reason)

    def _handle(self, data: str) -> TextDelta | None:
        chunk = _json_object(data)
        if chunk is None:
            raise self._cut_off(ModelStreamBroken())
        if "error" in chunk:
            raise self._cut_off(_error_for_code(chunk["error"]))
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


def _transport_failure(exc: httpx.HTTPError) -> Exception:
    # A connect failure never reached the model, so trying again is cheap. A read timeout
    # means the model may still be generating (and billing): waiting again rarely helps.
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return _Retryable(ModelTimeout())
    if isinstance(exc, httpx.TimeoutException):
        return ModelTimeout()
    if isinstance(exc, httpx.TransportError):
        return _Retryable(ModelUnavailable())
    return ModelUnavailable()


def _response_error(response: httpx.Response, max_retry_after: float) -> Exception:
    retry_after = _parse_retry_after(response.headers.get("Retry-After"))
    return _status_error(response.status_code, retry_after, max_retry_after)


def _status_error(
    status: int, retry_after: float | None = None, cap: float = math.inf
) -> Exception:
    if status not in RETRYABLE_STATUSES:
        return ModelRejected(status=status) if 400 <= status < 500 else ModelUnavailable()
    final: ModelError = ModelUnavailable()
    if status == 429:
        final = ModelRateLimited(retry_after=retry_after)
    elif status == 408:
        final = ModelTimeout()
    if retry_after is not None and retry_after > cap:
        return final
    return _Retryable(final, status, retry_after)


def _error_for_code(error: object) -> Exception:
    """An in-body error object; OpenRouter uses HTTP codes there, but sometimes strings."""
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, int) and not isinstance(code, bool):
        return _status_error(code)
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


def _json_object(text: str) -> JSONObject | None:
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


def _usage_from(value: object) -> Usage | None:
    if not isinstance(value, dict):
        return None
    prompt, completion = value.get("prompt_tokens"), value.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    cost = value.get("cost")
    has_cost = isinstance(cost, int | float) and not isinstance(cost, bool)
    return Usage(prompt, completion, cost if has_cost else None)


def _completion_from(payload: JSONObject, requested_model: str) -> Completion:
    choice = _first_choice(payload)
    finish_reason = _text(choice.get("finish_reason"))
    if finish_reason == "error":
        raise _Retryable(ModelUnavailable())
    message = choice.get("message")
    content = _text(message.get("content")) if isinstance(message, dict) else None
    model = _text(payload.get("model")) or requested_model
    return Completion(content or "", model, _usage_from(payload.get("usage")), finish_reason)
