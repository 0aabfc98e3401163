"""A strict stand-in for OpenRouter's `POST /api/v1/chat/completions` and `GET /api/v1/models`,
served on 127.0.0.1 (and its `POST /api/v1/audio/transcriptions`: openrouter_transcriptions.py).

It answers the way the real service does (OpenRouter's JSON and SSE shapes, its error body
`{"error": {"code", "message"}}`), refuses what the real service refuses (a wrong or missing
key: 401; no model, no messages, a bad role, a `max_tokens` that is not a positive integer: 400),
and records every request it receives. It honours `max_tokens`, counting a word as a token (as
its usage does): a longer answer is cut there, with `finish_reason: "length"`.

By default it replies with a deterministic echo of the last user message, split into several
deltas. Faults are queued and consumed one per request, in order, so a test can script
"429 twice, then answer":

    fake_openrouter.rate_limit(retry_after=0, times=2)

The models list answers as the real one does: public (any key, or none, gets it), each model
shaped as OpenRouter's (`id`, `architecture.input_modalities`, `pricing`, ...), only models
that write text unless `output_modalities` asks otherwise, pages linked by `links.next`. Tests
set what it lists (`list_model`, `unlist_model`) and script its own faults, apart from the chat
completions' (`fail_models_list`, `hold_models_list`, `drop_models_list`); its requests are in
`models_requests`, so `requests` stays the chat completions alone.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import re
import socket
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from core.tokens import MESSAGE_OVERHEAD_TOKENS, count_tokens

FAKE_API_KEY = "sk-or-v1-fake-openrouter-key-0000"
VALID_ROLES = frozenset({"system", "user", "assistant", "tool"})
PROCESSING_COMMENT = b": OPENROUTER PROCESSING\n\n"
DEFAULT_ERROR_CHUNK_MESSAGE = "Provider disconnected unexpectedly"


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: CIMultiDict[str]
    body: Any  # the parsed JSON, or None when the body was not JSON


@dataclass(frozen=True)
class ListedModel:
    """One model of the models list; prices are US dollars a token, strings as OpenRouter's."""

    id: str
    input_modalities: tuple[str, ...] = ("text",)
    output_modalities: tuple[str, ...] = ("text",)
    prompt_price: str = "0.000001"
    # Prompt and answer together; a request past it is refused with 400, as OpenRouter does.
    context_length: int = 128000


# Ids as OpenRouter names them, with plausible modalities (a test sets its own where it
# matters), and one model that writes no text, which the list leaves out unless asked.
DEFAULT_LISTED_MODELS = (
    ListedModel("openai/gpt-4o-mini", ("text", "image", "file"), prompt_price="0.00000015"),
    ListedModel("anthropic/claude-3.5-haiku", ("text", "image"), prompt_price="0.0000008"),
    ListedModel("meta-llama/llama-3.1-8b-instruct", ("text",), prompt_price="0.00000002"),
    ListedModel(
        "google/gemini-2.0-flash-001",
        ("text", "image", "file", "audio", "video"),
        prompt_price="0.0000001",
    ),
    ListedModel("openai/text-embedding-3-small", ("text",), ("embeddings",), "0.00000002"),
)


@dataclass(frozen=True)
class _Fault:
    kind: str
    status: int = 0
    seconds: float = 0.0
    retry_after: float | None = None
    is_http_date: bool = False
    after_deltas: int = 0
    code: int | str = 502
    message: str = DEFAULT_ERROR_CHUNK_MESSAGE
    gate: asyncio.Event | None = None
    is_reset: bool = False
    with_usage: bool = False


