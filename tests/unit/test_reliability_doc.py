"""docs/reliability.md names its proofs as `tests/...py::test_name`: each of them must exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")
REFERENCES = sorted(set(REFERENCE.findall(DOC.read_text(encoding="utf-8"))))


def test_the_reliability_doc_names_its_proofs():
    assert len(REFERENCES) >= 20


@pytest.mark.parametrize(("path", "name"), REFERENCES, ids=[f"{p}::{n}" for p, n in REFERENCES])
def test_every_test_the_reliability_doc_names_exists(path: str, name: str):
    source = (ROOT / path).read_text(encoding="utf-8")
    assert re.search(rf"^(async )?def {name}\(", source, re.MULTILINE), f"{path}::{name}"
