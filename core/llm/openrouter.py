"""The OpenRouter client: chat completions (whole or streamed) and audio transcriptions, over
one pooled HTTP client, with retries.

What goes over the wire, and how replies and failures are read, is in wire.py (chat) and
transcription.py (speech to text).

Every failure leaves this module as a `core.errors.ModelError`:

    ModelNotConfigured   no API key; raised before any request
    ModelRejected        400/401/402/403/404 (any other 4xx too): never retried
    ModelRateLimited     429 after the retries, or at once when Retry-After exceeds the cap
    ModelUnavailable     502/503 or a connection never made, after the retries; at once: other
                         5xx, a connection lost once the request went out, an unreadable reply
    ModelTimeout         connect or pool timeouts after the retries; 408 or a read timeout at once

The models list (`list_models`, a GET that changes and bills nothing) is retried on every
failure but a refusal, and leaves the breakers alone: it says nothing of any model's health.
    ModelStreamBroken    the stream was cut, or carried an error chunk, after text was yielded
    ModelEmptyAnswer     the answer ended without any text (or only whitespace): never retried
    ModelCircuitOpen     the model's circuit breaker is open: raised before any request

Only failures before the request could reach the model are retried (wire.py says which):
once it went out, the model may be generating, and billing, whatever happens to our socket.

Every request (each retry too) is admitted by the model's circuit breaker and reports to it
how it ended (core.llm.breaker), so a failing provider stops getting requests for a while.

A transcription is retried and admitted by the breaker (its model's own circuit) the same
way; it leaves as `TranscriptionFailed` whatever failed (the model error as its cause), or
`TranscriptionEmpty` when no words were heard, which the breaker counts as an answer.

Error texts are the errors' own defaults: no key and no upstream body ever reaches them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import httpx
import structlog
from pydantic import SecretStr

from core.errors import (
    ModelError,
    ModelNotConfigured,
    ModelUnavailable,
    TranscriptionEmpty,
    TranscriptionFailed,
)
from core.llm.breaker import Attempt, ModelBreaker
from core.llm.transcription import (
    DEFAULT_TRANSCRIPTION_MODEL,
    JSON_HEADERS,
    MAX_AUDIO_BYTES,
    TRANSCRIPTION_READ_TIMEOUT,
    TRANSCRIPTIONS_PATH,
    Transcript,
    transcript_from,
    transcription_body,
    transcription_failure,
)
from core.llm.wire import (
    ChatMessage,
    Completion,
    CompletionDone,
    JSONObject,
    Retryable,
    StreamEvent,
    StreamReader,
    completion_from,
    decoded_part,
    error_for_code,
    json_object,
    read_failure,
    read_response_error,
    request_json,
    response_error,
    transport_failure,
)
from core.observability.metrics import Metrics
from core.settings import Settings

COMPLETIONS_PATH = "/chat/completions"
MODELS_PATH = "/models"
# OpenRouter's parser for the PDFs sent as files, which have no text of their own: scans.
PDF_PARSER_ENGINE = "mistral-ocr"
# Pages of the models list read at most (500 models a page when OpenRouter pages it at all):
# a `links.next` that never ends must not keep a fetch going.
MAX_MODEL_PAGES = 20
# Every answer streams on a connection of its own for its whole length: httpx's default bound
# (100) would make the 101st answer at once wait for another to end, then fail on the pool
# timeout. Unbounded, as turns are bounded upstream (the fronts' concurrency, the HTTP server);
# the idle ones kept for reuse are bounded.
MODEL_CONNECTION_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=200)

logger = structlog.get_logger(__name__)
# Backoff jitter only spreads clients apart; it needs no cryptographic quality.
_jitter = random.Random()  # noqa: S311

T = TypeVar("T")
# The response, the reader's remaining events, and its first event (already pulled).
_OpenedStream = tuple[httpx.Response, AsyncGenerator["StreamEvent", None], "StreamEvent"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3  # total tries, the first included
    base_delay: float = 0.5  # seconds; exponential backoff with full jitter, capped
    max_delay: float = 8.0
    max_retry_after: float = 30.0  # a longer Retry-After is not waited for


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
        transcription_model: str = DEFAULT_TRANSCRIPTION_MODEL,
        transcription_timeout: float = TRANSCRIPTION_READ_TIMEOUT,
        max_audio_bytes: int = MAX_AUDIO_BYTES,
    ) -> None:
        key = api_key.get_secret_value().strip() if api_key is not None else ""
        self._is_configured = bool(key)
        self._fallback_models = tuple(fallback_models)
        self._retry = retry
        self._transcription_model = transcription_model
        self._transcription_timeout = httpx.Timeout(transcription_timeout, connect=connect_timeout)
        self.max_audio_bytes = max_audio_bytes
        self.breaker = breaker if breaker is not None else ModelBreaker(failures=0)
        headers = {"HTTP-Referer": app_url, "X-Title": app_title}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            limits=MODEL_CONNECTION_LIMITS,
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics | None = None) -> OpenRouterClient:
        return cls(
            api_key=settings.openrouter_api_key,
            base_url=settings.openrouter_base_url,
            fallback_models=settings.fallback_models,
            breaker=ModelBreaker.from_settings(settings, metrics),
            transcription_model=settings.transcription_model,
        )

    @property
    def is_configured(self) -> bool:
        return self._is_configured

    async def complete(
        self, messages: Sequence[ChatMessage], *, model: str, max_tokens: int | None = None
    ) -> Completion:
        """The whole reply in one response, of at most `max_tokens` tokens (None: the model's
        own limit)."""
        if not self._is_configured:
            raise ModelNotConfigured
        body = self._body(messages, model, stream=False, max_tokens=max_tokens)
        completion, admitted = await self._with_retries(
            model, lambda: self._complete_once(body, model)
        )
        admitted.succeeded()
        return completion

    async def stream(
        self, messages: Sequence[ChatMessage], *, model: str, max_tokens: int | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        """The reply as TextDeltas, then one CompletionDone; retried only if unsent (wire.py).

        At most `max_tokens` tokens are generated (None: the model's own limit)."""
        if not self._is_configured:
            raise ModelNotConfigured
        body = self._body(messages, model, stream=True, max_tokens=max_tokens)
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

    async def transcribe(
        self, audio: bytes, media_type: str, *, model: str | None = None
    ) -> Transcript:
        """The words spoken in `audio` (of `media_type`, e.g. `audio/ogg`), as `model` hears them
        (None: TRANSCRIPTION_MODEL), with what OpenRouter reports it cost.

        Raises TranscriptionEmpty when no words were heard, TranscriptionFailed for anything
        else; audio that is empty, over `max_audio_bytes` or of a media type OpenRouter does not
        take is refused before any request.
        """
        if not self._is_configured:
            raise TranscriptionFailed(reason="not_configured")
        model = model or self._transcription_model
        body = transcription_body(audio, media_type, model, max_bytes=self.max_audio_bytes)
        try:
            transcript, admitted = await self._with_retries(
                model, lambda: self._transcribe_once(body, model)
            )
        except ModelError as error:
            raise transcription_failure(error) from error
        admitted.succeeded()  # silence is no fault of the provider's: it answered
        if not transcript.text:
            raise TranscriptionEmpty
        return transcript

    async def list_models(self) -> list[JSONObject]:
        """Every entry of OpenRouter's models list (`GET /models`), all its pages.

        The list is public; the key goes with it as with every request. ModelError when a page
        cannot be read after the retries, or is not a list of models."""
        entries: list[JSONObject] = []
        params: dict[str, str] = {}
        for _ in range(MAX_MODEL_PAGES):
            page = await self._read_with_retries(MODELS_PATH, params)
            data = page.get("data")
            if not isinstance(data, list):
                raise ModelUnavailable
            entries += [entry for entry in data if isinstance(entry, dict)]
            params = _next_page_params(page)
            if not params:
                break
        return entries

    async def aclose(self) -> None:
        await self._http.aclose()

    def _body(
        self, messages: Sequence[ChatMessage], model: str, *, stream: bool, max_tokens: int | None
    ) -> bytes:
        body: JSONObject = {
            "model": model,
            "stream": stream,
            "usage": {"include": True},
        }
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        # What the store encoded carries no files (begin_turn.lua encodes only messages without).
        if any(_has_file(m) for m in decoded_part(messages)):
            # Files are PDFs without text (PDF_ENGINE=openrouter): they need reading by OCR.
            body["plugins"] = [{"id": "file-parser", "pdf": {"engine": PDF_PARSER_ENGINE}}]
        if self._fallback_models:
            body["models"] = [model, *self._fallback_models]
        return request_json(body, messages)

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
            except Retryable as failure:
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

    async def _read_with_retries(self, path: str, params: dict[str, str]) -> JSONObject:
        attempts = max(1, self._retry.attempts)
        for attempt in range(1, attempts + 1):
            try:
                return await self._read_once(path, params)
            except Retryable as failure:
                if attempt == attempts:
                    raise failure.error from failure.__cause__
                delay = round(self._delay(attempt, failure.retry_after), 3)
                reason, status = failure.error.code, failure.status
            logger.warning(
                "read_retry", path=path, reason=reason, status=status, attempt=attempt, delay=delay
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _read_once(self, path: str, params: dict[str, str]) -> JSONObject:
        try:
            response = await self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise read_failure(exc) from exc
        if not response.is_success:
            raise read_response_error(response, self._retry.max_retry_after)
        payload = json_object(response.text)
        if payload is None:
            raise Retryable(ModelUnavailable())
        return payload

    async def _complete_once(self, body: bytes, model: str) -> Completion:
        try:
            response = await self._http.post(COMPLETIONS_PATH, content=body, headers=JSON_HEADERS)
        except httpx.HTTPError as exc:
            raise transport_failure(exc) from exc
        if not response.is_success:
            raise response_error(response, self._retry.max_retry_after)
        payload = json_object(response.text)
        if payload is None:
            raise ModelUnavailable  # the model had the request: not retried
        if "error" in payload:
            raise error_for_code(payload["error"])
        return completion_from(payload, model)

    async def _transcribe_once(self, body: bytes, model: str) -> Transcript:
        try:
            response = await self._http.post(
                TRANSCRIPTIONS_PATH,
                content=body,
                headers=JSON_HEADERS,
                timeout=self._transcription_timeout,
            )
        except httpx.HTTPError as exc:
            raise transport_failure(exc) from exc
        if not response.is_success:
            raise response_error(response, self._retry.max_retry_after)
        return transcript_from(response, model)

    async def _open_stream(self, body: bytes, model: str) -> _OpenedStream:
        request = self._http.build_request(
            "POST", COMPLETIONS_PATH, content=body, headers=JSON_HEADERS
        )
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise transport_failure(exc) from exc
        if not response.is_success:
            await response.aclose()
            raise response_error(response, self._retry.max_retry_after)
        try:
            events = StreamReader(response, model).events()
            # Pulling the first event here keeps every pre-text failure inside the retries.
            first = await anext(events)
        except BaseException:
            await response.aclose()
            raise
        return response, events, first


def _has_file(message: ChatMessage) -> bool:
    return not isinstance(message.content, str) and any(
        part["type"] == "file" for part in message.content
    )


def _next_page_params(page: JSONObject) -> dict[str, str]:
    """The query of the next page (`links.next`, e.g. `/api/v1/models?offset=500&limit=500`),
    empty on the last page. Only its query is taken: the key never goes to another address."""
    links = page.get("links")
    following = links.get("next") if isinstance(links, dict) else None
    if not isinstance(following, str) or not following:
        return {}
    return dict(httpx.URL(following).params)


async def _reporting_failures(admitted: Attempt, attempt_once: Callable[[], Awaitable[T]]) -> T:
    """One request; if it fails, the breaker is told how."""
    try:
        return await attempt_once()
    except Retryable:
        admitted.failed()
        raise
    except ModelError as error:
        admitted.ended_with(error)
        raise
    except BaseException:
        admitted.released()  # cancelled, or a bug: nothing learned about the provider
        raise
