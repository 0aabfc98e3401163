"""Docs match code: every setting is in README's configuration table and in `.env.example`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
VARIABLES = sorted(name.upper() for name in Settings.model_fields)


@pytest.mark.parametrize("variable", VARIABLES)
def test_the_readme_configuration_table_has_every_setting(variable: str):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(rf"^\| `{variable}` \|", readme, re.MULTILINE)


@pytest.mark.parametrize("variable", VARIABLES)
def test_env_example_has_every_setting(variable: str):
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert re.search(rf"^(# )?{variable}=", example, re.MULTILINE)
