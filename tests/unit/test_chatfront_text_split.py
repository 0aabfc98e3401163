"""Splitting long replies at the platform limit without breaking paragraphs or code blocks."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bots.chatfront.text_split import (
    close_open_code_block,
    ends_inside_code_block,
    find_code_blocks,
    opening_fence,
    split_message,
)


def fence_lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.lstrip().startswith("```")]


def content(text: str) -> str:
    """The characters that matter: no fence lines, no whitespace (cuts drop it at the edges)."""
    kept = [line for line in text.split("\n") if not line.lstrip().startswith("```")]
    return re.sub(r"\s", "", "".join(kept))


def code_block(language: str, lines: list[str]) -> str:
    return "\n".join([f"```{language}", *lines, "```"])


# Limits


@pytest.mark.parametrize("text", ["", " ", "\n\n \n\t"])
def test_a_blank_text_gives_no_parts(text: str):
    assert split_message(text, 10) == []


def test_a_text_exactly_at_the_limit_is_one_part_unchanged():
    text = "ab cd\n\nef"
    assert split_message(text, len(text)) == [text]


def test_a_text_below_the_limit_is_returned_as_it_is_even_with_blank_edges():
    assert split_message("\nhi there\n\n", 20) == ["\nhi there\n\n"]


def test_a_text_one_character_over_the_limit_makes_two_parts():
    assert split_message("ab cd ef", 7) == ["ab cd", "ef"]


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="positive"):
        split_message("text", 0)


# Where the cut falls


def test_a_paragraph_boundary_is_preferred_to_a_later_line_break():
    assert split_message("aaaa\n\nbbbb\ncccc", 14) == ["aaaa", "bbbb\ncccc"]


def test_a_line_break_is_preferred_to_a_later_space():
    assert split_message("aaaa bbbb\ncccc dddd", 17) == ["aaaa bbbb", "cccc dddd"]


def test_a_space_is_preferred_to_a_hard_cut():
    assert split_message("aaaa bbbb cccc", 12) == ["aaaa bbbb", "cccc"]


def test_a_word_longer_than_the_limit_is_cut_hard():
    assert split_message("abcdefghij" * 3, 10) == ["abcdefghij"] * 3


def test_among_cuts_of_one_kind_the_latest_fills_the_part():
    assert split_message("a b c d e f", 5) == ["a b c", "d e f"]


def test_whitespace_just_past_the_limit_is_a_valid_cut():
    assert split_message("abcde fgh", 5) == ["abcde", "fgh"]


def test_parts_never_start_or_end_with_blank_lines():
    text = "\n\n".join(f"paragraph {n}\n\n\n  \n" for n in range(10))
    parts = split_message(text, 30)
    assert len(parts) > 1
    for part in parts:
        lines = part.split("\n")
        assert lines[0].strip()
        assert lines[-1].strip()


# Code blocks


def test_a_code_block_that_fits_moves_whole_to_the_next_part():
    block = code_block("py", ["x = 1", "y = 2"])
    parts = split_message(f"intro line\n\n{block}\n\nend", 25)
    assert parts == ["intro line", block, "end"]


def test_a_code_block_that_fits_is_not_cut_even_when_a_line_inside_would_fill_the_part():
    block = code_block("", ["one", "two", "three"])
    parts = split_message(f"intro\n{block}", len(block) + 3)
    assert parts == ["intro", block]


def test_a_code_block_longer_than_the_limit_is_refenced_with_its_language_in_every_part():
    lines = [f"value_{n} = {n}" for n in range(30)]
    parts = split_message(code_block("python", lines), 80)
    assert len(parts) > 2
    for part in parts:
        assert len(part) <= 80
        assert part.startswith("```python\n")
        assert part.endswith("\n```")
    assert [line for part in parts for line in part.split("\n")[1:-1]] == lines


def test_refencing_keeps_every_code_line_blank_ones_included():
    lines = ["def a():", "    return 1", "", "", "def b():", "    return 2", "", "x = a() + b()"]
    parts = split_message(code_block("py", lines), 30)
    assert len(parts) > 1
    assert [line for part in parts for line in part.split("\n")[1:-1]] == lines


def test_a_code_line_longer_than_the_limit_is_cut_and_refenced():
    parts = split_message(code_block("sh", ["echo " + "x" * 100]), 40)
    assert all(len(part) <= 40 for part in parts)
    assert all(len(fence_lines(part)) == 2 for part in parts)
    assert content("\n".join(parts)) == "echo" + "x" * 100


def test_a_part_never_ends_inside_a_code_block():
    text = "\n\n".join(
        ["Here is the plan.", code_block("js", [f"step({n});" for n in range(12)]), "Done."] * 3
    )
    parts = split_message(text, 60)
    for part in parts:
        assert len(part) <= 60
        assert len(fence_lines(part)) % 2 == 0, part
    assert content("\n".join(parts)) == content(text)


def test_an_unclosed_block_at_the_end_is_closed_in_every_part_but_the_last():
    text = "Writing:\n\n```python\n" + "\n".join(f"print({n})" for n in range(20))
    parts = split_message(text, 50)
    assert all(len(fence_lines(part)) % 2 == 0 for part in parts[:-1])
    assert parts[-1].startswith("```python\n")
    assert ends_inside_code_block(parts[-1])


def test_an_indented_block_is_closed_and_reopened_with_its_indentation():
    lines = [f"   line {n}" for n in range(10)]
    text = "1. Step one:\n\n   ```bash\n" + "\n".join(lines) + "\n   ```"
    parts = split_message(text, 45)
    assert all(part.startswith("   ```bash") and part.endswith("\n   ```") for part in parts[1:])


def test_a_cut_inside_a_line_never_leaves_backticks_opening_a_block_in_the_next_part():
    parts = split_message("Wrap your code in ```python fences please", 20)
    assert parts == ["Wrap your code", "in ```python fences", "please"]
    assert not any(ends_inside_code_block(part) for part in parts)


def test_a_hard_cut_never_turns_inline_backticks_into_a_fence():
    text = "word ```" + "x" * 50 + "```"
    parts = split_message(text, 20)
    assert all(len(part) <= 20 for part in parts)
    assert not any(ends_inside_code_block(part) for part in parts)
    assert "".join(parts).replace(" ", "") == text.replace(" ", "")


def test_a_block_whose_lines_all_read_as_fences_when_cut_still_terminates():
    parts = split_message("```\n```py``````", 9)
    assert all(0 < len(part) <= 9 for part in parts)


# Unicode


def test_emoji_count_as_one_character_each():
    assert split_message("😀" * 10, 4) == ["😀😀😀😀", "😀😀😀😀", "😀😀"]


def test_portuguese_accents_count_as_one_character_each():
    assert split_message("ação ação ação", 9) == ["ação ação", "ação"]


# Fences


@pytest.mark.parametrize(
    ("line", "is_fence"),
    [("```", True), ("```python", True), ("  ```js", True), ("~~~", False), ("``", False),
     ("```ls```", False), ("run ```ls```", False)],
)  # fmt: skip
def test_only_a_line_of_backticks_and_a_plain_info_string_opens_a_block(line: str, is_fence: bool):
    assert (opening_fence(line) is not None) is is_fence


def test_a_longer_fence_is_closed_only_by_as_many_backticks():
    text = "````md\n```py\nx\n```\n````"
    [block] = find_code_blocks(text)
    assert block.is_closed
    assert block.end == len(text)


@pytest.mark.parametrize(
    ("text", "inside"),
    [("", False), ("plain", False), ("```py\nx", True), ("```py\nx\n```", False),
     ("```py\nx\n```\n\n```", True), ("  ```\nindented", True), ("````\n```", True),
     ("inline ```x``` code", False)],
)  # fmt: skip
def test_ends_inside_code_block(text: str, inside: bool):
    assert ends_inside_code_block(text) is inside


@pytest.mark.parametrize(
    ("text", "closed"),
    [("```py\nx", "```py\nx\n```"), ("```py\nx\n", "```py\nx\n```"),
     ("  ```\nx", "  ```\nx\n  ```"), ("````\nx", "````\nx\n````"),
     ("```py\nx\n```", "```py\nx\n```"), ("no code", "no code")],
)  # fmt: skip
def test_close_open_code_block_adds_the_matching_fence_only_when_needed(text: str, closed: str):
    assert close_open_code_block(text) == closed


# Property: any text, any limit


WORD = st.text(alphabet="abcxyzçãé😀.,", min_size=1, max_size=40)
PARAGRAPH = st.lists(
    st.lists(WORD, min_size=1, max_size=8).map(" ".join), min_size=1, max_size=4
).map("\n".join)
CODE_LINE = st.text(alphabet="abc =()[]😀ã", max_size=50)
LANGUAGE = st.sampled_from(["", "python", "js"])
CODE = st.builds(code_block, LANGUAGE, st.lists(CODE_LINE, max_size=12))
SEPARATOR = st.sampled_from(["\n", "\n\n", "\n\n\n"])


@st.composite
def markdown_with_fences(draw: st.DrawFn) -> str:
    blocks = draw(st.lists(st.one_of(PARAGRAPH, CODE), min_size=1, max_size=6))
    text = "".join(block + draw(SEPARATOR) for block in blocks)
    if draw(st.booleans()):  # a streamed answer stopped inside a block
        text += f"```{draw(LANGUAGE)}\n" + "\n".join(draw(st.lists(CODE_LINE, max_size=6)))
    return text


@settings(max_examples=250, deadline=None)
@given(text=markdown_with_fences(), limit=st.integers(min_value=30, max_value=200))
def test_every_part_fits_is_not_blank_keeps_fences_balanced_and_loses_nothing(
    text: str, limit: int
):
    parts = split_message(text, limit)
    assert parts
    for part in parts:
        assert len(part) <= limit
        assert part.strip()
    ends_open = ends_inside_code_block(text)
    for part in parts[:-1] if ends_open else parts:
        assert len(fence_lines(part)) % 2 == 0, part
    assert ends_inside_code_block(parts[-1]) is ends_open
    assert content("\n".join(parts)) == content(text)
