"""The REST endpoints of the original design, on the same core the chat fronts use."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from typing import TypeVar
from urllib.parse import quote

import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from bots.http.auth import Principal
from bots.http.errors import ApiError, core_error_response, sse_error_event
from bots.http.schema import (
    AddMessage,
    AttachmentIn,
    ChatMessage,
    ChatReply,
    CreateSession,
    HistoryPage,
    MessageList,
    MessageOut,
    Page,
    SessionList,
    SessionOut,
    StartChat,
    StoppedEvent,
    StopResult,
    TextDeltaEvent,
    UpdateSession,
    UserPath,
    UserUsageOut,
)
from bots.runtime import Services
from core.attachments.intake import MAX_FILES_PER_MESSAGE, IncomingFile, TakenIn
from core.attachments.media import sniff_media_type
from core.conversation import AttachmentKind, MessagePage, Role
from core.errors import (
    ChatbridgeError,
    ModelNotConfigured,
    QuotaExceeded,
    RateLimited,
    ServiceStopping,
    TurnStopped,
)
from core.messages import normalize_locale
from core.sessions.export import MEDIA_TYPE, export_session
from core.settings import Settings
from core.turn import Turn

log = structlog.get_logger(__name__)

SERVICES = web.AppKey("services", Services)
PRINCIPAL = web.RequestKey("principal", Principal)  # set by the auth middleware
FRONT = "http"  # the front label of this API's turns in the metrics
HISTORY_DEFAULT_LIMIT = 20
MESSAGES_DEFAULT_LIMIT = 50
MAX_BODY_BYTES = 64 * 1024  # a request's body, but a chat turn's with files (body_limit)
ROLES_OF_THE_SERVICE = (
    "A user's token may add role user messages only; assistant and system messages need the "
    "service token (API_TOKEN)."
)

Body = TypeVar("Body", bound=BaseModel)
# What a pattern means, instead of the regular expression pydantic would quote.
PATTERN_RULES = {
    "message": "must not be blank",
    "initialMessage": "must not be blank",
    "content": "must not be blank",
    "modelId": "must be a model id like openai/gpt-4o-mini",
    "model": "must be a model id like openai/gpt-4o-mini",
    "userId": "must be printable text without '/', and not '.' or '..'",
    "user_id": "must be printable text without '/', and not '.' or '..'",
}
routes = web.RouteTableDef()


@routes.post("/api/sessions")
async def create_session(request: web.Request) -> web.Response:
    """Create a session for a user (409 at MAX_SESSIONS_PER_USER)."""
    body = await read_json(request, CreateSession)
    principal_of(request).require_user(body.user_id)
    services = request.app[SERVICES]
    session = await services.store.create_session(
        body.user_id,
        title=body.title,
        model=body.model or "",
        default_model=services.settings.default_model,
        system_prompt=body.system_prompt,
    )
    return respond(SessionOut.of(session), status=201)


@routes.get("/api/sessions/{session_id:[0-9a-f]{32}}")
async def get_session(request: web.Request) -> web.Response:
    session = await request.app[SERVICES].store.get_session(
        request.match_info["session_id"], owner=principal_of(request).owner
    )
    return respond(SessionOut.of(session))


@routes.patch("/api/sessions/{session_id:[0-9a-f]{32}}")
async def update_session(request: web.Request) -> web.Response:
    """Change any of a session's title, model and system prompt (null: the global one)."""
    body = await read_json(request, UpdateSession)
    session = await request.app[SERVICES].store.update_session(
        request.match_info["session_id"], owner=principal_of(request).owner,
        title=body.title, model=body.model, system_prompt=body.system_prompt,
        is_system_prompt_reset=body.is_system_prompt_reset,
    )  # fmt: skip
    return respond(SessionOut.of(session))


@routes.delete("/api/sessions/{session_id:[0-9a-f]{32}}")
async def delete_session(request: web.Request) -> web.Response:
    await request.app[SERVICES].store.delete_session(
        request.match_info["session_id"], owner=principal_of(request).owner
    )
    return web.Response(status=204)


