"""Telegram's `parse_mode=HTML`, parsed the way the Bot API parses it (tdlib's `parse_html`).

`parse_html(text)` returns what a user sees: the visible text (tags removed, entities decoded,
surrounding whitespace trimmed) and the message entities, with offsets in UTF-16 code units.
Anything Telegram refuses raises `HtmlParseError` whose `reason` is Telegram's own wording,
byte offsets included, e.g. `Unsupported start tag "p" at byte offset 0`. The Bot API answers
`Bad Request: can't parse entities: <reason>`.

One check is stricter than Telegram, on purpose: Telegram shows a bare `&` or `>` as text, but
its documentation says they must be escaped, and a sender that forgets to escape `&` displays
`&lt;` as `<` without any error. With `requires_escaping=True` (the default) such a character
is refused with a reason that says it is this fake's own check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SUPPORTED_TAGS = frozenset(
    {
        *("a", "b", "strong", "i", "em", "u", "ins", "s", "strike", "del"),
        *("span", "tg-spoiler", "tg-emoji", "code", "pre", "blockquote"),
    }
)
ENTITY_TYPES = {
    **dict.fromkeys(("b", "strong"), "bold"),
    **dict.fromkeys(("i", "em"), "italic"),
    **dict.fromkeys(("u", "ins"), "underline"),
    **dict.fromkeys(("s", "strike", "del"), "strikethrough"),
    **dict.fromkeys(("span", "tg-spoiler"), "spoiler"),
    "code": "code",
    "pre": "pre",
    "a": "text_link",
    "tg-emoji": "custom_emoji",
}
NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
SPACES = " \t\r\n\f\v"
NAME_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
SURROGATE_ERROR = (
    "Text contains invalid Unicode characters after decoding HTML entities, "
    "check for unmatched surrogate code units"
)


class HtmlParseError(ValueError):
    """Telegram refused the markup; `reason` is what follows `can't parse entities: `."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ParsedText:
    text: str
    entities: list[dict[str, Any]]


@dataclass
class _OpenTag:
    name: str
    argument: str
    utf16_offset: int
    text_index: int  # where the tag's content starts in the visible text


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parse_html(html: str, *, requires_escaping: bool = True) -> ParsedText:
    parser = _Parser(html, requires_escaping=requires_escaping)
    parser.run()
    for entity in parser.entities:
        if entity["type"] == "code":
            entity.pop("language", None)
    return _trimmed(parser.text(), parser.entities)


