"""The chat commands, parsed and executed once for every front.

A front hands over who spoke (a platform-qualified user id), what they wrote and their
language; it gets back a finished `Reply` (text plus optional choices, which it may render as
buttons), a `FileReply` (a document with a caption) or a `TurnReply` whose turn it streams.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from core.attachments.intake import AttachmentIntake, IncomingFile, TakenIn
from core.chat import ChatService
from core.conversation import Message, MessagePage, Role, Session, SessionSummary
from core.errors import (
    AttachmentProblem,
    ChatbridgeError,
    InvalidArgument,
    InvalidAttachment,
    NotSessionCreator,
    SessionLimitReached,
    SessionNotFound,
    UnknownCommand,
)
from core.messages import describe, help_text, summary_heading, text, usage_text
from core.observability.metrics import Metrics, front_of
from core.personas import RESET, PersonaCatalog
from core.sessions.codec import seq_of_message
from core.sessions.export import MEDIA_TYPE, export_session
from core.sessions.keys import SESSION_ID_PATTERN
from core.sessions.store import SessionStore
from core.spaces import Speaker
from core.turn import Turn

HISTORY_DEFAULT = 10
HISTORY_MAX = 50
HISTORY_PREVIEW_CHARS = 300
# Of the session's summary (at most 6,000 characters): enough to see what it keeps.
HISTORY_SUMMARY_CHARS = 600
TITLE_MAX_CHARS = 100
PLAIN_NUMBER = re.compile(r"[0-9]{1,9}")
MODEL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.:\-]+$")
MODEL_ID_MAX_CHARS = 100
MODEL_EXAMPLE = "anthropic/claude-3.5-haiku"
CONFIRM = "confirm"


@dataclass(frozen=True, slots=True)
class Choice:
    """A button: `command` is run as if the user had typed it; None just dismisses."""

    label: str
    command: str | None


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    choices: tuple[Choice, ...] = ()
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class FileReply:
    """A document to hand over: a Telegram document, a Discord attachment, a file on disk."""

    filename: str
    content: bytes
    caption: str
    media_type: str


@dataclass(frozen=True, slots=True)
class TurnReply:
    """A model answer to stream: `async with reply.turn as turn: async for t in turn.deltas()`.
    `preface`, when not empty, is said first, on its own: what was heard in a voice message,
    which documents were only partly read."""

    turn: Turn
    preface: str = ""


Outcome = Reply | FileReply | TurnReply


@dataclass(frozen=True, slots=True)
class Request:
    speaker: Speaker
    args: str
    locale: str

    @property
    def user_id(self) -> str:
        """Whose sessions the command acts on: the speaker's space (core/spaces.py)."""
        return self.speaker.space


Handler = Callable[["CommandHandler", Request], Awaitable[Outcome]]


def parse_command(message: str) -> tuple[str, str] | None:
    """`/name@bot args` to `(name, args)`; None for plain text."""
    match = re.match(r"^/([A-Za-z_]+)(?:@\S+)?(?:\s+(.*))?$", message.strip(), re.DOTALL)
    if match is None:
        return None
    return match.group(1).lower(), (match.group(2) or "").strip()


def is_command(message: str, name: str) -> bool:
    """Whether `message` is the command `name` (`/name`, `/name@bot`, with arguments or not)."""
    parsed = parse_command(message)
    return parsed is not None and parsed[0] == name