class FakeOpenRouter:
    """One fake OpenRouter; `start()` it, point a client at `base_url`, `close()` it."""

    def __init__(self, *, api_key: str = FAKE_API_KEY) -> None:
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self.reply_text: str | None = None  # None: echo the last user message
        self.deltas_per_reply = 4
        self.reports_cost = True
        self.reported_usages: list[dict[str, Any]] = []  # every usage object sent, in order
        self.sends_comment_between_chunks = False
        self._faults: deque[_Fault] = deque()
        self.listed_models = {model.id: model for model in DEFAULT_LISTED_MODELS}
        self.models_page_size: int | None = None  # None: the whole list in one page
        self.models_requests: list[RecordedRequest] = []
        self._models_faults: deque[_Fault] = deque()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._next_id = 0
        # Imported here: the transcription endpoint builds on this module's helpers.
        from tests.fakes.openrouter_transcriptions import FakeTranscriptions  # noqa: PLC0415

        self.transcriptions = FakeTranscriptions(self)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/api/v1"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v1/chat/completions", self._handle)
        app.router.add_post("/api/v1/audio/transcriptions", self.transcriptions.handle)
        app.router.add_get("/api/v1/models", self._handle_models)
        # A client that gives up (read timeout) must not leave a sleeping handler behind.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # Faults: each is queued `times` times and consumed by the next requests, in order.

    def rate_limit(
        self, retry_after: float | None = 1, *, as_http_date: bool = False, times: int = 1
    ) -> FakeOpenRouter:
        """429 with OpenRouter's error body and a Retry-After in seconds (or as an HTTP date)."""
        return self._queue(
            _Fault("rate_limit", 429, retry_after=retry_after, is_http_date=as_http_date), times
        )

    def server_error(self, status: int = 500, *, times: int = 1) -> FakeOpenRouter:
        return self._queue(_Fault("error", status), times)

    def reject(self, status: int = 400, *, times: int = 1) -> FakeOpenRouter:
        return self._queue(_Fault("error", status), times)

    def slow(self, seconds: float, *, times: int = 1) -> FakeOpenRouter:
        """Wait before sending the response headers."""
        return self._queue(_Fault("slow", seconds=seconds), times)

    def slow_first_token(self, seconds: float, *, times: int = 1) -> FakeOpenRouter:
        """Send the headers and a processing comment, then wait before the first delta."""
        return self.stall(after_deltas=0, seconds=seconds, times=times)

    def stall(self, after_deltas: int, seconds: float, *, times: int = 1) -> FakeOpenRouter:
        """Stream that many deltas, then send nothing for `seconds` before going on."""
        return self._queue(_Fault("stall", seconds=seconds, after_deltas=after_deltas), times)

    def cut_stream(self, after_deltas: int, *, times: int = 1) -> FakeOpenRouter:
        """Close the connection after that many deltas, with no final chunk and no [DONE]."""
        return self._queue(_Fault("cut_stream", after_deltas=after_deltas), times)

    def error_chunk(
        self,
        after_deltas: int,
        *,
        code: int | str = 502,
        message: str = DEFAULT_ERROR_CHUNK_MESSAGE,
        times: int = 1,
    ) -> FakeOpenRouter:
        """A mid-stream chunk with a top-level `error` and `finish_reason: "error"`, then EOF."""
        fault = _Fault("error_chunk", after_deltas=after_deltas, code=code, message=message)
        return self._queue(fault, times)

    def drop_after_request(self, *, is_reset: bool = False, times: int = 1) -> FakeOpenRouter:
        """Read the whole request, then close the connection without a byte of answer.

        With `is_reset`, a TCP reset (RST) instead of an orderly close (FIN).
        """
        return self._queue(_Fault("drop", is_reset=is_reset), times)

    def empty_answer(self, *, with_usage: bool = False, times: int = 1) -> FakeOpenRouter:
        """A 200 with no text: a stream of a processing comment then `data: [DONE]` alone (no
        delta, no finish reason); a whole reply whose message content is empty.

        With `with_usage`, the stream ends as a real one does, with a final chunk carrying the
        finish reason and the usage (the prompt's tokens, none for the answer)."""
        return self._queue(_Fault("empty", with_usage=with_usage), times)

    def hold(self, gate: asyncio.Event, *, times: int = 1) -> FakeOpenRouter:
        """Wait until `gate` is set before sending the response headers, then answer."""
        return self._queue(_Fault("hold", gate=gate), times)

    def pause(self, gate: asyncio.Event, *, after_deltas: int, times: int = 1) -> FakeOpenRouter:
        """Stream that many deltas, then send only processing comments (every half second, as
        OpenRouter keeps a slow stream alive) until `gate` is set, then the rest."""
        fault = _Fault("pause", seconds=0.5, after_deltas=after_deltas, gate=gate)
        return self._queue(fault, times)

    def keep_alive_forever(
        self, *, after_deltas: int, every: float = 0.05, times: int = 1
    ) -> FakeOpenRouter:
        """Stream that many deltas, then only processing comments, every `every` seconds, for
        as long as the client listens: a stream that never ends and never times out."""
        fault = _Fault("pause", seconds=every, after_deltas=after_deltas, gate=asyncio.Event())
        return self._queue(fault, times)

    def clear_faults(self) -> FakeOpenRouter:
        """Forget the faults not consumed yet: the service has recovered."""
        self._faults.clear()
        return self

    def primary_fails(self, *, times: int = 1) -> FakeOpenRouter:
        """The first of `models` is down: the second answers (and is named in `model`)."""
        return self._queue(_Fault("primary_fails"), times)

    def _queue(self, fault: _Fault, times: int) -> FakeOpenRouter:
        self._faults.extend([fault] * times)
        return self

    # The models list: what it lists, and its own faults (consumed by its requests only).

    def list_model(
        self,
        model_id: str,
        *,
        inputs: tuple[str, ...] = ("text",),
        outputs: tuple[str, ...] = ("text",),
        prompt_price: str = "0.000001",
        context_length: int = 128000,
    ) -> FakeOpenRouter:
        """List the model (again) with these input and output modalities and context."""
        self.listed_models[model_id] = ListedModel(
            model_id, inputs, outputs, prompt_price, context_length
        )
        return self

    def unlist_model(self, model_id: str) -> FakeOpenRouter:
        self.listed_models.pop(model_id, None)
        return self

    def fail_models_list(self, status: int = 503, *, times: int = 1) -> FakeOpenRouter:
        """The models list answers this status with OpenRouter's error body."""
        self._models_faults.extend([_Fault("error", status)] * times)
        return self

    def hold_models_list(self, gate: asyncio.Event, *, times: int = 1) -> FakeOpenRouter:
        """The models list sends nothing until `gate` is set (a client's timeout, meanwhile)."""
        self._models_faults.extend([_Fault("hold", gate=gate)] * times)
        return self

    def drop_models_list(self, *, times: int = 1) -> FakeOpenRouter:
        """The models list closes the connection without a byte of answer."""
        self._models_faults.extend([_Fault("drop")] * times)
        return self

    async def _handle_models(self, request: web.Request) -> web.StreamResponse:
        # Public: OpenRouter answers whatever the Authorization header says, or without one.
        self.models_requests.append(
            RecordedRequest(request.path, CIMultiDict(request.headers), None)
        )
        fault = self._models_faults.popleft() if self._models_faults else _Fault("none")
        if fault.kind == "drop":
            _drop_connection(request)
            return web.Response()
        if fault.kind == "error":
            return _error_response(fault.status, f"Fake failure {fault.status}")
        if fault.kind == "hold" and fault.gate is not None:
            await fault.gate.wait()
        page = _page_of(request.query, self.models_page_size)
        if page is None:
            return _error_response(400, "offset and limit must be non-negative integers")
        wanted = _wanted_outputs(request.query.get("output_modalities"))
        models = [
            m
            for m in self.listed_models.values()
            if wanted is None or wanted & set(m.output_modalities)
        ]
        offset, limit = page
        shown = models[offset : offset + limit] if limit else models[offset:]
        has_more = bool(limit) and offset + limit < len(models)
        next_page = f"{request.path}?offset={offset + limit}&limit={limit}" if has_more else None
        return web.json_response(
            {"data": [_model_object(m) for m in shown], "links": {"next": next_page}}
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await _json_or_none(request)
        self.requests.append(RecordedRequest(request.path, CIMultiDict(request.headers), body))
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error_response(401, "No cookie auth credentials found")
        problem = _problem_with(request, body)
        if problem is not None:
            return _error_response(400, problem)
        if _has_images(body["messages"]) and not self._reads_images(body["model"]):
            # What OpenRouter answers when no provider of the model takes image input.
            return _error_response(404, "No endpoints found that support image input")
        if (too_long := self._past_context(body)) is not None:
            return _error_response(400, too_long)
        fault = self._faults.popleft() if self._faults else _Fault("none")
        return await self._respond(request, body, fault)

    def _past_context(self, body: dict[str, Any]) -> str | None:
        """OpenRouter's refusal of a request longer than its model's context, counted with the
        tokenizer chatbridge estimates with (the real models' own count differently)."""
        listed = self.listed_models.get(body["model"])
        if listed is None:
            return None
        prompt = sum(
            count_tokens(_text_of(m["content"])) + MESSAGE_OVERHEAD_TOKENS for m in body["messages"]
        )
        output = body.get("max_tokens") or 0
        if prompt + output <= listed.context_length:
            return None
        return (
            f"This endpoint's maximum context length is {listed.context_length} tokens. However, "
            f"you requested about {prompt + output} tokens ({prompt} of text input, {output} in "
            'the output). Please reduce the length of either one, or use the "middle-out" '
            "transform to compress your prompt automatically."
        )

    def _reads_images(self, model: str) -> bool:
        """A model listed without image input reads none; an unlisted one is not refused."""
        listed = self.listed_models.get(model)
        return listed is None or "image" in listed.input_modalities

    async def _respond(
        self, request: web.Request, body: dict[str, Any], fault: _Fault
    ) -> web.StreamResponse:
        if fault.kind == "drop":
            _drop_connection(request, is_reset=fault.is_reset)
            return web.Response()
        if fault.kind == "rate_limit":
            return _rate_limited(fault)
        if fault.kind == "error":
            return _error_response(fault.status, f"Fake failure {fault.status}")
        if fault.kind == "slow":
            await asyncio.sleep(fault.seconds)
        if fault.kind == "hold" and fault.gate is not None:
            await fault.gate.wait()
        model = _answering_model(body, is_primary_down=fault.kind == "primary_fails")
        if model is None:
            return _error_response(502, "The primary model is down and no fallback was given")
        text = "" if fault.kind == "empty" else self._reply_for(body["messages"])
        text, finish = _within_max_tokens(text, body.get("max_tokens"))
        if body.get("stream") is True:
            return await self._stream(request, model, (text, finish), body, fault)
        return await self._whole(request, model, (text, finish), body, fault)

    async def _whole(
        self,
        request: web.Request,
        model: str,
        answer: tuple[str, str],
        body: dict[str, Any],
        fault: _Fault,
    ) -> web.StreamResponse:
        text, finish = answer
        if fault.kind == "stall":
            await asyncio.sleep(fault.seconds)
        if fault.kind == "cut_stream":
            _drop_connection(request)
            return web.Response()
        payload = self._envelope("chat.completion", model)
        if fault.kind == "error_chunk":
            payload["error"] = {"code": fault.code, "message": fault.message}
            payload["choices"] = [
                _choice(message={"role": "assistant", "content": ""}, finish="error")
            ]
            return web.json_response(payload)
        payload["choices"] = [
            _choice(message={"role": "assistant", "content": text}, finish=finish)
        ]
        payload["usage"] = self._usage(body["messages"], text)
        return web.json_response(payload)

    async def _stream(
        self,
        request: web.Request,
        model: str,
        answer: tuple[str, str],
        body: dict[str, Any],
        fault: _Fault,
    ) -> web.StreamResponse:
        text, finish = answer
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        await response.write(PROCESSING_COMMENT)
        if fault.kind == "empty":
            if fault.with_usage:
                final = self._chunk(model, {}, finish="stop")
                final["usage"] = self._usage(body["messages"], "")
                await response.write(_sse(final))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            return response
        pieces = _split(text, self.deltas_per_reply)
        for index in range(len(pieces) + 1):
            if fault.kind == "stall" and index == fault.after_deltas:
                await asyncio.sleep(fault.seconds)
            if fault.kind == "pause" and index == fault.after_deltas:
                await _keep_alive_until(response, fault)
            if fault.kind == "cut_stream" and index == fault.after_deltas:
                _drop_connection(request)
                return response
            if fault.kind == "error_chunk" and index == fault.after_deltas:
                await response.write(_sse(self._error_chunk(model, fault)))
                await response.write_eof()
                return response
            if index < len(pieces):
                await self._send_delta(response, model, pieces[index])
        final = self._chunk(model, {}, finish=finish)
        final["usage"] = self._usage(body["messages"], text)
        await response.write(_sse(final))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _send_delta(self, response: web.StreamResponse, model: str, piece: str) -> None:
        if self.sends_comment_between_chunks:
            await response.write(PROCESSING_COMMENT)
        delta = {"role": "assistant", "content": piece}
        await response.write(_sse(self._chunk(model, delta, finish=None)))

    def _reply_for(self, messages: list[dict[str, Any]]) -> str:
        if self.reply_text is not None:
            return self.reply_text
        last_user = next((m for m in reversed(messages) if m["role"] == "user"), None)
        return f"echo: {_text_of(last_user['content']) if last_user else ''}"

    def _envelope(self, kind: str, model: str) -> dict[str, Any]:
        self._next_id += 1
        return {
            "id": f"gen-fake-{self._next_id}",
            "provider": "FakeProvider",
            "object": kind,
            "created": int(time.time()),
            "model": model,
        }

    def _chunk(self, model: str, delta: dict[str, Any], *, finish: str | None) -> dict[str, Any]:
        chunk = self._envelope("chat.completion.chunk", model)
        chunk["choices"] = [_choice(delta=delta, finish=finish)]
        return chunk

    def _error_chunk(self, model: str, fault: _Fault) -> dict[str, Any]:
        chunk = self._chunk(model, {"content": ""}, finish="error")
        chunk["error"] = {"code": fault.code, "message": fault.message}
        return chunk

    def _usage(self, messages: list[dict[str, Any]], text: str) -> dict[str, Any]:
        prompt = sum(len(_text_of(m["content"]).split()) for m in messages)
        completion = len(text.split())
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if self.reports_cost:
            usage["cost"] = round((prompt + 2 * completion) * 1e-6, 9)
        self.reported_usages.append(usage)
        return usage


async def _json_or_none(request: web.Request) -> Any:
    try:
        return json.loads(await request.text())
    except ValueError:
        return None


def _problem_with(request: web.Request, body: Any) -> str | None:
    """Why the real service would answer 400, or None."""
    if request.content_type != "application/json" or not isinstance(body, dict):
        return "Invalid JSON body"
    checks = (
        (_is_model_id(body.get("model")), "model is required"),
        ("models" not in body or _are_model_ids(body["models"]), "models must list model ids"),
        (isinstance(body.get("stream", False), bool), "stream must be a boolean"),
        (_are_messages(body.get("messages")), "messages must be a non-empty array of messages"),
        ("max_tokens" not in body or _is_positive_int(body["max_tokens"]), "Invalid max_tokens"),
        ("plugins" not in body or _are_plugins(body["plugins"]), "Invalid plugins"),
    )
    return next((problem for is_fine, problem in checks if not is_fine), None)


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_model_id(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _are_model_ids(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_model_id(m) for m in value)


def _are_messages(value: object) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(m, dict)
            and m.get("role") in VALID_ROLES
            and (isinstance(m.get("content"), str) or _are_parts(m.get("content")))
            for m in value
        )
    )


