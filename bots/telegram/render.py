"""Markdown (our catalogue's and the models') to Telegram's HTML parse mode, and a plain fallback.

| Markdown                                   | Telegram HTML                                     |
|--------------------------------------------|---------------------------------------------------|
| ```` ```lang ```` fenced block             | `<pre><code class="language-lang">…</code></pre>` |
| ```` ``` ```` fenced block, no language    | `<pre>…</pre>`                                    |
| `` `code` ``                               | `<code>…</code>`                                  |
| `**x**`, `__x__` and `*x*`                 | `<b>x</b>`                                        |
| `_x_`                                      | `<i>x</i>`                                        |
| `~~x~~`                                    | `<s>x</s>`                                        |
| `[text](url)`, url http or https           | `<a href="url">text</a>` (other urls stay text)   |
| `[text](tg://…)`                           | `text`: a `tg://` link never becomes one          |
| `# heading` (up to six #)                  | `<b>heading</b>`                                  |
| `> quote` lines                            | `<blockquote>…</blockquote>`                      |
| `- item`, `* item`, `+ item`               | `• item`                                          |

Model output must not make `tg://` links: `tg://user?id=…` mentions (and notifies) a user of a
group, and other `tg://` links act inside the reader's app. Such a link shows its text only.

`*x*` is bold, not italic: the catalogue in `core/messages.py` marks bold that way, and a model's
rare `*italic*` shown bold reads fine, while our headers shown italic would not. Italic is `_x_`.

Telegram's rules this follows (Bot API "Formatting options", HTML style, and tdlib's parser):
only its own tags are accepted; every `<`, `>`, `&` that is not markup is written `&lt;`, `&gt;`,
`&amp;` (`&quot;` too inside an attribute), the only named entities it knows; tags must be closed
in order; code and pre contain no other entity and sit inside no other entity but a blockquote;
blockquotes don't nest; an entity doesn't nest inside one of its own type.

How: fenced blocks and quote lines are found first, then each line is tokenized on its own (so
formatting never runs past a line, and a marker left open in a streamed answer stays literal).
A closing marker pairs with the nearest open marker of the same kind; markers opened in between
fall back to literal text, so spans nest and never overlap. A writer opens tags lazily, only
around text, which lets inline code close and reopen the formatting around it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from bots.chatfront.text_split import opening_fence

_INLINE = re.compile(
    r"(?P<escape>\\[!-/:-@\[-`{-~])"  # a backslash before ASCII punctuation
    r"|(?P<code>`+)"
    r"|\[(?P<label>[^\[\]\n]*)\]\((?P<url>(?:[^\s()]|\([^\s()]*\))+)\)"
    r"|(?P<delim>\*+|_+|~+)"
)
_LINK_SCHEME = re.compile(r"https?://", re.IGNORECASE)
_TELEGRAM_SCHEME = re.compile(r"tg:", re.IGNORECASE)
_HEADING = re.compile(r" {0,3}#{1,6}[ \t]+")
_BULLET = re.compile(r"([ \t]*)[-*+][ \t]+")
_QUOTE = re.compile(r" {0,3}> ?")
_LANGUAGE = re.compile(r"[\w#+.-]+")
_TAG = re.compile(r"<[^>]*>")
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]+|#x[0-9a-fA-F]+);")

_TAG_OF_MARKER = {"**": "b", "__": "b", "*": "b", "_": "i", "~~": "s"}
# Deeper nesting than any real text has is left as text, which keeps the recursion shallow.
_MAX_NESTING = 16


@dataclass(frozen=True)
class _Text:
    value: str


@dataclass(frozen=True)
class _InlineCode:
    value: str


@dataclass(frozen=True)
class _Span:
    tag: str
    children: tuple[_Inline, ...]


@dataclass(frozen=True)
class _Link:
    url: str
    children: tuple[_Inline, ...]


_Inline = _Text | _InlineCode | _Span | _Link


@dataclass(frozen=True)
class _Delimiter:
    marker: str
    can_open: bool
    can_close: bool


@dataclass(frozen=True)
class _Line:
    nodes: tuple[_Inline, ...]
    is_heading: bool = False


@dataclass(frozen=True)
class _Quote:
    lines: tuple[_Line, ...]


@dataclass(frozen=True)
class _Pre:
    language: str
    code: str


_Block = _Line | _Quote | _Pre


def to_telegram_html(markdown: str) -> str:
    return "\n".join(_block_html(block) for block in _parse_blocks(markdown))


def plain_text(markdown: str) -> str:
    """What the HTML would show, as plain text (links as "text (url)"): the fallback to send
    without a parse mode when Telegram still rejects the markup. Nothing is escaped."""
    return "\n".join(_block_plain(block) for block in _parse_blocks(markdown))


def visible_length(html: str) -> int:
    """The length Telegram counts against its limit: tags removed, entities decoded."""
    return len(_ENTITY.sub("&", _TAG.sub("", html)))


# Blocks


def _parse_blocks(markdown: str) -> list[_Block]:
    lines = markdown.split("\n")
    blocks: list[_Block] = []
    index = 0
    while index < len(lines):
        fence = opening_fence(lines[index])
        end = index + 1
        if fence is not None:
            # An unclosed fence (a streamed answer cut short) is code to the end.
            while end < len(lines) and not fence.is_closed_by(lines[end]):
                end += 1
            code = "\n".join(_dedent(line, fence.indent) for line in lines[index + 1 : end])
            blocks.append(_Pre(_language(fence.info), code))
            end += 1
        elif _QUOTE.match(lines[index]):
            while end < len(lines) and _QUOTE.match(lines[end]):
                end += 1
            quoted = (_QUOTE.sub("", line, count=1) for line in lines[index:end])
            blocks.append(_Quote(tuple(_parse_line(line) for line in quoted)))
        else:
            blocks.append(_parse_line(lines[index]))
        index = end
    return blocks


def _parse_line(line: str) -> _Line:
    heading = _HEADING.match(line)
    if heading:
        return _Line(_parse_inline(line[heading.end() :].strip()), is_heading=True)
    bullet = _BULLET.match(line)
    if bullet:
        return _Line((_Text(bullet[1] + "• "), *_parse_inline(line[bullet.end() :])))
    return _Line(_parse_inline(line))


def _dedent(line: str, indent: str) -> str:
    """Code lines lose the fence's own indentation (a block in a list item), as in CommonMark."""
    return line[len(indent) :] if indent and line.startswith(indent) else line


