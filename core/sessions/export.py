"""A session as a Markdown document: `/export` on every front, GET /api/sessions/{id}/export.

    # Tides

    Model `openai/gpt-4o-mini` · started 2026-01-31 12:00 UTC · last activity … · 2 messages

    ---

    ### You · 2026-01-31 12:00:03 UTC

    How do tides work?

    Files:
    - tides.jpg (image/jpeg, 182.4 kB)
    - table.pdf (application/pdf, 1.2 MB) (no longer kept)

    ### Assistant · 2026-01-31 12:00:05 UTC · openai/gpt-4o-mini · 212 tokens

    Mostly the Moon's gravity …

A session whose older messages a summary stands in for (core/summaries.py) has it as a section
of its own, "### 📝 Summary of messages 1 to 57", before the first message it does not stand in
for: the messages it covers that are still stored come before it, as they were written.

Labels follow the user's language; messages are written as they were sent (they are Markdown
already, as models write it); a message's files are listed by name under it (their bytes stay
in Redis, and go away with the session or its file budget). The file name is ASCII, safe in
any header or file system.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime

from core.conversation import Attachment, Message, Role, Session, SessionSummary
from core.messages import file_size, summary_heading, text
from core.sessions.codec import seq_of_message
from core.sessions.store import SessionStore

MEDIA_TYPE = "text/markdown"
SLUG_MAX_CHARS = 40
SPEAKER_KEYS = {Role.USER: "you", Role.ASSISTANT: "assistant", Role.SYSTEM: "system"}
# What Markdown would read as formatting in a file's name (a name is the user's, not Markdown).
MARKDOWN_IN_NAMES = re.compile(r"([\\`*_\[\]<>])")


@dataclass(frozen=True, slots=True)
class ExportedSession:
    session: Session
    filename: str
    markdown: str
    message_count: int


async def export_session(
    store: SessionStore,
    session: Session,
    *,
    owner: str | None,
    locale: str,
    persona: str | None = None,
) -> ExportedSession:
    """The session with every message it holds (at most MAX_MESSAGES_PER_SESSION);
    `persona`: its persona's name (a preset's, or "custom"), shown under the details."""
    page = await store.read_messages(
        session.id, owner=owner, limit=store.limits.max_messages_per_session
    )
    markdown = session_markdown(
        session, page.messages, locale, persona=persona, summary=page.summary
    )
    return ExportedSession(
        session=session,
        filename=export_filename(session),
        markdown=markdown,
        message_count=len(page.messages),
    )


def session_markdown(
    session: Session,
    messages: tuple[Message, ...],
    locale: str,
    *,
    persona: str | None = None,
    summary: SessionSummary | None = None,
) -> str:
    """`summary`: the session's, placed before the first message it does not stand in for."""
    details = text(
        locale,
        "export_details",
        model=session.model,
        created=_moment(session.created_at, seconds=False),
        updated=_moment(session.updated_at, seconds=False),
        count=len(messages),
    )
    if persona is not None:
        details += "  \n" + text(locale, "export_persona", persona=persona)
    parts = [f"# {session.title or text(locale, 'untitled')}", details, "---"]
    written = [_message(message, locale) for message in messages]
    if summary is not None:
        place = sum(1 for message in messages if seq_of_message(message) <= summary.up_to)
        written.insert(place, _summary(summary, locale))
    parts += written
    if not messages:
        parts.append(f"_{text(locale, 'history_empty')}_")
    return "\n\n".join(parts) + "\n"


def export_filename(session: Session) -> str:
    """`chatbridge-tides-2026-01-31.md`: the title in ASCII, then the day of the last activity."""
    folded = unicodedata.normalize("NFKD", session.title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")[:SLUG_MAX_CHARS].strip("-")
    day = session.updated_at.astimezone(UTC).strftime("%Y-%m-%d")
    return f"chatbridge-{slug or 'conversation'}-{day}.md"


def _message(message: Message, locale: str) -> str:
    heading = f"### {text(locale, SPEAKER_KEYS[message.role])} · {_moment(message.timestamp)}"
    if message.role is Role.ASSISTANT and message.model:
        tokens = message.usage.total_tokens if message.usage else "?"
        heading += " · " + text(locale, "reply_footer", model=message.model, tokens=tokens)
    if message.stopped:
        heading += " · " + text(locale, "answer_stopped")
    parts = [heading]
    if message.content or not message.attachments:  # a message may be files without a word
        parts.append(_closed(message.content))
    if message.attachments:
        parts.append(_files(message.attachments, locale))
    return "\n\n".join(parts)


def _summary(summary: SessionSummary, locale: str) -> str:
    heading = f"### 📝 {summary_heading(locale, summary.up_to)}"
    note = f"_{text(locale, 'export_summary_note')}_"
    return "\n\n".join([heading, note, _closed(summary.text)])


def _files(files: tuple[Attachment, ...], locale: str) -> str:
    """The message's files, one list item each, by name."""
    listed = [text(locale, "export_files")]
    for file in files:
        name = MARKDOWN_IN_NAMES.sub(r"\\\1", " ".join(file.name.splitlines()))
        size = file_size(locale, file.size)
        item = text(locale, "export_file", name=name, media_type=file.media_type, size=size)
        listed.append(item if file.kept else f"{item} {text(locale, 'export_file_gone')}")
    return "\n".join(listed)


def _closed(content: str) -> str:
    """A code block left open (a cut answer) would swallow the messages after it: close it."""
    fences = [line for line in content.splitlines() if line.lstrip().startswith("```")]
    return content + "\n```" if len(fences) % 2 else content


def _moment(moment: datetime, *, seconds: bool = True) -> str:
    shown = "%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC"
    return moment.astimezone(UTC).strftime(shown)