def _are_parts(value: object) -> bool:
    """Content parts as OpenRouter takes them: text, and images as URLs (data URLs included)."""
    return isinstance(value, list) and bool(value) and all(_is_part(part) for part in value)


PDF_ENGINES = frozenset({"mistral-ocr", "cloudflare-ai", "native", "pdf-text"})


def _are_plugins(value: object) -> bool:
    """Plugins as OpenRouter takes them; the file parser's PDF engine one it knows."""
    if not isinstance(value, list):
        return False
    for plugin in value:
        if not isinstance(plugin, dict) or not isinstance(plugin.get("id"), str):
            return False
        pdf = plugin.get("pdf")
        if (
            plugin["id"] == "file-parser"
            and pdf is not None
            and (not isinstance(pdf, dict) or pdf.get("engine") not in PDF_ENGINES)
        ):
            return False
    return True


def _is_file(part: dict[str, Any]) -> bool:
    """A file part: its name and its bytes as a data URL (a PDF: what the parser reads)."""
    file = part.get("file")
    if not isinstance(file, dict) or not isinstance(file.get("filename"), str):
        return False
    data = file.get("file_data")
    return isinstance(data, str) and data.startswith("data:") and _is_base64_data_url(data)


def _is_part(part: object) -> bool:
    if not isinstance(part, dict):
        return False
    if part.get("type") == "text":
        return isinstance(part.get("text"), str)
    if part.get("type") == "file":
        return _is_file(part)
    image = part.get("image_url") if part.get("type") == "image_url" else None
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str):
        return False
    if url.startswith("data:image/"):
        return _is_base64_data_url(url)
    return url.startswith("https://")