def _language(info: str) -> str:
    """The info string's first word, when it looks like a language name, else none."""
    words = info.split()
    return words[0] if words and _LANGUAGE.fullmatch(words[0]) else ""


def _block_html(block: _Block) -> str:
    if isinstance(block, _Pre):
        code = _escape(block.code)
        if not block.language:
            return f"<pre>{code}</pre>"
        language = _escape(block.language, quote=True)
        return f'<pre><code class="language-{language}">{code}</code></pre>'
    if isinstance(block, _Quote):
        return "<blockquote>" + "\n".join(map(_line_html, block.lines)) + "</blockquote>"
    return _line_html(block)


def _line_html(line: _Line) -> str:
    writer = _HtmlWriter()
    if line.is_heading:
        writer.push("b", "<b>")
    writer.write(line.nodes)
    return writer.finish()


def _block_plain(block: _Block) -> str:
    if isinstance(block, _Pre):
        return block.code
    lines = block.lines if isinstance(block, _Quote) else (block,)
    return "\n".join(_plain(line.nodes) for line in lines)


def _plain(nodes: tuple[_Inline, ...]) -> str:
    out: list[str] = []
    for node in nodes:
        if isinstance(node, _Text | _InlineCode):
            out.append(node.value)
        elif isinstance(node, _Span):
            out.append(_plain(node.children))
        else:
            label = _plain(node.children)
            out.append(label if label == node.url else f"{label} ({node.url})")
    return "".join(out)


# Inline: tokens, then spans


def _parse_inline(line: str) -> tuple[_Inline, ...]:
    tokens: list[_Inline | _Delimiter] = []
    position = 0
    while (match := _INLINE.search(line, position)) is not None:
        if match.start() > position:
            tokens.append(_Text(line[position : match.start()]))
        new_tokens, position = _tokens_at(line, match)
        tokens.extend(new_tokens)
    if position < len(line):
        tokens.append(_Text(line[position:]))
    return _nest(tokens)


def _tokens_at(line: str, match: re.Match[str]) -> tuple[list[_Inline | _Delimiter], int]:
    """The tokens a match stands for, and where scanning resumes."""
    if match["escape"] is not None:
        return [_Text(match["escape"][1])], match.end()
    if match["code"] is not None:
        return _code_span(line, match)
    if match["delim"] is not None:
        return _delimiters(line, match), match.end()
    if _LINK_SCHEME.match(match["url"]):
        return [_Link(match["url"], _parse_inline(match["label"]))], match.end()
    if _TELEGRAM_SCHEME.match(match["url"]):
        # A mention or an in-app action the model made up: its words only, not even the URL.
        return list(_parse_inline(match["label"])), match.end()
    # Not a URL we link (javascript:, relative...): the bracket is text, its label still formats.
    return [_Text("[")], match.start() + 1


def _code_span(line: str, match: re.Match[str]) -> tuple[list[_Inline | _Delimiter], int]:
    """A run of backticks up to the next run of the same length (CommonMark), else literal."""
    ticks = len(match["code"])
    closing = re.compile(f"(?<!`)`{{{ticks}}}(?!`)").search(line, match.end())
    if closing is None:
        return [_Text(match["code"])], match.end()
    code = line[match.end() : closing.start()]
    if len(code) > 2 and code[0] == code[-1] == " " and code.strip():
        code = code[1:-1]  # "`` `x` ``" shows "`x`"
    return [_InlineCode(code)], closing.end()