@dataclass
class _Parser:
    source: str
    requires_escaping: bool
    pos: int = 0
    utf16: int = 0
    out: list[str] = field(default_factory=list)
    open_tags: list[_OpenTag] = field(default_factory=list)
    entities: list[dict[str, Any]] = field(default_factory=list)

    def run(self) -> None:
        while self.pos < len(self.source):
            char = self.source[self.pos]
            if char == "&" and self._decoded_entity():
                continue
            if char != "<":
                self._refuse_unescaped(char)
                self._emit(char)
                self.pos += 1
            elif self._at(self.pos + 1) == "/":
                self._end_tag()
            else:
                self._start_tag()
        if self.open_tags:
            name = self.open_tags[-1].name
            raise HtmlParseError(f'Can\'t find end tag corresponding to start tag "{name}"')

    def text(self) -> str:
        return "".join(self.out)

    def _at(self, index: int) -> str:
        return self.source[index] if index < len(self.source) else ""

    def _byte_offset(self, index: int) -> int:
        return len(self.source[:index].encode())

    def _emit(self, text: str) -> None:
        self.out.append(text)
        self.utf16 += utf16_length(text)

    def _refuse_unescaped(self, char: str) -> None:
        if self.requires_escaping and char in "&>":
            raise HtmlParseError(
                f'Unescaped "{char}" at byte offset {self._byte_offset(self.pos)} '
                "(a check of this fake: Telegram shows it as text, its docs require escaping)"
            )

    def _decoded_entity(self) -> bool:
        decoded, end = decode_entity(self.source, self.pos)
        if decoded is None:
            return False
        self._emit(decoded)
        self.pos = end
        return True

    def _skip_spaces(self) -> None:
        while self._at(self.pos) and self._at(self.pos) in SPACES:
            self.pos += 1

    def _read_until(self, stops: str) -> str:
        begin = self.pos
        while self._at(self.pos) and self._at(self.pos) not in SPACES + stops:
            self.pos += 1
        return self.source[begin : self.pos]

    def _start_tag(self) -> None:
        begin = self.pos
        self.pos += 1
        name = self._read_until(">").lower()
        if not self._at(self.pos):
            raise HtmlParseError(f"Unclosed start tag at byte offset {self._byte_offset(begin)}")
        if name not in SUPPORTED_TAGS:
            raise HtmlParseError(
                f'Unsupported start tag "{name}" at byte offset {self._byte_offset(begin)}'
            )
        argument = ""
        while self._at(self.pos) != ">":
            argument = self._attribute(name, begin) or argument
        self.pos += 1
        if name == "span" and argument != "spoiler":
            raise HtmlParseError(
                f'Tag "span" must have class "tg-spoiler" at byte offset {self._byte_offset(begin)}'
            )
        self.open_tags.append(_OpenTag(name, argument, self.utf16, len(self.text())))

    def _attribute(self, tag: str, begin: int) -> str | None:
        """Read one attribute; return the tag's argument if this attribute carries it."""
        self._skip_spaces()
        if self._at(self.pos) == ">":
            return None
        name = self._read_until("=>/\"'")
        if not name:
            raise HtmlParseError(
                f'Empty attribute name in the tag "{tag}" at byte offset {self._byte_offset(begin)}'
            )
        self._skip_spaces()
        if self._at(self.pos) != "=":
            if not self._at(self.pos):
                raise HtmlParseError(
                    f'Unclosed start tag "{tag}" at byte offset {self._byte_offset(begin)}'
                )
            return "expandable" if (tag, name) == ("blockquote", "expandable") else None
        self.pos += 1
        self._skip_spaces()
        if not self._at(self.pos):
            raise HtmlParseError(
                f'Unclosed start tag "{tag}" at byte offset {self._byte_offset(begin)}'
            )
        value = self._attribute_value()
        if not self._at(self.pos):
            raise HtmlParseError(f"Unclosed start tag at byte offset {self._byte_offset(begin)}")
        return _argument_of(tag, name, value)

    def _attribute_value(self) -> str:
        quote = self._at(self.pos)
        if quote not in ("'", '"'):
            token_begin = self.pos
            while self._at(self.pos) and self._at(self.pos) in NAME_TOKEN_CHARS:
                self.pos += 1
            if self._at(self.pos) and self._at(self.pos) not in SPACES + ">":
                raise HtmlParseError(
                    f"Unexpected end of name token at byte offset {self._byte_offset(token_begin)}"
                )
            return self.source[token_begin : self.pos].lower()
        self.pos += 1
        value: list[str] = []
        while self._at(self.pos) and self._at(self.pos) != quote:
            decoded, end = decode_entity(self.source, self.pos)
            value.append(decoded if decoded is not None else self._at(self.pos))
            self.pos = end if decoded is not None else self.pos + 1
        if self._at(self.pos) == quote:
            self.pos += 1
        return "".join(value)

    def _end_tag(self) -> None:
        begin = self.pos
        if not self.open_tags:
            raise HtmlParseError(f"Unexpected end tag at byte offset {self._byte_offset(begin)}")
        self.pos += 2
        name = self._read_until(">").lower()
        self._skip_spaces()
        if self._at(self.pos) != ">":
            raise HtmlParseError(f"Unclosed end tag at byte offset {self._byte_offset(begin)}")
        self.pos += 1
        tag = self.open_tags.pop()
        if name and name != tag.name:
            raise HtmlParseError(
                f"Unmatched end tag at byte offset {self._byte_offset(begin)}, "
                f'expected "</{tag.name}>", found "</{name}>"'
            )
        if self.utf16 > tag.utf16_offset:
            self._add_entity(tag)

    def _add_entity(self, tag: _OpenTag) -> None:
        entity: dict[str, Any] = {
            "type": ENTITY_TYPES.get(tag.name, tag.name),
            "offset": tag.utf16_offset,
            "length": self.utf16 - tag.utf16_offset,
        }
        if tag.name == "blockquote":
            entity["type"] = "expandable_blockquote" if tag.argument else "blockquote"
        elif tag.name == "tg-emoji":
            if not tag.argument.isdigit() or int(tag.argument) == 0:
                raise HtmlParseError("Invalid custom emoji identifier specified")
            entity["custom_emoji_id"] = tag.argument
        elif tag.name == "a":
            entity["url"] = tag.argument or self.text()[tag.text_index :]
        elif tag.name == "code" and tag.argument:
            entity["language"] = tag.argument  # kept only if a `pre` takes it, see parse_html
        if tag.name in ("code", "pre") and self._merged_into_pre(entity, tag):
            return
        self.entities.append(entity)

    def _merged_into_pre(self, entity: dict[str, Any], tag: _OpenTag) -> bool:
        """`<pre><code class="language-x">` (either order) is one `pre` with a language."""
        last = self.entities[-1] if self.entities else None
        if last is None or (last["offset"], last["length"]) != (entity["offset"], entity["length"]):
            return False
        language = last.get("language", "") or (tag.argument if tag.name == "code" else "")
        if {last["type"], tag.name} != {"pre", "code"} or not language:
            return False
        self.entities[-1] = {**entity, "type": "pre", "language": language}
        return True