def _is_base64_data_url(url: str) -> bool:
    header, _, data = url.partition(",")
    if not header.endswith(";base64") or not data:
        return False
    try:
        base64.b64decode(data, validate=True)
    except ValueError:
        return False
    return True


def _has_images(messages: list[dict[str, Any]]) -> bool:
    return any(
        isinstance(m["content"], list) and any(p["type"] == "image_url" for p in m["content"])
        for m in messages
    )


def _text_of(content: Any) -> str:
    """A message's text: its text parts, when it is a list of parts."""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def _answering_model(body: dict[str, Any], *, is_primary_down: bool) -> str | None:
    candidates = body.get("models") or [body["model"]]
    if not is_primary_down:
        return str(candidates[0])
    return str(candidates[1]) if len(candidates) > 1 else None


def _page_of(query: Mapping[str, str], page_size: int | None) -> tuple[int, int] | None:
    """(offset, limit) from the query (limit 0: to the end), or None when they are not numbers."""
    try:
        offset = int(query.get("offset", "0"))
        limit = int(query.get("limit", str(page_size or 0)))
    except ValueError:
        return None
    return (offset, limit) if offset >= 0 and limit >= 0 else None


def _wanted_outputs(value: str | None) -> set[str] | None:
    """The output modalities asked for (None: all); models writing text when not asked."""
    if value is None:
        return {"text"}
    wanted = {part.strip() for part in value.split(",") if part.strip()}
    return None if "all" in wanted else wanted


