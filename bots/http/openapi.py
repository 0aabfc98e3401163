"""The OpenAPI 3.1 document at /api/openapi.json, generated from the models that validate.

Limits that come from settings (MAX_MESSAGE_LENGTH, MAX_ASSISTANT_MESSAGE_LENGTH) are written
into the document when the app is built, so the document always states the limits the server
enforces.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bots.http.dashboard_schema import DashboardOut
from bots.http.schema import (
    OFFSET_MAX,
    PAGE_LIMIT_MAX,
    USER_ID_MAX_CHARS,
    USER_ID_PATTERN,
    AddMessage,
    ChatMessage,
    ChatReply,
    CreateSession,
    ErrorOut,
    Health,
    HistoryPage,
    MessageList,
    MessageOut,
    SessionList,
    SessionOut,
    SessionsHealth,
    StartChat,
    StoppedEvent,
    StopResult,
    UpdateSession,
    UserUsageOut,
)
from core.sessions.keys import SESSION_ID_PATTERN
from core.settings import Settings

JSON = dict[str, Any]
ATTACHMENT_ID_PATTERN = r"^[0-9]{1,9}-[0-9]{1,2}$"  # <message seq>-<n>
REF = "#/components/schemas/{model}"
REQUESTS: tuple[type[BaseModel], ...] = (
    CreateSession, UpdateSession, StartChat, ChatMessage, AddMessage,
)  # fmt: skip
RESPONSES: tuple[type[BaseModel], ...] = (
    SessionOut, SessionList, MessageOut, MessageList, HistoryPage, ChatReply, ErrorOut, Health,
    SessionsHealth, DashboardOut, StopResult, StoppedEvent, UserUsageOut,
)  # fmt: skip
ERROR_TEXT = {
    400: "Malformed JSON",
    401: "Missing, malformed or expired token",
    403: "A user's token acting for another user, or doing what needs the service token "
    "(API_TOKEN): adding a message of role assistant or system, the dashboard, the metrics",
    404: "No such session (or another user's), or no such file in it",
    410: "The file is listed but no longer kept: MAX_ATTACHMENT_BYTES_PER_SESSION dropped it for "
    "newer files of its session",
    409: "Session limit reached, session busy, nothing to retry, the turn lost its session, or "
    "it was stopped before a word (turn_stopped)",
    413: "Request body over its limit (64 KiB, plus 4 files of MAX_ATTACHMENT_BYTES in base64), "
    "or one attachment over MAX_ATTACHMENT_BYTES (file_too_large)",
    415: "An attachment whose bytes are of no kind the service reads (invalid_attachment), or "
    "audio in a format the transcription does not take",
    422: "Body or query of the wrong shape, a message too long or empty, or an attachment that "
    "cannot be used (not what its type says, damaged, a PDF without text, a model that reads no "
    "images, too many files)",
    429: "The user's rate limit (RATE_LIMIT_MESSAGES per RATE_LIMIT_WINDOW) or daily token "
    "budget is reached, or the model provider is rate limiting: retry after Retry-After",
    502: "The model failed or its answer was cut off",
    503: "Redis or the model is unavailable (Retry-After when the model's circuit breaker is "
    "open), or the service is shutting down",
    504: "The model took too long, or its answer went on past TURN_TIMEOUT",
}
SESSION_ERRORS = (401, 404, 503)
BODY_ERRORS = (400, 401, 413, 422, 503)
MODEL_ERRORS = (409, 415, 429, 502, 504)
RETRY_AFTER = {
    "description": "Whole seconds to wait before trying again",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}


def openapi_document(settings: Settings) -> JSON:
    schemas = _component_schemas(settings)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chatbridge",
            "version": "1.0.0",
            "description": "Chat sessions in Redis with per-user limits, answered by LLMs.",
        },
        "paths": _paths(),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "API_TOKEN (full access), or an HS256 JWT whose `sub` is "
                    "the userId (that user's sessions only). Not required when the server "
                    "runs without API_TOKEN and JWT_SECRET (loopback only).",
                }
            },
        },
        "security": [{"bearer": []}] if settings.api_token or settings.jwt_secret else [],
    }


def _component_schemas(settings: Settings) -> JSON:
    max_message_length = settings.max_message_length
    pairs = [(m, "validation") for m in REQUESTS] + [(m, "serialization") for m in RESPONSES]
    _, top = models_json_schema(pairs, ref_template=REF, by_alias=True)  # type: ignore[arg-type]
    schemas: JSON = top["$defs"]
    for model, field in (("StartChat", "initialMessage"), ("ChatMessage", "message")):
        schemas[model]["properties"][field]["maxLength"] = max_message_length
    schemas["AddMessage"]["properties"]["content"]["description"] = (
        f"at most {max_message_length} characters for roles user and system, "
        f"{settings.max_assistant_message_length} for role assistant"
    )
    return schemas


def _paths() -> JSON:
    session = _path_parameter(
        "sessionId", {"type": "string", "pattern": SESSION_ID_PATTERN.pattern}
    )
    return {**_session_paths(session), **_chat_paths(session), **_service_paths()}


def _session_paths(session: JSON) -> JSON:
    user = _path_parameter(
        "userId",
        {
            "type": "string",
            "minLength": 1,
            "maxLength": USER_ID_MAX_CHARS,
            "pattern": USER_ID_PATTERN,
        },
    )
    return {
        "/api/sessions": {"post": _operation(
            "Create a session", body="CreateSession", ok=(201, "SessionOut"),
            errors=(*BODY_ERRORS, 403, 409))},
        "/api/sessions/{sessionId}": {
            "parameters": [session],
            "get": _operation("Get a session", ok=(200, "SessionOut"), errors=SESSION_ERRORS),
            "patch": _operation(
                "Change any of a session's title, model and system prompt (a null systemPrompt "
                "goes back to SYSTEM_PROMPT)", body="UpdateSession", ok=(200, "SessionOut"),
                errors=(*BODY_ERRORS, 404)),
            "delete": _operation("Delete a session", ok=(204, None), errors=SESSION_ERRORS),
        },
        "/api/users/{userId}/sessions": {
            "parameters": [user],
            "get": _operation("A user's sessions, most recent activity first",
                              ok=(200, "SessionList"), errors=(401, 403, 422, 503)),
        },
        "/api/users/{userId}/usage": {
            "parameters": [user],
            "get": _operation("A person's tokens and cost today and in the last 30 UTC days, "
                              "and what is left of DAILY_TOKEN_BUDGET today",
                              ok=(200, "UserUsageOut"), errors=(401, 403, 422, 503)),
        },
        "/api/sessions/{sessionId}/attachments/{attachmentId}": {
            "parameters": [session, _path_parameter(
                "attachmentId", {"type": "string", "pattern": ATTACHMENT_ID_PATTERN})],
            "get": _attachment_operation(),
        },
        "/api/sessions/{sessionId}/export": {
            "parameters": [session],
            "get": _export_operation(),
        },
        "/api/sessions/{sessionId}/stop": {
            "parameters": [session],
            "post": _operation(
                "Stop the answer being written in the session, on whichever replica writes "
                "it (within a second): what it showed is kept, marked stopped",
                ok=(200, "StopResult"), errors=SESSION_ERRORS),
        },
        "/api/sessions/{sessionId}/messages": {
            "parameters": [session],
            "get": _page_operation("A session's messages, oldest first", default_limit=50),
            "post": _operation(
                "Store a message without asking the model: refused while a turn holds the "
                "session (409 session_busy); counted against the session owner's "
                "RATE_LIMIT_MESSAGES like a turn (429 rate_limited)", body="AddMessage",
                ok=(201, "MessageOut"), errors=(*BODY_ERRORS, 403, 404, 409, 429)),
        },
    }  # fmt: skip


def _chat_paths(session: JSON) -> JSON:
    return {
        "/api/chat/session/start": {"post": _operation(
            "Create a session and answer its first message", body="StartChat",
            ok=(201, "ChatReply"), errors=(*BODY_ERRORS, *MODEL_ERRORS, 403))},
        "/api/chat/session": {"post": _chat_operation()},
        "/api/chat/session/{sessionId}/history": {
            "parameters": [session],
            "get": _page_operation(
                "A session's history, oldest first, with its summary", default_limit=20,
                page="HistoryPage",
            ),
        },
    }  # fmt: skip


def _service_paths() -> JSON:
    return {
        "/health": {"get": _health_operation("Service health", "Health")},
        "/api/sessions/health": {
            "get": _health_operation(
                "Session service health and activity (the count is at most 5 s old)",
                "SessionsHealth",
            )
        },
        "/api/openapi.json": {"get": {
            "summary": "This document", "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {
                "application/json": {"schema": {"type": "object"}}}}}}},
        "/api/dashboard": {"get": _operation(
            "The dashboard's figures over the last hour and day, from every replica (the "
            "service token when auth is on)", ok=(200, "DashboardOut"), errors=(401, 403, 503))},
        "/metrics": {"get": {
            "summary": "Prometheus metrics (the service token when auth is on)",
            "responses": {"200": {"description": "Prometheus text format", "content": {
                "text/plain": {"schema": {"type": "string"}}}}, **_errors((401, 403))}}},
    }  # fmt: skip


def _operation(
    summary: str, *, ok: tuple[int, str | None], errors: tuple[int, ...], body: str | None = None
) -> JSON:
    status, schema = ok
    success: JSON = {"description": "Success"}
    if schema is not None:
        success["content"] = {"application/json": {"schema": _ref(schema)}}
    operation: JSON = {"summary": summary, "responses": {str(status): success, **_errors(errors)}}
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return operation


def _chat_operation() -> JSON:
    operation = _operation(
        "One turn in a session",
        body="ChatMessage",
        ok=(200, "ChatReply"),
        errors=(*BODY_ERRORS, *MODEL_ERRORS, 404),
    )
    operation["responses"]["200"]["content"]["text/event-stream"] = {
        "schema": {"type": "string"},
        "description": "With stream: true. Events: `delta` ({text}) per piece of the answer, "
        "then `done` (a ChatReply, its `notices` included), `stopped` (a StoppedEvent: POST "
        "/api/sessions/{sessionId}/stop ended it) or `error` ({error: {code, message}}).",
    }
    return operation


def _attachment_operation() -> JSON:
    operation = _operation(
        "A file of the session's messages, its bytes as stored (an image as re-encoded for the "
        "model), for whoever may read the session", ok=(200, None), errors=(*SESSION_ERRORS, 410),
    )  # fmt: skip
    operation["responses"]["200"].update(
        {
            "description": "The bytes, typed as sniffed from them (never from the file's name)",
            "headers": {
                "Content-Disposition": {
                    "description": "attachment; filename=\"<ASCII name>\"; filename*=UTF-8''<name>",
                    "required": True,
                    "schema": {"type": "string"},
                }
            },
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        }
    )
    return operation


def _export_operation() -> JSON:
    operation = _operation(
        "The session as a Markdown file (labels in the Accept-Language: en or pt-BR)",
        ok=(200, None),
        errors=SESSION_ERRORS,
    )
    operation["responses"]["200"].update(
        {
            "description": "The title, model and times, then every message with its speaker",
            "headers": {
                "Content-Disposition": {
                    "description": 'attachment; filename="chatbridge-<title>-<day>.md"',
                    "required": True,
                    "schema": {"type": "string"},
                }
            },
            "content": {"text/markdown": {"schema": {"type": "string"}}},
        }
    )
    return operation


def _page_operation(summary: str, *, default_limit: int, page: str = "MessageList") -> JSON:
    operation = _operation(summary, ok=(200, page), errors=(*SESSION_ERRORS, 422))
    operation["parameters"] = [
        _query_parameter("limit", {"type": "integer", "minimum": 1, "maximum": PAGE_LIMIT_MAX,
                                   "default": default_limit}),
        _query_parameter("offset", {"type": "integer", "minimum": 0, "maximum": OFFSET_MAX,
                                    "default": 0}),
    ]  # fmt: skip
    return operation


def _health_operation(summary: str, schema: str) -> JSON:
    body = {"content": {"application/json": {"schema": _ref(schema)}}}
    return {
        "summary": summary,
        "security": [],
        "responses": {
            "200": {"description": "Redis answers", **body},
            "503": {"description": "Redis is down", **body},
        },
    }


def _errors(statuses: tuple[int, ...]) -> JSON:
    content = {"application/json": {"schema": _ref("ErrorOut")}}
    responses: JSON = {
        str(status): {"description": ERROR_TEXT[status], "content": content}
        for status in sorted(set(statuses))
    }
    if "429" in responses:
        responses["429"]["headers"] = {"Retry-After": RETRY_AFTER}
    if "503" in responses:
        responses["503"]["headers"] = {"Retry-After": {**RETRY_AFTER, "required": False}}
    return responses


def _path_parameter(name: str, schema: JSON) -> JSON:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query_parameter(name: str, schema: JSON) -> JSON:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _ref(name: str) -> JSON:
    return {"$ref": REF.format(model=name)}