@routes.get("/api/users/{user_id}/sessions")
async def list_user_sessions(request: web.Request) -> web.Response:
    """The user's sessions, most recent activity first."""
    user_id = _validated(UserPath, {"user_id": request.match_info["user_id"]}).user_id
    principal_of(request).require_user(user_id)
    listing = await request.app[SERVICES].store.list_sessions(user_id)
    return respond(SessionList(sessions=[SessionOut.of(s) for s in listing.sessions]))


@routes.get("/api/users/{user_id}/usage")
async def user_usage(request: web.Request) -> web.Response:
    """The person's tokens and cost today and in the last 30 UTC days, and the budget left."""
    user_id = _validated(UserPath, {"user_id": request.match_info["user_id"]}).user_id
    principal_of(request).require_user(user_id)
    return respond(UserUsageOut.of(await request.app[SERVICES].store.usage(user_id)))


@routes.post("/api/sessions/{session_id:[0-9a-f]{32}}/messages")
async def add_message(request: web.Request) -> web.Response:
    """Store a message without asking the model (imports, system notes): refused while a turn
    holds the session (409), counted against its owner's RATE_LIMIT_MESSAGES (429)."""
    body = await read_json(request, AddMessage)
    role, principal = Role(body.role), principal_of(request)
    if role is not Role.USER:
        # A user speaks for themselves only: words put in the model's or the system's mouth
        # would steer every later answer. Refused before the session is looked up, so this
        # says nothing about whether it exists.
        principal.require_full_access(ROLES_OF_THE_SERVICE)
    services = request.app[SERVICES]
    try:
        message = await services.store.add_message(
            request.match_info["session_id"], role, body.content, owner=principal.owner,
            model=body.model,
        )  # fmt: skip
    except RateLimited:
        services.metrics.rate_limit_refused("user")
        raise
    return respond(MessageOut.of(message), status=201)


@routes.post("/api/sessions/{session_id:[0-9a-f]{32}}/stop")
async def stop(request: web.Request) -> web.Response:
    """Stop the answer being written in the session, on whichever replica writes it."""
    stopped = await request.app[SERVICES].chat.stop_answer(
        request.match_info["session_id"], owner=principal_of(request).owner
    )
    return respond(StopResult(stopped=stopped))


@routes.get("/api/sessions/{session_id:[0-9a-f]{32}}/messages")
async def list_messages(request: web.Request) -> web.Response:
    return respond(MessageList.of(await _page_of_messages(request, MESSAGES_DEFAULT_LIMIT)))


@routes.get("/api/sessions/{session_id:[0-9a-f]{32}}/export")
async def export(request: web.Request) -> web.Response:
    """The session as a Markdown file to download; labels in the Accept-Language."""
    store, owner = request.app[SERVICES].store, principal_of(request).owner
    session = await store.get_session(request.match_info["session_id"], owner=owner)
    locale = normalize_locale(request.headers.get("Accept-Language"))
    exported = await export_session(store, session, owner=owner, locale=locale)
    return web.Response(
        text=exported.markdown,
        content_type=MEDIA_TYPE,
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{exported.filename}"'},
    )


@routes.get(
    "/api/sessions/{session_id:[0-9a-f]{32}}/attachments/{attachment_id:[0-9]{1,9}-[0-9]{1,2}}"
)
async def attachment(request: web.Request) -> web.Response:
    """A file of the session's messages, as stored, for whoever may read the session."""
    file, data = await request.app[SERVICES].store.read_attachment(
        request.match_info["session_id"], request.match_info["attachment_id"],
        owner=principal_of(request).owner,
    )  # fmt: skip
    return web.Response(
        body=data,
        content_type=file.media_type,
        headers={
            "Content-Disposition": content_disposition(file.name),
            # The type was sniffed from the bytes: a browser must not guess another.
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
        },
    )


@routes.get("/api/chat/session/{session_id:[0-9a-f]{32}}/history")
async def history(request: web.Request) -> web.Response:
    """The page with the session's summary, which /history shows among its messages."""
    page = await _page_of_messages(request, HISTORY_DEFAULT_LIMIT)
    return respond(HistoryPage.of_session(request.match_info["session_id"], page))