class CommandHandler:
    """Executes commands and plain messages on behalf of a user."""

    def __init__(
        self,
        chat: ChatService[SessionStore],
        metrics: Metrics | None = None,
        *,
        intake: AttachmentIntake | None = None,
        personas: PersonaCatalog | None = None,
    ) -> None:
        self.chat = chat
        self.personas = personas if personas is not None else PersonaCatalog()
        self.store = chat.store
        self.metrics = metrics if metrics is not None else chat.metrics
        self._intake = intake  # None: files are refused (a core without a model client)

    @property
    def _document_chars(self) -> int:
        return self._intake.limits.max_document_chars if self._intake is not None else 0

    async def _taken_in(self, typed: str, files: Sequence[IncomingFile]) -> TakenIn:
        if not files:
            return TakenIn(typed, ())
        if self._intake is None:
            raise InvalidAttachment(reason=AttachmentProblem.UNKNOWN_TYPE)
        return await self._intake.take_in(typed, files)

    async def handle(
        self,
        speaker: Speaker | str,
        message: str,
        *,
        locale: str = "en",
        files: Sequence[IncomingFile] = (),
    ) -> Outcome:
        """What `speaker` said, acted on in their space; a person id alone is the person in
        their own space. `files` go with a plain message (which may then be empty: a photo,
        a voice note). Never raises a core error: those come back as a Reply with
        `is_error`."""
        if isinstance(speaker, str):
            speaker = Speaker.alone(speaker)
        try:
            return await self._dispatch(speaker, message, locale, files)
        except ChatbridgeError as error:
            # Counted here because no front ever sees this error raised.
            self.metrics.command_failed(front_of(speaker.person), error)
            if isinstance(error, SessionLimitReached):
                return await self._limit_reply(speaker.space, error, locale)
            return Reply(describe(error, locale), is_error=True)

    async def _limit_reply(self, user_id: str, error: SessionLimitReached, locale: str) -> Reply:
        """The limit, and a choice per session to delete (each asks for confirmation first)."""
        refused = describe(error, locale)
        try:
            listing = await self.store.list_sessions(user_id)
        except ChatbridgeError:
            return Reply(refused, is_error=True)  # the sentence alone still says what to do
        if not listing.sessions:
            return Reply(refused, is_error=True)
        choices = tuple(
            Choice(
                f"🗑 {number}. {session.title or text(locale, 'untitled')}",
                f"/delete {session.id}",
            )
            for number, session in enumerate(listing.sessions, start=1)
        )
        return Reply(f"{refused}\n{text(locale, 'session_limit_pick')}", choices, is_error=True)

    async def _dispatch(
        self, speaker: Speaker, message: str, locale: str, files: Sequence[IncomingFile]
    ) -> Outcome:
        _require_unicode(message)
        parsed = parse_command(message)
        if parsed is None or files:
            if message or not files:
                self.store.check_content(message)
            taken = await self._taken_in(message, files)
            turn = self.chat.turn(
                taken.text, user_id=speaker.space, front=front_of(speaker.person),
                speaker=speaker, attachments=taken.attachments,
            )  # fmt: skip
            return TurnReply(turn, _preface(taken, locale, self._document_chars))
        name, args = parsed
        handler = COMMANDS.get(name)
        if handler is None:
            raise UnknownCommand(command="/" + name)
        return await handler(self, Request(speaker, args, locale))

    async def start(self, request: Request) -> Outcome:
        ttl_minutes = max(1, self.store.limits.ttl_seconds // 60)
        welcome = text(request.locale, "welcome", ttl_minutes=ttl_minutes)
        return Reply(f"{welcome}\n\n{help_text(request.locale)}")

    async def help(self, request: Request) -> Outcome:
        return Reply(help_text(request.locale))

    async def new(self, request: Request) -> Outcome:
        if len(request.args) > TITLE_MAX_CHARS:
            raise InvalidArgument(name="title", reason=f"at most {TITLE_MAX_CHARS} characters")
        session = await self.store.create_session(
            request.user_id, title=request.args, default_model=self.chat.settings.default_model,
            creator=request.speaker.person,
        )  # fmt: skip
        return Reply(text(request.locale, "session_created", title=_title(session, request)))

    async def rename(self, request: Request) -> Outcome:
        """Retitle the active session; in a shared space, the same people who may delete it."""
        title = " ".join(request.args.split())  # one line: a title is shown in lists and menus
        if not title:
            return Reply(text(request.locale, "rename_usage", limit=TITLE_MAX_CHARS))
        if len(title) > TITLE_MAX_CHARS:
            raise InvalidArgument(name="title", reason=f"at most {TITLE_MAX_CHARS} characters")
        active = await self.store.active_session(request.user_id)
        if active is None:
            return Reply(text(request.locale, "no_session"))
        await self._require_deletable(active, request)
        session = await self.store.rename_session(active.id, title, owner=request.user_id)
        return Reply(text(request.locale, "renamed", title=session.title))

    async def sessions(self, request: Request) -> Outcome:
        listing = await self.store.list_sessions(request.user_id)
        if not listing.sessions:
            return Reply(text(request.locale, "sessions_empty"))
        lines = [text(request.locale, "sessions_header")]
        choices = []
        for number, session in enumerate(listing.sessions, start=1):
            marker = "▶ " if session.id == listing.active_id else ""
            title = _title(session, request)
            lines.append(
                text(
                    request.locale,
                    "session_line",
                    marker=marker,
                    number=number,
                    title=title,
                    count=session.message_count,
                    model=session.model,
                )
                + self._persona_note(session, request)
            )
            choices.append(Choice(f"{number}. {title}", f"/switch {session.id}"))
        return Reply("\n".join(lines), tuple(choices))

    async def switch(self, request: Request) -> Outcome:
        if not request.args:
            return await self.sessions(request)
        session_id = await self._resolve(request)
        session = await self.store.switch_session(request.user_id, session_id)
        return Reply(
            text(
                request.locale,
                "switched",
                title=_title(session, request),
                count=session.message_count,
            )
        )

    async def history(self, request: Request) -> Outcome:
        count = _bounded_int(request.args, "n", default=HISTORY_DEFAULT, high=HISTORY_MAX)
        session = await self.store.active_session(request.user_id)
        if session is None:
            return Reply(text(request.locale, "no_session"))
        # One more than shown: whether the message before the first one shown is summarised
        # tells whether the summary's place is at the top of the list.
        page = await self.store.recent_messages(session.id, count + 1, owner=request.user_id)
        shown = page.messages[-count:]
        if not shown:
            return Reply(text(request.locale, "history_empty"))
        header = text(
            request.locale,
            "history_header",
            title=_title(session, request),
            shown=len(shown),
            total=page.total,
        )
        previews = [_preview(m, request) for m in shown]
        place = _summary_place(page, len(shown))
        if page.summary is not None and place is not None:
            previews.insert(place, _summary_preview(page.summary, request))
        return Reply("\n\n".join([header, *previews]))

    async def export(self, request: Request) -> Outcome:
        session = await self.store.active_session(request.user_id)
        if session is None:
            return Reply(text(request.locale, "no_session"))
        exported = await export_session(
            self.store, session, owner=request.user_id, locale=request.locale,
            persona=self._persona_label(session, request),
        )  # fmt: skip
        caption = text(
            request.locale,
            "export_caption",
            title=_title(session, request),
            count=exported.message_count,
        )
        return FileReply(exported.filename, exported.markdown.encode(), caption, MEDIA_TYPE)

    async def delete(self, request: Request) -> Outcome:
        target, _, confirmation = request.args.partition(" ")
        if confirmation == CONFIRM and SESSION_ID_PATTERN.match(target):
            session = await self.store.get_session(target, owner=request.user_id)
            await self._require_deletable(session, request)
            await self.store.delete_session(target, owner=request.user_id)
            return Reply(text(request.locale, "deleted", title=_title(session, request)))
        if target:
            session = await self.store.get_session(
                await self._resolve(request), owner=request.user_id
            )
        else:
            active = await self.store.active_session(request.user_id)
            if active is None:
                return Reply(text(request.locale, "no_session"))
            session = active
        await self._require_deletable(session, request)
        return Reply(
            text(
                request.locale,
                "delete_confirm",
                title=_title(session, request),
                count=session.message_count,
            ),
            (
                Choice(text(request.locale, "delete_yes"), f"/delete {session.id} {CONFIRM}"),
                Choice(text(request.locale, "delete_no"), None),
            ),
        )

    async def model(self, request: Request) -> Outcome:
        model_id = request.args
        if not model_id:
            active = await self.store.active_session(request.user_id)
            current = active.model if active else self.chat.settings.default_model
            return Reply(
                text(request.locale, "model_current", model=current, example=MODEL_EXAMPLE)
            )
        if len(model_id) > MODEL_ID_MAX_CHARS or not MODEL_ID_PATTERN.match(model_id):
            raise InvalidArgument(name="model", reason=f"expected a model id like {MODEL_EXAMPLE}")
        await self.store.set_user_model(request.user_id, model_id)
        return Reply(text(request.locale, "model_set", model=model_id))

    async def persona(self, request: Request) -> Outcome:
        """Show the active session's system prompt and the presets, or set or reset it."""
        session = await self.store.active_session(request.user_id)
        if not request.args:
            return self._persona_menu(session, request)
        argument = request.args
        if session is not None:
            await self._require_deletable(session, request)
        if argument.lower() == RESET:
            if session is None:
                return Reply(text(request.locale, "no_session"))
            session = await self.store.update_session(
                session.id, owner=request.user_id, is_system_prompt_reset=True
            )
            return Reply(text(request.locale, "persona_reset", title=_title(session, request)))
        prompt = self._prompt_of(argument, request)
        if session is None:
            session = await self.store.create_session(
                request.user_id, default_model=self.chat.settings.default_model,
                creator=request.speaker.person, system_prompt=prompt,
            )  # fmt: skip
        else:
            session = await self.store.update_session(
                session.id, owner=request.user_id, system_prompt=prompt
            )
        label = self._persona_label(session, request)
        return Reply(
            text(request.locale, "persona_set", title=_title(session, request), label=label)
        )

    def _prompt_of(self, argument: str, request: Request) -> str:
        """A preset's prompt by its name, else the argument as instructions of their own; one
        word that names no preset is more likely a mistyped name than instructions."""
        preset = self.personas.get(argument)
        if preset is not None:
            return preset.prompt
        if len(argument.split()) == 1:
            names = ", ".join(persona.name for persona in self.personas)
            reason = text(request.locale, "persona_unknown", names=names)
            raise InvalidArgument(name="persona", reason=reason)
        return argument

    def _persona_menu(self, session: Session | None, request: Request) -> Reply:
        locale = request.locale
        choices = [
            Choice(f"{p.name} — {p.description}", f"/persona {p.name}") for p in self.personas
        ]
        if session is None:
            prompt = self.chat.settings.system_prompt
            return Reply(text(locale, "persona_none", prompt=prompt), tuple(choices))
        prompt = session.system_prompt or self.chat.settings.system_prompt
        label = self._persona_label(session, request) or text(locale, "persona_default")
        shown = text(
            locale, "persona_current", title=_title(session, request), label=label, prompt=prompt
        )
        if session.system_prompt is not None:
            choices.append(Choice(text(locale, "persona_reset_choice"), f"/persona {RESET}"))
        return Reply(shown, tuple(choices))

    def _persona_label(self, session: Session, request: Request) -> str | None:
        """The session's preset's name, "custom", or None when the global prompt applies."""
        if session.system_prompt is None:
            return None
        name = self.personas.name_of(session.system_prompt)
        return name or text(request.locale, "persona_custom")

    def _persona_note(self, session: Session, request: Request) -> str:
        label = self._persona_label(session, request)
        return text(request.locale, "session_persona", persona=label) if label else ""

    async def retry(self, request: Request) -> Outcome:
        speaker = request.speaker
        turn = self.chat.retry(
            user_id=speaker.space, front=front_of(speaker.person), speaker=speaker
        )
        return TurnReply(turn)

    async def stop(self, request: Request) -> Outcome:
        """End the answer being written in the active session (or the one named), wherever it
        is being written; what it showed stays, marked stopped."""
        if request.args:
            session_id = await self._resolve(request)
        else:
            active = await self.store.active_session(request.user_id)
            if active is None:
                return Reply(text(request.locale, "nothing_to_stop"))
            session_id = active.id
        stopped = await self.chat.stop_answer(session_id, owner=request.user_id)
        return Reply(text(request.locale, "stop_done" if stopped else "nothing_to_stop"))

    async def usage(self, request: Request) -> Outcome:
        """The speaker's own usage (a person's, across every space), never a shared chat's."""
        report = await self.store.usage(request.speaker.person)
        return Reply(usage_text(request.locale, report))

    async def _require_deletable(self, session: Session, request: Request) -> None:
        """In a shared space, only the session's creator or a chat admin may delete or rename
        it."""
        speaker = request.speaker
        if not speaker.is_shared or speaker.is_chat_admin:
            return
        if await self.store.session_creator(session) != speaker.person:
            raise NotSessionCreator()

    async def _resolve(self, request: Request) -> str:
        """A session id from `/cmd 2` (position in /sessions) or `/cmd <id>`."""
        argument = request.args.split()[0]
        if SESSION_ID_PATTERN.match(argument):
            return argument
        listing = await self.store.list_sessions(request.user_id)
        number = _bounded_int(argument, "number", default=0, high=max(len(listing.sessions), 1))
        if number > len(listing.sessions):
            raise SessionNotFound()
        return listing.sessions[number - 1].id


COMMANDS: dict[str, Handler] = {
    "start": CommandHandler.start,
    "help": CommandHandler.help,
    "new": CommandHandler.new,
    "sessions": CommandHandler.sessions,
    "switch": CommandHandler.switch,
    "history": CommandHandler.history,
    "export": CommandHandler.export,
    "delete": CommandHandler.delete,
    "rename": CommandHandler.rename,
    "model": CommandHandler.model,
    "persona": CommandHandler.persona,
    "retry": CommandHandler.retry,
    "stop": CommandHandler.stop,
    "usage": CommandHandler.usage,
}


def _preface(taken: TakenIn, locale: str, document_chars: int) -> str:
    """What to say before the answer: what was heard, which documents were cut."""
    lines = [text(locale, "heard", transcript=heard) for heard in taken.transcripts]
    lines += [
        text(locale, "document_cut", name=name, limit=f"{document_chars:,}")
        for name in taken.cut_documents
    ]
    return "\n".join(lines)


def parse_number(value: str) -> int | None:
    """A plain whole number as people type it (ASCII digits, at most 9), else None.

    Not `str.isdigit()`: it admits '²' and '①', and digit strings `int()` refuses to read.
    """
    return int(value) if PLAIN_NUMBER.fullmatch(value) else None


def _bounded_int(value: str, name: str, *, default: int, high: int) -> int:
    if not value:
        return default
    number = parse_number(value)
    if number is None or not 1 <= number <= high:
        raise InvalidArgument(name=name, reason=f"a whole number from 1 to {high}")
    return number


def _require_unicode(message: str) -> None:
    """Refuse text with lone surrogates: undecodable bytes a terminal passed through, which
    Redis could not store."""
    if not message.isascii():
        try:
            message.encode()
        except UnicodeEncodeError:
            raise InvalidArgument(name="message", reason="it is not valid UTF-8 text") from None


def _title(session: Session, request: Request) -> str:
    return session.title or text(request.locale, "untitled")


def _preview(message: Message, request: Request) -> str:
    speaker = text(request.locale, "you" if message.role is Role.USER else "assistant")
    content = _cut(message.content, HISTORY_PREVIEW_CHARS)
    mark = " " + text(request.locale, "answer_stopped") if message.stopped else ""
    return f"*{speaker}:* {content}{mark}"


def _summary_place(page: MessagePage, shown: int) -> int | None:
    """Where among the last `shown` messages of `page` the summary goes: before the first one
    it does not stand in for, when the list reaches back that far (None: it does not, or the
    session has no summary). `page` may hold one message more, before those shown."""
    if page.summary is None:
        return None
    covered = sum(1 for m in page.messages if seq_of_message(m) <= page.summary.up_to)
    place = covered - (len(page.messages) - shown)
    # Below 0: the message before those shown is not summarised either, so neither is the
    # first one shown, and the summary's place is further up.
    return place if place >= 0 else None


def _summary_preview(summary: SessionSummary, request: Request) -> str:
    shown = _cut(summary.text, HISTORY_SUMMARY_CHARS)
    if len(summary.text) > HISTORY_SUMMARY_CHARS:
        shown += " " + text(request.locale, "history_summary_cut")
    heading = summary_heading(request.locale, summary.up_to)
    return text(request.locale, "history_summary", heading=heading, summary=shown)


def _cut(content: str, limit: int) -> str:
    return content[:limit].rstrip() + "…" if len(content) > limit else content
