"""PERSONAS_FILE (core/personas.py): presets read from TOML, and every way a file is refused
with the line to look at."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.personas import (
    BUILT_IN,
    MAX_DESCRIPTION_CHARS,
    MAX_PRESETS,
    Persona,
    load_personas,
)
from core.sessions.limits import MAX_SYSTEM_PROMPT_LENGTH


def written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "personas.toml"
    path.write_text(text, encoding="utf-8")
    return path


def preset(name: str, description: str = "About it", prompt: str = "Be it.") -> str:
    return f'[{name}]\ndescription = "{description}"\nprompt = "{prompt}"\n'


def test_without_a_file_the_built_in_presets_apply() -> None:
    assert tuple(load_personas(None)) == BUILT_IN
    assert [p.name for p in BUILT_IN] == ["concise", "tutor", "coder"]


def test_presets_are_read_in_the_order_written(tmp_path: Path) -> None:
    path = written(tmp_path, preset("pirate", "Arr", "You are a pirate.") + "\n" + preset("owl"))
    catalog = load_personas(path)
    assert list(catalog) == [Persona("pirate", "Arr", "You are a pirate."),
                             Persona("owl", "About it", "Be it.")]  # fmt: skip
    assert catalog.name_of("You are a pirate.") == "pirate"
    assert catalog.name_of("Something else.") is None
    assert catalog.get("PIRATE") == catalog.get("pirate")


def test_a_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = written(tmp_path, preset("pirate") + "[owl\nprompt = 1\n")
    with pytest.raises(ConfigError, match=r"^PERSONAS_FILE: .*line 4"):
        load_personas(path)


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('description = "x"\n', "exactly the keys"),
        ('description = "x"\nprompt = "y"\nextra = 1\n', "exactly the keys"),
        ('description = ""\nprompt = "y"\n', "description"),
        ('description = "x"\nprompt = "   "\n', "prompt"),
        ('description = "x"\nprompt = 3\n', "prompt"),
    ],
)
def test_a_preset_missing_or_wrong_is_refused_naming_its_line(
    tmp_path: Path, table: str, problem: str
) -> None:
    path = written(tmp_path, preset("first") + "\n[second]\n" + table)
    with pytest.raises(ConfigError) as refused:
        load_personas(path)
    assert "line 5: [second]" in str(refused.value)
    assert problem in str(refused.value)


@pytest.mark.parametrize("name", ["Pirate", "reset", "two words", "x" * 33])
def test_a_name_that_cannot_be_typed_after_persona_is_refused(tmp_path: Path, name: str) -> None:
    path = written(tmp_path, preset(f'"{name}"'))
    with pytest.raises(ConfigError, match="line 1"):
        load_personas(path)


@pytest.mark.parametrize(
    ("count", "is_kept"), [(MAX_PRESETS - 1, True), (MAX_PRESETS, True), (MAX_PRESETS + 1, False)]
)
def test_at_most_25_presets_fit_a_menu(tmp_path: Path, count: int, is_kept: bool) -> None:
    path = written(tmp_path, "".join(preset(f"p{n}") for n in range(count)))
    if is_kept:
        assert len(list(load_personas(path))) == count
    else:
        with pytest.raises(ConfigError, match="at most 25"):
            load_personas(path)


@pytest.mark.parametrize(
    ("length", "is_kept"),
    [(MAX_DESCRIPTION_CHARS - 1, True), (MAX_DESCRIPTION_CHARS, True),
     (MAX_DESCRIPTION_CHARS + 1, False)],
)  # fmt: skip
def test_a_description_holds_at_most_100_characters(
    tmp_path: Path, length: int, is_kept: bool
) -> None:
    path = written(tmp_path, preset("owl", "d" * length))
    if is_kept:
        assert next(iter(load_personas(path))).description == "d" * length
    else:
        with pytest.raises(ConfigError, match="description"):
            load_personas(path)


@pytest.mark.parametrize(
    ("length", "is_kept"),
    [(MAX_SYSTEM_PROMPT_LENGTH - 1, True), (MAX_SYSTEM_PROMPT_LENGTH, True),
     (MAX_SYSTEM_PROMPT_LENGTH + 1, False)],
)  # fmt: skip
def test_a_prompt_holds_at_most_4000_characters(tmp_path: Path, length: int, is_kept: bool) -> None:
    path = written(tmp_path, preset("owl", prompt="p" * length))
    if is_kept:
        assert next(iter(load_personas(path))).prompt == "p" * length
    else:
        with pytest.raises(ConfigError, match="4001 characters; the limit is 4000"):
            load_personas(path)


def test_an_empty_or_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="defines no persona"):
        load_personas(written(tmp_path, "# nothing yet\n"))
    with pytest.raises(ConfigError, match="cannot be read"):
        load_personas(tmp_path / "absent.toml")
