"""/export in the command layer and the Markdown it makes (core/sessions/export.py)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import pytest

from core.commands import CommandHandler, FileReply, Reply
from core.conversation import (
    Attachment,
    AttachmentKind,
    Message,
    NewAttachment,
    Role,
    Session,
    Usage,
)
from core.messages import ENGLISH, PORTUGUESE, text
from core.sessions.export import export_filename, session_markdown
from core.sessions.store import SessionStore

pytestmark = pytest.mark.all_redis_topologies

ANA = "cli:ana"
HEADING = "### {speaker} · "


async def export_of(commands: CommandHandler, user: str = ANA, locale: str = ENGLISH) -> FileReply:
    outcome = await commands.handle(user, "/export", locale=locale)
    assert isinstance(outcome, FileReply), outcome
    return outcome


async def test_export_is_the_active_session_as_markdown_with_every_message_and_speaker(
    commands: CommandHandler, store: SessionStore
) -> None:
    session = await store.create_session(ANA, title="Tides", default_model="test/model")
    await store.append_message(session.id, Role.SYSTEM, "Be brief.")
    await store.append_message(session.id, Role.USER, "How do tides work?", owner=ANA)
    await store.append_message(
        session.id, Role.ASSISTANT, "Mostly the **Moon**.", model="test/model",
        usage=Usage(prompt_tokens=200, completion_tokens=12),
    )  # fmt: skip

    exported = await export_of(commands)

    markdown = exported.content.decode()
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert exported.filename == f"chatbridge-tides-{today}.md"
    assert exported.media_type == "text/markdown"
    assert exported.caption == text(ENGLISH, "export_caption", title="Tides", count=3)
    blocks = markdown.split("\n\n")
    assert blocks[0] == "# Tides"
    assert blocks[1].startswith("Model `test/model` · started ")
    assert blocks[1].endswith(" · 3 messages")
    assert blocks[2] == "---"
    assert blocks[3].startswith(HEADING.format(speaker="System"))
    assert blocks[4] == "Be brief."
    assert blocks[5].startswith(HEADING.format(speaker="You"))
    assert blocks[6] == "How do tides work?"
    assert blocks[7].startswith(HEADING.format(speaker="Assistant"))
    assert blocks[7].endswith(" UTC · test/model · 212 tokens")
    assert blocks[8] == "Mostly the **Moon**.\n"


async def test_export_follows_the_users_language(
    commands: CommandHandler, store: SessionStore
) -> None:
    session = await store.create_session(ANA, default_model="test/model")
    await store.append_message(session.id, Role.USER, "Oi", owner=ANA)

    exported = await export_of(commands, locale="pt-BR")

    markdown = exported.content.decode()
    untitled = text(PORTUGUESE, "untitled")
    assert markdown.startswith(f"# {untitled}\n\nModelo `test/model` · iniciada em ")
    assert "### Você · " in markdown
    assert exported.caption == text(PORTUGUESE, "export_caption", title=untitled, count=1)
    assert exported.filename.startswith("chatbridge-conversation-")


async def test_an_empty_session_exports_its_header_and_says_it_has_no_messages(
    commands: CommandHandler, store: SessionStore
) -> None:
    await store.create_session(ANA, title="Empty", default_model="test/model")

    exported = await export_of(commands)

    markdown = exported.content.decode()
    assert markdown.startswith("# Empty\n\n")
    assert " · 0 messages\n\n---\n\n" in markdown
    assert markdown.endswith(f"_{text(ENGLISH, 'history_empty')}_\n")


async def test_without_a_session_export_says_so_and_sends_no_file(
    commands: CommandHandler,
) -> None:
    outcome = await commands.handle(ANA, "/export", locale=ENGLISH)

    assert outcome == Reply(text(ENGLISH, "no_session"))


async def test_export_never_shows_another_users_session(
    commands: CommandHandler, store: SessionStore
) -> None:
    bobs = await store.create_session("cli:bob", title="Bob's", default_model="test/model")
    await store.append_message(bobs.id, Role.USER, "bob's secret", owner="cli:bob")
    await store.create_session(ANA, title="Ana's", default_model="test/model")

    exported = await export_of(commands)

    assert b"bob's secret" not in exported.content
    assert exported.content.startswith(b"# Ana's\n")


def a_session(title: str) -> Session:
    moment = datetime(2026, 1, 31, 23, 59, tzinfo=UTC)
    return Session("a" * 32, ANA, title, "test/model", moment, moment, 0)


@pytest.mark.parametrize(
    ("title", "filename"),
    [
        ("Tides", "chatbridge-tides-2026-01-31.md"),
        ("Ação & Reação: física!", "chatbridge-acao-reacao-fisica-2026-01-31.md"),
        ("🌊🌊", "chatbridge-conversation-2026-01-31.md"),
        ('../../etc/passwd"; x', "chatbridge-etc-passwd-x-2026-01-31.md"),
        ("a" * 100, f"chatbridge-{'a' * 40}-2026-01-31.md"),
    ],
)
def test_the_file_name_is_a_short_ascii_slug_of_the_title_and_the_day(
    title: str, filename: str
) -> None:
    assert export_filename(a_session(title)) == filename


def test_a_code_block_left_open_is_closed_so_the_next_message_stays_outside_it() -> None:
    moment = datetime(2026, 1, 31, tzinfo=UTC)
    cut = Message("x-1", Role.ASSISTANT, "```python\nprint(1)", "m/x", moment)
    after = Message("x-2", Role.USER, "next", None, moment)

    markdown = session_markdown(a_session("T"), (cut, after), ENGLISH)

    assert "```python\nprint(1)\n```\n\n### You · " in markdown


# --- files ----------------------------------------------------------------------------------

MOMENT = datetime(2026, 1, 31, 12, 0, 3, tzinfo=UTC)
FILES = (
    Attachment("1-1", AttachmentKind.IMAGE, "image/jpeg", "tides.jpg", 182_456),
    Attachment("1-2", AttachmentKind.DOCUMENT, "application/pdf", "table_*v2*.pdf", 1_234_567,
               kept=False),
    Attachment("1-3", AttachmentKind.AUDIO, "audio/ogg", "voice\nnote.ogg", 999),
)  # fmt: skip


@pytest.mark.parametrize(
    ("locale", "listing"),
    [
        (ENGLISH, "Files:\n"
                  "- tides.jpg (image/jpeg, 182.4 kB)\n"
                  "- table\\_\\*v2\\*.pdf (application/pdf, 1.2 MB) (no longer kept)\n"
                  "- voice note.ogg (audio/ogg, 999 B)"),
        (PORTUGUESE, "Arquivos:\n"
                     "- tides.jpg (image/jpeg, 182,4 kB)\n"
                     "- table\\_\\*v2\\*.pdf (application/pdf, 1,2 MB) (não está mais guardado)\n"
                     "- voice note.ogg (audio/ogg, 999 B)"),
    ],
)  # fmt: skip
def test_a_messages_files_are_listed_by_name_under_it_in_the_users_language(
    locale: str, listing: str
) -> None:
    question = Message("x-1", Role.USER, "What do these say?", None, MOMENT, attachments=FILES)
    answer = Message("x-2", Role.ASSISTANT, "Tides.", "m/x", MOMENT)

    markdown = session_markdown(a_session("T"), (question, answer), locale)

    blocks = markdown.split("\n\n")
    assert blocks[4] == "What do these say?"
    assert blocks[5] == listing
    assert blocks[6].startswith("### ")


def test_a_message_of_files_without_a_word_lists_them_right_under_its_heading() -> None:
    question = Message("x-1", Role.USER, "", None, MOMENT, attachments=FILES[:1])

    markdown = session_markdown(a_session("T"), (question,), ENGLISH)

    assert markdown.endswith(
        "### You · 2026-01-31 12:00:03 UTC\n\nFiles:\n- tides.jpg (image/jpeg, 182.4 kB)\n"
    )


async def test_export_lists_the_files_stored_with_a_message(
    commands: CommandHandler, store: SessionStore
) -> None:
    picture = b"\xff\xd8" + b"x" * 1_998
    start = await store.begin_turn(
        ANA, "look", session_id=None, lock_token=secrets.token_hex(12), lock_ttl_ms=30_000,
        context_tokens=16_000, default_model="test/model",
        attachments=[NewAttachment(AttachmentKind.IMAGE, "image/jpeg", "sea.jpg", picture)],
    )  # fmt: skip
    await store.finish_turn(
        start, "The sea.", model="test/model", usage=None, is_retry=False, spent_tokens=0
    )

    exported = await export_of(commands)

    blocks = exported.content.decode().split("\n\n")
    assert blocks[4:6] == ["look", "Files:\n- sea.jpg (image/jpeg, 2 kB)"]
    assert blocks[6].startswith(HEADING.format(speaker="Assistant"))
