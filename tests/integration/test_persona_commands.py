"""/persona through the command layer every front uses, on a real Redis: the menu, presets,
instructions of one's own, reset, the limit, shared chats, and /sessions and /export."""

from __future__ import annotations

import pytest

from core.commands import CommandHandler, FileReply, Reply
from core.personas import BUILT_IN, Persona, PersonaCatalog
from core.sessions.limits import MAX_SYSTEM_PROMPT_LENGTH
from core.spaces import GroupSessions, Speaker, chat_of, group_speaker

ANA = "telegram:1"
BOB = "telegram:2"
GROUP = chat_of("telegram", -1001)
GLOBAL_PROMPT = "Be brief."


async def say(commands: CommandHandler, speaker: Speaker | str, message: str, **kw: str) -> Reply:
    outcome = await commands.handle(speaker, message, **kw)  # type: ignore[arg-type]
    assert isinstance(outcome, Reply), outcome
    return outcome


def shared(person: str, *, admin: bool = False) -> Speaker:
    return group_speaker(person, GROUP, GroupSessions.SHARED, author=person, is_chat_admin=admin)


async def prompt_of(commands: CommandHandler, space: str) -> str | None:
    session = await commands.store.active_session(space)
    assert session is not None
    return session.system_prompt


async def test_the_menu_shows_the_prompt_in_use_and_one_choice_per_preset(
    commands: CommandHandler,
) -> None:
    await say(commands, ANA, "/new Tides")
    menu = await say(commands, ANA, "/persona")
    assert menu.text.startswith(f"*Tides* answers as the default:\n\n{GLOBAL_PROMPT}\n\n")
    assert [(c.label, c.command) for c in menu.choices] == [
        (f"{p.name} — {p.description}", f"/persona {p.name}") for p in BUILT_IN
    ]
    await say(commands, ANA, "/persona coder")
    menu = await say(commands, ANA, "/persona")
    assert menu.text.startswith(f"*Tides* answers as coder:\n\n{BUILT_IN[2].prompt}")
    assert menu.choices[-1].command == "/persona reset"


async def test_a_preset_instructions_and_reset_set_the_active_sessions_prompt(
    commands: CommandHandler,
) -> None:
    await say(commands, ANA, "/new Tides")
    assert (await say(commands, ANA, "/persona TUTOR")).text == "*Tides* now answers as tutor."
    assert await prompt_of(commands, ANA) == BUILT_IN[1].prompt
    own = await say(commands, ANA, "/persona Speak like a sailor.")
    assert own.text == "*Tides* now answers as custom."
    assert await prompt_of(commands, ANA) == "Speak like a sailor."
    reset = await say(commands, ANA, "/persona reset")
    assert reset.text == "*Tides* is back to the default persona."
    assert await prompt_of(commands, ANA) is None


async def test_a_persona_without_a_session_starts_one_with_it(commands: CommandHandler) -> None:
    await say(commands, ANA, "/persona concise")
    assert await prompt_of(commands, ANA) == BUILT_IN[0].prompt


async def test_one_word_that_names_no_preset_is_refused_with_the_names(
    commands: CommandHandler,
) -> None:
    refused = await say(commands, ANA, "/persona pirat")
    assert refused.is_error
    assert "concise, tutor, coder" in refused.text
    assert await commands.store.active_session(ANA) is None


@pytest.mark.parametrize(
    ("length", "is_kept"),
    [(MAX_SYSTEM_PROMPT_LENGTH - 1, True), (MAX_SYSTEM_PROMPT_LENGTH, True),
     (MAX_SYSTEM_PROMPT_LENGTH + 1, False)],
)  # fmt: skip
async def test_instructions_are_held_to_the_limit(
    commands: CommandHandler, length: int, is_kept: bool
) -> None:
    await say(commands, ANA, "/new Tides")
    prompt = ("ab " * length)[: length - 1] + "."  # words, and no space the parser trims
    assert len(prompt) == length
    reply = await say(commands, ANA, f"/persona {prompt}")
    assert reply.is_error is not is_kept
    assert await prompt_of(commands, ANA) == (prompt if is_kept else None)
    if not is_kept:
        assert reply.text == (
            f"That persona has {length} characters; the limit is {MAX_SYSTEM_PROMPT_LENGTH}. "
            "Please shorten it."
        )


async def test_in_a_shared_chat_only_the_creator_or_an_admin_sets_the_persona(
    commands: CommandHandler,
) -> None:
    await say(commands, shared(ANA), "/new Plan")
    refused = await say(commands, shared(BOB), "/persona coder")
    assert refused.is_error
    assert "started this conversation" in refused.text
    assert await prompt_of(commands, GROUP) is None
    assert not (await say(commands, shared(BOB), "/persona")).is_error  # looking is fine
    assert not (await say(commands, shared(BOB, admin=True), "/persona coder")).is_error
    assert not (await say(commands, shared(ANA), "/persona reset")).is_error


async def test_sessions_and_export_name_each_sessions_persona(commands: CommandHandler) -> None:
    await say(commands, ANA, "/new Plain")
    await say(commands, ANA, "/new Coded")
    await say(commands, ANA, "/persona coder")
    await say(commands, ANA, "/new Own")
    await say(commands, ANA, "/persona Speak like a sailor.")
    listing = await say(commands, ANA, "/sessions")
    assert [line.split(" · ", 3)[3:] for line in listing.text.splitlines()[1:]] == [
        ["🎭 custom"],
        ["🎭 coder"],
        [],
    ]
    exported = await commands.handle(ANA, "/export", locale="pt-BR")
    assert isinstance(exported, FileReply)
    assert "Persona: personalizada" in exported.content.decode()


async def test_presets_come_from_the_catalog_the_handler_is_given(
    commands: CommandHandler,
) -> None:
    pirate = Persona("pirate", "Arr", "You are a pirate.")
    own = CommandHandler(commands.chat, personas=PersonaCatalog((pirate,)))
    menu = await say(own, ANA, "/persona")
    assert [c.command for c in menu.choices] == ["/persona pirate"]
    await say(own, ANA, "/persona pirate")
    assert await prompt_of(own, ANA) == "You are a pirate."