def _delimiters(line: str, match: re.Match[str]) -> list[_Inline | _Delimiter]:
    """A run of *, _ or ~ as delimiters that may open or close, or as plain text.

    Simplified CommonMark flanking: a marker opens before non-space and closes after non-space;
    `_` also never opens or closes inside a word, so snake_case_names stay as they are.
    """
    run = match["delim"]
    before = line[match.start() - 1] if match.start() > 0 else " "
    after = line[match.end()] if match.end() < len(line) else " "
    can_open, can_close = not after.isspace(), not before.isspace()
    if run[0] == "_":
        can_open, can_close = can_open and not before.isalnum(), can_close and not after.isalnum()
    if (run[0] == "~" and len(run) != 2) or len(run) > 3:
        return [_Text(run)]  # "~5 min", "----"-like rules of asterisks: text
    if len(run) == 3:  # both bold markers of our rule; the longer one outside
        pieces = [run[0], run[:2]] if can_close and not can_open else [run[:2], run[0]]
    else:
        pieces = [run]
    return [_Delimiter(piece, can_open, can_close) for piece in pieces]


def _nest(tokens: list[_Inline | _Delimiter]) -> tuple[_Inline, ...]:
    """Pair delimiters into spans: a closer takes the nearest opener with the same marker, and
    the openers left between them become text, so spans nest and never overlap."""
    frames: list[tuple[str, list[_Inline]]] = [("", [])]
    open_markers: Counter[str] = Counter()  # skips hopeless searches: linear on any input
    for token in tokens:
        if not isinstance(token, _Delimiter):
            frames[-1][1].append(token)
        elif token.can_close and open_markers[token.marker]:
            opener = next(i for i in range(len(frames) - 1, 0, -1) if frames[i][0] == token.marker)
            _fold_as_text(frames, opener, open_markers)
            marker, children = frames.pop()
            open_markers[marker] -= 1
            frames[-1][1].append(_Span(_TAG_OF_MARKER[marker], tuple(children)))
        elif token.can_open and len(frames) <= _MAX_NESTING:
            frames.append((token.marker, []))
            open_markers[token.marker] += 1
        else:
            frames[-1][1].append(_Text(token.marker))
    _fold_as_text(frames, 0, open_markers)
    return tuple(frames[0][1])


def _fold_as_text(
    frames: list[tuple[str, list[_Inline]]], index: int, open_markers: Counter[str]
) -> None:
    """The markers opened above `index` were never closed: they were text after all."""
    folded: list[_Inline] = []
    for marker, children in frames[index + 1 :]:
        folded += [_Text(marker), *children]
        open_markers[marker] -= 1
    del frames[index + 1 :]
    frames[index][1].extend(folded)


# Writing HTML


class _HtmlWriter:
    """Writes one line's nodes, opening tags lazily, only right before text.

    `wanted` is the formatting the next text should carry; `opened` counts how many of those
    tags are open in the output, always the outermost ones. Inline code closes them all and the
    next text reopens them: Telegram keeps code out of bold, italic, strike and links.
    """

    def __init__(self) -> None:
        self.out: list[str] = []
        self.wanted: list[tuple[str, str]] = []  # (tag name, opening tag)
        self.opened = 0

    def push(self, name: str, opening: str) -> bool:
        """Wants a tag around the next text; False when already in it (no <b> inside <b>)."""
        if any(wanted == name for wanted, _ in self.wanted):
            return False
        self.wanted.append((name, opening))
        return True

    def pop(self) -> None:
        if self.opened == len(self.wanted):
            self.out.append(f"</{self.wanted[-1][0]}>")
            self.opened -= 1
        self.wanted.pop()

    def write(self, nodes: tuple[_Inline, ...]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.text(node.value)
            elif isinstance(node, _InlineCode):
                self.code(node.value)
            else:
                if isinstance(node, _Span):
                    pushed = self.push(node.tag, f"<{node.tag}>")
                else:
                    pushed = self.push("a", f'<a href="{_escape(node.url, quote=True)}">')
                self.write(node.children)
                if pushed:
                    self.pop()

    def text(self, value: str) -> None:
        for _, opening in self.wanted[self.opened :]:
            self.out.append(opening)
        self.opened = len(self.wanted)
        self.out.append(_escape(value))

    def code(self, value: str) -> None:
        if any(name == "a" for name, _ in self.wanted):
            self.text(value)  # a link can't hold code: keep the words, drop the style
            return
        self._close_all()
        self.out.append(f"<code>{_escape(value)}</code>")

    def finish(self) -> str:
        self._close_all()
        return "".join(self.out)

    def _close_all(self) -> None:
        while self.opened:
            self.opened -= 1
            self.out.append(f"</{self.wanted[self.opened][0]}>")


def _escape(text: str, *, quote: bool = False) -> str:
    """Telegram's escaping: `&`, `<`, `>` always, `"` inside an attribute value."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace('"', "&quot;") if quote else text