def _model_object(model: ListedModel) -> dict[str, Any]:
    """One entry of `data`, with every field the real list gives a model."""
    inputs, outputs = list(model.input_modalities), list(model.output_modalities)
    return {
        "id": model.id,
        "canonical_slug": model.id,
        "hugging_face_id": "",
        "name": model.id.split("/")[-1],
        "created": 1721260800,
        "description": f"{model.id}, as listed by the fake OpenRouter.",
        "context_length": model.context_length,
        "architecture": {
            "modality": f"{'+'.join(inputs)}->{'+'.join(outputs)}",
            "input_modalities": inputs,
            "output_modalities": outputs,
            "tokenizer": "Other",
            "instruct_type": None,
        },
        "pricing": {
            "prompt": model.prompt_price,
            "completion": model.prompt_price,
            "request": "0",
            "image": "0",
            "web_search": "0",
            "internal_reasoning": "0",
        },
        "top_provider": {
            "context_length": model.context_length,
            "max_completion_tokens": 16384,
            "is_moderated": False,
        },
        "per_request_limits": None,
        "supported_parameters": ["max_tokens", "temperature", "top_p", "stop"],
        "default_parameters": {},
    }


def _rate_limited(fault: _Fault) -> web.Response:
    response = _error_response(429, "Rate limit exceeded: free-models-per-min")
    if fault.retry_after is not None:
        response.headers["Retry-After"] = _retry_after_header(fault)
    return response


