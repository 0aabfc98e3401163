"""Split a long reply into messages that fit a chat platform's length limit (Telegram, Discord).

A cut falls, in order of preference, at a paragraph boundary (a blank line, or the edge of a
fenced code block), at a line break, at a space, and only then anywhere; among cuts of the same
kind the latest one wins, so parts are as full as they can be. A fenced code block is never cut
when it fits in one part: the cut goes before it. When the block alone is longer than the limit,
it is cut inside, the part closed with a fence and the next part reopened with the block's own
opening line (language included), both fence lines counted within the limit, so every part
renders as code on its own. A cut inside a line never leaves either half reading as a fence line
("... in ```python blocks"), which would turn the next part into code. Lengths are Python's
`len` (code points).

The splitter works on Markdown source: rendering only removes characters (markers, fences), so a
part that fits as Markdown also fits once rendered.

Fences follow CommonMark where it matters for model output: an opening line is three or more
backticks and an info string without backticks (so "```x```" on one line is inline code), and
only a line of at least as many backticks closes it. Any indentation is accepted, because models
indent code blocks inside list items.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_OPENING_FENCE = re.compile(r"([ \t]*)(`{3,})([^`]*)")
_CLOSING_FENCE = re.compile(r"[ \t]*(`{3,})\s*")
_BREAK = re.compile(r"[ \t\n]")
_LEADING_BLANK_LINES = re.compile(r"(?:[ \t]*\n)+")

# Kinds of cut, from worst to best, compared as numbers; a hard cut is the fallback when none fits.
_SPACE, _LINE, _PARAGRAPH = range(3)


@dataclass(frozen=True)
class Fence:
    """The opening line of a fenced code block."""

    line: str
    indent: str
    ticks: int
    info: str

    @property
    def closing(self) -> str:
        return self.indent + "`" * self.ticks

    def is_closed_by(self, line: str) -> bool:
        match = _CLOSING_FENCE.fullmatch(line)
        return match is not None and len(match[1]) >= self.ticks


def opening_fence(line: str) -> Fence | None:
    """The fence a line (without its newline) opens, if it is an opening fence line."""
    match = _OPENING_FENCE.fullmatch(line)
    if match is None:
        return None
    return Fence(line=line, indent=match[1], ticks=len(match[2]), info=match[3].strip())


@dataclass(frozen=True)
class CodeBlock:
    """Where a fenced block sits in a text, as offsets."""

    fence: Fence
    start: int  # the opening line
    content_start: int  # just after the opening line's newline
    close_start: int  # the closing line; len(text) when unclosed
    end: int  # just after the closing line's text; len(text) when unclosed
    is_closed: bool


def find_code_blocks(text: str, stop: int | None = None) -> list[CodeBlock]:
    """The fenced blocks of a text; with `stop`, only those opening before that offset."""
    blocks: list[CodeBlock] = []
    opened: tuple[Fence, int, int] | None = None
    for offset, line in _lines(text):
        line_end = offset + len(line)
        if opened is None:
            if stop is not None and offset > stop:
                break
            fence = opening_fence(line)
            if fence is not None:
                opened = (fence, offset, min(line_end + 1, len(text)))
        elif opened[0].is_closed_by(line):
            blocks.append(CodeBlock(*opened, close_start=offset, end=line_end, is_closed=True))
            opened = None
    if opened is not None:
        blocks.append(CodeBlock(*opened, close_start=len(text), end=len(text), is_closed=False))
    return blocks


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """Each line and its offset, lazily (a cut looks at one window of a long text).

    Only a newline ends a line: str.splitlines() also breaks at a vertical tab, U+2028 and more.
    """
    offset = 0
    while offset <= len(text):
        line_end = text.find("\n", offset)
        line_end = len(text) if line_end < 0 else line_end
        yield offset, text[offset:line_end]
        offset = line_end + 1


def ends_inside_code_block(text: str) -> bool:
    blocks = find_code_blocks(text)
    return bool(blocks) and not blocks[-1].is_closed


def close_open_code_block(text: str) -> str:
    """The text with a closing fence added when it stops inside a block (a streaming preview)."""
    blocks = find_code_blocks(text)
    if not blocks or blocks[-1].is_closed:
        return text
    separator = "" if text.endswith("\n") else "\n"
    return text + separator + blocks[-1].fence.closing


def split_message(text: str, limit: int) -> list[str]:
    """Parts of at most `limit` characters that together keep all of the text's content.

    A text within the limit comes back unchanged; a blank one gives no parts, since no platform
    accepts a blank message. Parts drop the blank lines and spaces at their edges, never the
    characters inside a code block.
    """
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    if not text.strip():
        return []
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    rest = _drop_leading_blank_lines(text)
    while len(rest.rstrip()) > limit:
        part, rest = _cut(rest, limit)
        if part.strip():  # only a run of spaces longer than the limit gives a blank part
            parts.append(part)
    if rest.strip():
        parts.append(rest.rstrip())
    return parts


def _cut(rest: str, limit: int) -> tuple[str, str]:
    """The first part of `rest` and what remains after it."""
    nearby = find_code_blocks(rest, stop=limit + 1)  # blocks opening later can't matter
    blocks = [block for block in nearby if _fits_fences(block.fence, limit)]
    position, block = _best_cut(rest, limit, blocks)
    if block is None:
        return rest[:position].rstrip(), _drop_leading_blank_lines(rest[position:])
    head = rest[:position] if rest[position - 1] == "\n" else rest[:position] + "\n"
    return head + block.fence.closing, block.fence.line + "\n" + rest[position:]


def _best_cut(rest: str, limit: int, blocks: list[CodeBlock]) -> tuple[int, CodeBlock | None]:
    """The best place to cut, and the block it falls inside (to be re-fenced), if any."""
    best_kind, best_position, best_block = -1, 0, None
    first_visible = len(rest) - len(rest.lstrip())
    # A cut after whitespace at index `limit` still fits: the part drops that whitespace.
    for match in _BREAK.finditer(rest, 0, limit + 1):
        position = match.end()
        block = _block_around(blocks, position)
        if block is None and position <= first_visible:
            continue  # the part would be blank
        if block is not None and not _can_cut_inside(block, position, limit):
            continue
        if _makes_a_fence(rest, position, block):
            continue
        kind = _kind_of_cut(rest, position, blocks)
        if (kind, position) > (best_kind, best_position):
            best_kind, best_position, best_block = kind, position, block
    if best_kind < 0:
        return _hard_cut(rest, limit, blocks)
    return best_position, best_block


def _hard_cut(rest: str, limit: int, blocks: list[CodeBlock]) -> tuple[int, CodeBlock | None]:
    block = _block_around(blocks, limit)
    position = limit if block is None else limit - 1 - len(block.fence.closing)
    if block is not None and not _can_cut_inside(block, position, limit):
        # Only for degenerate texts (a closing fence line padded past the limit): cut plainly.
        block, position = None, limit
    # Back off (keeping a character before the backticks) while a half would read as a fence,
    # but never to a cut that leaves the part without code; then content beats looks.
    lowest = 1 if block is None else block.content_start + 1
    for candidate in range(position, lowest - 1, -1):
        if not _makes_a_fence(rest, candidate, block):
            return candidate, block
    return position, block


def _makes_a_fence(rest: str, position: int, block: CodeBlock | None) -> bool:
    """Whether a cut inside a line leaves either half reading as a fence line on its own
    ("... in ```python blocks"), which would turn text into code or end a block early."""
    if rest[position - 1] == "\n":
        return False
    line_start = rest.rfind("\n", 0, position) + 1
    line_end = rest.find("\n", position)
    head = rest[line_start:position].rstrip()
    tail = rest[position : line_end if line_end >= 0 else len(rest)]
    if block is None:
        return opening_fence(head) is not None or opening_fence(tail) is not None
    return block.fence.is_closed_by(head) or block.fence.is_closed_by(tail)


def _kind_of_cut(rest: str, position: int, blocks: list[CodeBlock]) -> int:
    """How good a cut just after the whitespace at `position - 1` is."""
    if rest[position - 1] != "\n":
        return _SPACE
    if any(position in (block.start, block.end + 1) for block in blocks):
        return _PARAGRAPH  # the edge of a code block reads like a paragraph boundary
    line_before = rest[rest.rfind("\n", 0, position - 1) + 1 : position - 1]
    next_newline = rest.find("\n", position)
    line_after = rest[position : next_newline if next_newline >= 0 else len(rest)]
    if not line_before.strip() or not line_after.strip():
        return _PARAGRAPH
    return _LINE


def _block_around(blocks: list[CodeBlock], position: int) -> CodeBlock | None:
    """The block a cut at `position` would fall inside of, fence lines included."""
    for block in blocks:
        if block.start < position and (position < block.end or not block.is_closed):
            return block
    return None


def _can_cut_inside(block: CodeBlock, position: int, limit: int) -> bool:
    """Only a block too long for any part is cut, between its fences, leaving room to close it."""
    return (
        block.end - block.start > limit
        and block.content_start < position < block.close_start
        and position + 1 + len(block.fence.closing) <= limit
    )


def _fits_fences(fence: Fence, limit: int) -> bool:
    """Whether a reopened part has room for at least one character of code between its fences.

    With real limits (2000, 4096) it always has; a block whose opening line nearly fills the
    limit is cut as plain text instead of looping forever.
    """
    return len(fence.line) + len(fence.closing) + 2 < limit


def _drop_leading_blank_lines(text: str) -> str:
    match = _LEADING_BLANK_LINES.match(text)
    return text[match.end() :] if match else text