def _argument_of(tag: str, attribute: str, value: str) -> str | None:
    if (tag, attribute) == ("a", "href"):
        return value
    if (tag, attribute) == ("code", "class") and value.startswith("language-"):
        return value.removeprefix("language-")
    if (tag, attribute) == ("span", "class") and value.startswith("tg-"):
        return value.removeprefix("tg-")
    if (tag, attribute) == ("tg-emoji", "emoji-id"):
        return value
    return None


def decode_entity(text: str, pos: int) -> tuple[str | None, int]:
    """The character `&...;` at `pos` stands for and where it ends, or (None, pos)."""
    end = pos + 1
    if text[end : end + 1] == "#":
        is_hex = text[end + 1 : end + 2] == "x"
        end += 2 if is_hex else 1
        digits = "0123456789abcdefABCDEF" if is_hex else "0123456789"
        start = end
        while end < len(text) and text[end] in digits:
            end += 1
        code = int(text[start:end], 16 if is_hex else 10) if end > start else 0
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return None, pos
        if 0xD800 <= code <= 0xDFFF:
            raise HtmlParseError(SURROGATE_ERROR)
        decoded = chr(code)
    else:
        while end < len(text) and text[end].isascii() and text[end].isalpha():
            end += 1
        named = NAMED_ENTITIES.get(text[pos + 1 : end])
        if named is None:
            return None, pos
        decoded = named
    return decoded, end + 1 if text[end : end + 1] == ";" else end


def _trimmed(text: str, entities: list[dict[str, Any]]) -> ParsedText:
    """Telegram drops leading and trailing whitespace and entities left empty by that."""
    stripped = text.lstrip(SPACES)
    shift = utf16_length(text) - utf16_length(stripped)
    stripped = stripped.rstrip(SPACES)
    end = utf16_length(stripped)
    kept = []
    for entity in sorted(entities, key=lambda e: (e["offset"], -e["length"])):
        start = max(entity["offset"] - shift, 0)
        stop = min(entity["offset"] + entity["length"] - shift, end)
        if stop > start:
            kept.append({**entity, "offset": start, "length": stop - start})
    return ParsedText(stripped, kept)