@routes.post("/api/chat/session/start")
async def start_chat(request: web.Request) -> web.Response:
    """Create a session and answer its first message in one call (429 at a user's limit)."""
    body = await read_json(request, StartChat, max_bytes=body_limit(request.app[SERVICES].settings))
    principal_of(request).require_user(body.user_id)
    services = request.app[SERVICES]
    # Refuse what would fail anyway before creating anything.
    taken = await _taken_in(services, body.initial_message, body.attachments)
    if any(file.kind is AttachmentKind.IMAGE for file in taken.attachments):
        # A new session answers with this model: a refusal must come before it is created.
        await services.chat.require_image_reader(body.model_id or services.settings.default_model)
    if not services.chat.model.is_configured:
        raise ModelNotConfigured()
    if services.chat.is_stopping:
        raise ServiceStopping()
    try:
        # Refused here too (same round trip) when the turn would be: no empty session is left.
        session = await services.store.create_session(
            body.user_id, title=body.title, default_model=services.settings.default_model,
            for_turn=True,
        )  # fmt: skip
    except QuotaExceeded as error:
        services.metrics.turn_ended_early(FRONT, error, body.user_id)  # refused before it began
        raise
    turn = services.chat.turn(
        taken.text,
        user_id=body.user_id,
        session_id=session.id,
        model=body.model_id,
        front=FRONT,
        attachments=taken.attachments,
    )
    try:
        return respond(await _complete(turn), status=201)
    except ChatbridgeError as error:
        # The session and the message are kept (for a retry): say where they are.
        response = core_error_response(error)
        response.headers["Location"] = f"/api/sessions/{session.id}"
        return response


@routes.post("/api/chat/session")
async def chat(request: web.Request) -> web.StreamResponse:
    """One turn in a session; Server-Sent Events when `stream` is true."""
    body = await read_json(
        request, ChatMessage, max_bytes=body_limit(request.app[SERVICES].settings)
    )
    services = request.app[SERVICES]
    taken = await _taken_in(services, body.message, body.attachments)
    turn = services.chat.turn(
        taken.text,
        user_id=principal_of(request).owner,
        session_id=body.session_id,
        model=body.model_id,
        front=FRONT,
        attachments=taken.attachments,
    )
    if body.stream:
        return await _stream(request, turn)
    return respond(await _complete(turn))


async def _taken_in(services: Services, typed: str, attachments: list[AttachmentIn]) -> TakenIn:
    """The message with its files, as the turn stores it (core/attachments/intake.py); what is
    refused is refused before anything is created or stored."""
    if not attachments:
        services.store.check_content(typed)
        return TakenIn(typed, ())
    if not typed.strip():
        typed = ""  # files alone
    else:
        services.store.check_content(typed)  # MAX_MESSAGE_LENGTH holds for the words typed
    files = [_file_of(attachment, index) for index, attachment in enumerate(attachments)]
    if services.intake is None:
        raise ApiError(503, "service_unavailable", "This service takes no attachments.")
    return await services.intake.take_in(typed, files)