def _retry_after_header(fault: _Fault) -> str:
    seconds = fault.retry_after or 0.0
    if fault.is_http_date:
        return formatdate(time.time() + seconds, usegmt=True)
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def _error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message}}, status=status)


def _choice(*, finish: str | None, **content: dict[str, Any]) -> dict[str, Any]:
    return {"index": 0, **content, "finish_reason": finish}


def _sse(chunk: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(chunk)}\n\n".encode()


def _within_max_tokens(text: str, max_tokens: int | None) -> tuple[str, str]:
    """The answer cut after `max_tokens` words (the fake's tokens), and its finish reason."""
    words = list(re.finditer(r"\S+", text))
    if max_tokens is None or len(words) <= max_tokens:
        return text, "stop"
    return text[: words[max_tokens - 1].end()], "length"


def _split(text: str, parts: int) -> list[str]:
    size = max(1, math.ceil(len(text) / max(1, parts)))
    return [text[start : start + size] for start in range(0, len(text), size)]


async def _keep_alive_until(response: web.StreamResponse, fault: _Fault) -> None:
    """Processing comments every `fault.seconds` until `fault.gate` is set."""
    assert fault.gate is not None
    while not fault.gate.is_set():
        await response.write(PROCESSING_COMMENT)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fault.gate.wait(), fault.seconds)


def _drop_connection(request: web.Request, *, is_reset: bool = False) -> None:
    # close() flushes what was already written, then ends the TCP stream mid-body: the
    # client sees the deltas so far and then an incomplete chunked response.
    transport = request.transport
    assert transport is not None
    if not is_reset:
        transport.close()
        return
    # SO_LINGER on, with a zero timeout: closing sends RST, and the client's read fails with
    # ECONNRESET instead of seeing an orderly end of stream.
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


@pytest.fixture
async def fake_openrouter() -> AsyncIterator[FakeOpenRouter]:
    """A started FakeOpenRouter expecting FAKE_API_KEY, closed after the test."""
    fake = FakeOpenRouter()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
