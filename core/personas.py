"""Persona presets: named system prompts a person picks with `/persona <name>`.

They come from PERSONAS_FILE, a TOML file with one table per preset:

    [pirate]
    description = "Answers like a pirate"
    prompt = "You are a pirate. Answer in pirate speak."

Without PERSONAS_FILE the built-in presets below apply. A file that cannot be read or used
raises ConfigError naming the file and the line, so the service stops with exit code 2 before
serving anything.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError
from core.sessions.limits import MAX_SYSTEM_PROMPT_LENGTH

# A name is typed after /persona and sits in a Telegram button's 64-byte callback data, so it
# is one short lowercase word: anything else typed after /persona is a prompt of its own.
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
RESET = "reset"  # `/persona reset`: not a preset's name
MAX_DESCRIPTION_CHARS = 100  # a Discord menu option's description holds at most 100
MAX_PRESETS = 25  # a Discord menu holds at most 25 options


@dataclass(frozen=True, slots=True)
class Persona:
    name: str
    description: str
    prompt: str


BUILT_IN: tuple[Persona, ...] = (
    Persona(
        "concise",
        "Short, direct answers",
        "You are a helpful assistant. Answer as briefly as the question allows.",
    ),
    Persona(
        "tutor",
        "Explains step by step",
        "You are a patient tutor. Explain step by step, check understanding, and give a "
        "small example for every new idea.",
    ),
    Persona(
        "coder",
        "A senior software engineer",
        "You are a senior software engineer. Answer with working code first, then a short "
        "explanation of the choices that matter.",
    ),
)


class PersonaCatalog:
    """The presets, by name, in the order they were written."""

    def __init__(self, personas: tuple[Persona, ...] = BUILT_IN) -> None:
        self._by_name = {persona.name: persona for persona in personas}

    def __iter__(self) -> Iterator[Persona]:
        return iter(self._by_name.values())

    def get(self, name: str) -> Persona | None:
        return self._by_name.get(name.lower())

    def name_of(self, prompt: str | None) -> str | None:
        """The preset whose prompt this is, else None (a custom prompt, or none)."""
        return next((p.name for p in self if p.prompt == prompt), None)


def load_personas(path: Path | None) -> PersonaCatalog:
    """The presets of PERSONAS_FILE, or the built-in ones when it is not set."""
    if path is None:
        return PersonaCatalog()
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"PERSONAS_FILE: {path}: cannot be read ({error})") from None
    try:
        tables = tomllib.loads(source)
    except tomllib.TOMLDecodeError as error:
        # Its message ends with "(at line N, column M)".
        raise ConfigError(f"PERSONAS_FILE: {path}: {error}") from None
    if not tables:
        raise ConfigError(f"PERSONAS_FILE: {path}: defines no persona")
    if len(tables) > MAX_PRESETS:
        raise ConfigError(
            f"PERSONAS_FILE: {path}: {len(tables)} personas; at most {MAX_PRESETS} fit a menu"
        )
    personas = []
    for name, table in tables.items():
        problem = _problem(name, table)
        if problem:
            where = f"line {_line_of(source, name)}"
            raise ConfigError(f"PERSONAS_FILE: {path}: {where}: [{name}]: {problem}")
        personas.append(Persona(name, table["description"], table["prompt"]))
    return PersonaCatalog(tuple(personas))


def _problem(name: str, table: object) -> str | None:
    """What is wrong with one preset, or None."""
    if not NAME_PATTERN.fullmatch(name) or name == RESET:
        return "a name is one lowercase word of at most 32 letters, digits, - or _ (not reset)"
    return _table_problem(table)


def _table_problem(table: object) -> str | None:
    if not isinstance(table, Mapping):
        return "expected a table with description and prompt"
    if set(table) != {"description", "prompt"}:
        return "expected exactly the keys description and prompt"
    description, prompt = table["description"], table["prompt"]
    if not isinstance(description, str) or not 1 <= len(description) <= MAX_DESCRIPTION_CHARS:
        return f"description: text of 1 to {MAX_DESCRIPTION_CHARS} characters"
    if not isinstance(prompt, str) or not prompt.strip():
        return "prompt: text that is not empty"
    if len(prompt) > MAX_SYSTEM_PROMPT_LENGTH:
        return f"prompt: {len(prompt)} characters; the limit is {MAX_SYSTEM_PROMPT_LENGTH}"
    return None


def _line_of(source: str, name: str) -> int:
    """The line of a preset's `[name]` header (1 when it is not written as one)."""
    header = re.compile(rf"""^\s*\[\s*(["']?){re.escape(name)}\1\s*\]""")
    for number, line in enumerate(source.splitlines(), start=1):
        if header.match(line):
            return number
    return 1