def _file_of(attachment: AttachmentIn, index: int) -> IncomingFile:
    """The bytes, which must be what the client says they are (the kind is read from them)."""
    try:
        data = base64.b64decode(attachment.data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(
            422, "validation_error", f"attachments.{index}.data: is not base64"
        ) from None
    kind = sniff_media_type(data).kind
    if kind.value != attachment.type:
        reason = f"attachments.{index}.type: the file is {kind.value}, not {attachment.type}"
        raise ApiError(422, "validation_error", reason)
    return IncomingFile(data, attachment.name or f"attachment-{index + 1}")


async def _complete(turn: Turn) -> ChatReply:
    """The answer; a stopped one as far as it was written (409 turn_stopped before a word)."""
    try:
        async with turn:
            async for _ in turn.deltas():
                pass
    except TurnStopped:
        if turn.reply is None:
            raise
    return _chat_reply(turn)


async def _stream(request: web.Request, turn: Turn) -> web.StreamResponse:
    """Errors before the first byte are ordinary JSON errors; after it, an `error` event."""
    async with turn:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        writer = _EventWriter(response)
        try:
            async for text in turn.deltas():
                await writer.send("delta", TextDeltaEvent(text=text))
        except TurnStopped:
            await writer.send("stopped", _stopped_event(turn))
            return response
        except ChatbridgeError as error:
            await writer.send_raw(sse_error_event(error))
            return response
        await writer.send("done", _chat_reply(turn))
    await writer.close()
    return response


def _stopped_event(turn: Turn) -> StoppedEvent:
    reply = turn.reply
    session = turn.session_after or turn.session
    return StoppedEvent(
        session=SessionOut.of(session), reply=MessageOut.of(reply) if reply else None
    )


def _chat_reply(turn: Turn) -> ChatReply:
    message, session = turn.outcome()
    return ChatReply.of(session, message, turn.notices)


class _EventWriter:
    """Writes SSE events; once the client has gone, keeps quiet so the answer is still stored."""

    def __init__(self, response: web.StreamResponse) -> None:
        self._response = response
        self._is_client_gone = False

    async def send(self, event: str, data: BaseModel) -> None:
        payload = data.model_dump_json(by_alias=True)
        await self.send_raw(f"event: {event}\ndata: {payload}\n\n".encode())

    async def close(self) -> None:
        if not self._is_client_gone:
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await self._response.write_eof()

    async def send_raw(self, chunk: bytes) -> None:
        if self._is_client_gone:
            return
        try:
            await self._response.write(chunk)
        except (ConnectionResetError, RuntimeError):
            self._is_client_gone = True
            log.info("http.stream_client_gone")


async def _page_of_messages(request: web.Request, default_limit: int) -> MessagePage:
    page = _validated(
        Page,
        {
            "limit": request.query.get("limit", str(default_limit)),
            "offset": request.query.get("offset", "0"),
        },
    )
    return await request.app[SERVICES].store.read_messages(
        request.match_info["session_id"],
        owner=principal_of(request).owner,
        offset=page.offset,
        limit=page.limit,
    )


# --- request and response helpers ------------------------------------------------------------


async def read_json(
    request: web.Request, model: type[Body], *, max_bytes: int = MAX_BODY_BYTES
) -> Body:
    """The body as `model`: 413 past `max_bytes`, 400 for malformed JSON, 422 for the wrong
    shape. Only the routes that take files allow more than MAX_BODY_BYTES (the app's own
    client_max_size is theirs)."""
    raw = await _body_within(request, max_bytes)
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "The request body is not valid JSON.") from None
    return _validated(model, data)


async def _body_within(request: web.Request, max_bytes: int) -> bytes:
    if request.content_length is not None and request.content_length > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=request.content_length)
    chunks, size = [], 0
    async for chunk in request.content.iter_any():  # chunked: counted as it comes
        size += len(chunk)
        if size > max_bytes:
            raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


def _validated(model: type[Body], data: object) -> Body:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        what = first["msg"]
        if first["type"] == "string_pattern_mismatch":
            what = PATTERN_RULES.get(str(first["loc"][-1]), "has characters that are not allowed")
        raise ApiError(422, "validation_error", f"{where}: {what}") from None


def body_limit(settings: Settings) -> int:
    """The largest body a chat turn takes: the words, and MAX_FILES_PER_MESSAGE files of
    MAX_ATTACHMENT_BYTES each as base64 (four characters for every three bytes)."""
    return MAX_BODY_BYTES + MAX_FILES_PER_MESSAGE * 4 * -(-settings.max_attachment_bytes // 3)


def content_disposition(name: str) -> str:
    """`attachment` naming the file: an ASCII fallback, and the name itself (RFC 6266)."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name
    )
    return f"attachment; filename=\"{fallback or 'file'}\"; filename*=UTF-8''{quote(name, safe='')}"


def respond(body: BaseModel, *, status: int = 200, exclude_none: bool = False) -> web.Response:
    text = body.model_dump_json(by_alias=True, exclude_none=exclude_none)
    return web.Response(text=text, status=status, content_type="application/json")


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]
