"""Markdown to Telegram's HTML parse mode: every construct, escaping, and well-formed output."""

from __future__ import annotations

import html
import re
import string
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bots.telegram.render import plain_text, to_telegram_html, visible_length
from core.messages import _TEXTS, help_text

# Exactly the tags and attributes the renderer may emit, all from Telegram's supported list.
EMITTED_TAG = re.compile(
    r'</?(?:b|i|s|code|pre|blockquote)>|<a href="[^"<>]*">|</a>|<code class="language-[^"<>]*">'
)
TELEGRAM_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]+|#x[0-9a-fA-F]+);")
FORMATTING = {"b", "i", "s", "a"}


class NestingChecker(HTMLParser):
    """Telegram's nesting rules: tags closed in order; nothing inside code or pre (but pre's one
    code); code and pre inside no formatting or link (a blockquote is fine); no tag inside a tag
    of its own kind, so no nested blockquotes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.stack:
            self.errors.append(f"<{tag}> inside <{tag}>")
        if "code" in self.stack or ("pre" in self.stack and tag != "code"):
            self.errors.append(f"<{tag}> inside code")
        if tag in ("code", "pre") and FORMATTING & set(self.stack):
            self.errors.append(f"<{tag}> inside formatting {self.stack}")
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack}")
        else:
            self.stack.pop()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.errors.append(f"self-closing <{tag}/>")


def assert_valid_telegram_html(markup: str) -> None:
    text = EMITTED_TAG.sub("", markup)
    assert "<" not in text, markup
    assert ">" not in text, markup
    assert "&" not in TELEGRAM_ENTITY.sub("", text), markup
    checker = NestingChecker()
    checker.feed(markup)
    checker.close()
    assert checker.errors == [], markup
    assert checker.stack == [], markup


def shown_text(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]*>", "", markup))


# Each construct


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("*Commands*", "<b>Commands</b>"),
        ("**bold** text", "<b>bold</b> text"),
        ("__bold__ text", "<b>bold</b> text"),
        ("_italic_ text", "<i>italic</i> text"),
        ("~~gone~~ text", "<s>gone</s> text"),
        ("run `ls -la` now", "run <code>ls -la</code> now"),
        ("``a ` tick``", "<code>a ` tick</code>"),
        ("```python\nprint(1)\n```", '<pre><code class="language-python">print(1)</code></pre>'),
        ("```\nplain\n```", "<pre>plain</pre>"),
        ("```python3 title=x.py\ny\n```", '<pre><code class="language-python3">y</code></pre>'),
        ("[docs](https://example.com/a)", '<a href="https://example.com/a">docs</a>'),
        ("[w](https://en.wikipedia.org/wiki/A_(b))", '<a href="https://en.wikipedia.org/wiki/A_(b)">w</a>'),
        ("# Title", "<b>Title</b>"),
        ("### Sub *title*", "<b>Sub title</b>"),
        ("> quoted\n> lines", "<blockquote>quoted\nlines</blockquote>"),
        ("- one\n* two\n  + nested", "• one\n• two\n  • nested"),
        ("1. first", "1. first"),
        ("a\n\nb", "a\n\nb"),
    ],
)  # fmt: skip
def test_each_construct_renders_to_its_telegram_tag(markdown: str, expected: str):
    assert to_telegram_html(markdown) == expected


def test_a_fenced_block_inside_a_list_item_loses_the_items_indentation():
    markdown = "1. Run:\n   ```sh\n   make test\n   ```"
    assert (
        to_telegram_html(markdown)
        == '1. Run:\n<pre><code class="language-sh">make test</code></pre>'
    )


def test_nothing_inside_a_code_block_is_formatted():
    markdown = "```\n**not bold** _nor italic_ [no](https://x.y) # no heading\n```"
    assert to_telegram_html(markdown) == (
        "<pre>**not bold** _nor italic_ [no](https://x.y) # no heading</pre>"
    )


def test_an_unclosed_fence_of_a_streamed_answer_is_code_to_the_end():
    markdown = "Here:\n```js\nconst a = 1;\nconst b"
    assert to_telegram_html(markdown) == (
        'Here:\n<pre><code class="language-js">const a = 1;\nconst b</code></pre>'
    )


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "ftp://files.example.com", "/relative/path", "mailto:a@b.c"]
)
def test_a_link_to_anything_but_http_or_https_stays_text(url: str):
    assert to_telegram_html(f"[click]({url})") == f"[click]({url})"


@pytest.mark.parametrize(
    ("markdown", "shown"),
    [
        ("[Bob](tg://user?id=123456789)", "Bob"),
        ("[Bob](TG://user?id=123456789)", "Bob"),
        ("[**Bob**](tg://openmessage?user_id=123456789)", "<b>Bob</b>"),
        ("[join us](tg://join?invite=AbCdEf)", "join us"),
        ("[the bot](tg:resolve?domain=somebot)", "the bot"),
    ],
)
def test_a_tg_link_in_a_models_answer_shows_its_words_only_and_links_nothing(
    markdown: str, shown: str
):
    assert to_telegram_html(markdown) == shown
    assert "tg:" not in plain_text(markdown).lower()


def test_a_tg_mention_in_a_sentence_keeps_the_sentence_and_the_name():
    markdown = "Ask [Bob](tg://user?id=1) or see [docs](https://example.com)."
    assert to_telegram_html(markdown) == ('Ask Bob or see <a href="https://example.com">docs</a>.')


def test_the_star_marks_bold_for_our_catalogue_and_the_underscore_marks_italic():
    assert to_telegram_html("*a* **b** _c_ __d__") == "<b>a</b> <b>b</b> <i>c</i> <b>d</b>"


# Escaping


def test_angle_brackets_and_ampersands_in_text_are_escaped():
    assert to_telegram_html('a < b && c > d "q"') == 'a &lt; b &amp;&amp; c &gt; d "q"'


def test_text_that_looks_like_html_or_entities_is_shown_as_written():
    assert to_telegram_html("<b>x</b> &amp;") == "&lt;b&gt;x&lt;/b&gt; &amp;amp;"


def test_code_is_escaped_in_blocks_and_inline():
    assert to_telegram_html("`a<b>&c`") == "<code>a&lt;b&gt;&amp;c</code>"
    assert to_telegram_html("```\nif a < b && c:\n```") == "<pre>if a &lt; b &amp;&amp; c:</pre>"


def test_quotes_and_ampersands_in_a_link_are_escaped_in_the_attribute():
    assert to_telegram_html('[x](https://a.b/?q="1"&r=<2>)') == (
        '<a href="https://a.b/?q=&quot;1&quot;&amp;r=&lt;2&gt;">x</a>'
    )


def test_a_language_name_that_is_not_a_plain_word_is_dropped():
    assert to_telegram_html('```"><b>\nx\n```') == "<pre>x</pre>"


def test_backslash_escaped_markers_stay_literal():
    assert to_telegram_html(r"\*not bold\* and \_not italic\_") == "*not bold* and _not italic_"


# Unmatched and adversarial markers


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("**open bold", "**open bold"),
        ("2 * 3 * 4", "2 * 3 * 4"),
        ("snake_case_name", "snake_case_name"),
        ("stray ` tick", "stray ` tick"),
        ("~5 min", "~5 min"),
        ("[no url]", "[no url]"),
        ("**a _b** c_", "<b>a _b</b> c_"),
        ("*a **b* c**", "<b>a **b</b> c**"),
        ("`a **b` c**", "<code>a **b</code> c**"),
    ],
)  # fmt: skip
def test_unmatched_or_overlapping_markers_stay_literal(markdown: str, expected: str):
    assert to_telegram_html(markdown) == expected


def test_inline_code_closes_and_reopens_the_formatting_around_it():
    assert to_telegram_html("**use `make` now**") == "<b>use </b><code>make</code><b> now</b>"


def test_code_inside_a_link_keeps_its_words_without_the_code_style():
    assert to_telegram_html("[`run`](https://x.y)") == '<a href="https://x.y">run</a>'


def test_bold_inside_a_heading_does_not_nest_bold_in_bold():
    assert to_telegram_html("# A **big** deal") == "<b>A big deal</b>"


def test_a_quote_inside_a_quote_is_not_nested():
    assert to_telegram_html(">> deep") == "<blockquote>&gt; deep</blockquote>"


@pytest.mark.parametrize(
    "markdown",
    [
        "**a _b** c_", "*a **b* c**", "__*~~x~~*__", "***x***", "**a [b** c](https://x.y)",
        "[**x** `y` _z_](https://x.y)", "```", "```py", "````\n```\n", "> **a\n> b**", "# **a",
        "> ```\n> code", "\\", "` `` ```", "- **x", "**`**`**", "_a *b_ c*", "a**b**c__d__e",
    ],
)  # fmt: skip
def test_adversarial_markdown_still_renders_well_formed(markdown: str):
    assert_valid_telegram_html(to_telegram_html(markdown))


FRAGMENTS = [
    "**", "*", "__", "_", "~~", "~", "`", "``", "```", "```python", "\n", "\n\n", " ", "word",
    "ação", "😀", "<", ">", "&", '"', "&amp;", "<b>", "\\", "\\*", "[", "]", "(", ")",
    "[link](https://example.com/a_b?c=1&d=2)", "[x](javascript:alert(1))", "# ", "> ", "- ",
    "* ", "1. ", "http://x.y", "\t", "\r",
]  # fmt: skip
MARKDOWN = st.one_of(
    st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join), st.text(max_size=200)
)


@settings(max_examples=300, deadline=None)
@given(markdown=MARKDOWN)
def test_any_markdown_renders_to_well_formed_html_no_longer_than_its_source(markdown: str):
    markup = to_telegram_html(markdown)
    assert_valid_telegram_html(markup)
    # The splitter measures Markdown: rendering must never make a part longer.
    assert visible_length(markup) <= len(markdown)
    if "<a " not in markup:  # links alone differ: plain text spells out their URL
        assert plain_text(markdown) == shown_text(markup)
        assert visible_length(markup) == len(plain_text(markdown))


# Lengths and the plain fallback


@pytest.mark.parametrize(
    ("markup", "length"),
    [("<b>bold</b>", 4), ("&lt;b&gt;", 3), ("a &amp; b", 5), ("&quot;", 1), ("&#128512;", 1),
     ("😀 ação", 6), ('<a href="https://x.y/long/url">x</a>', 1),
     ('<pre><code class="language-py">a\nb</code></pre>', 3)],
)  # fmt: skip
def test_visible_length_counts_what_telegram_counts(markup: str, length: int):
    assert visible_length(markup) == length


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("**bold** _it_ ~~s~~ `code`", "bold it s code"),
        ("a < b & c", "a < b & c"),
        ("[site](https://x.y)", "site (https://x.y)"),
        ("[https://x.y](https://x.y)", "https://x.y"),
        ("# Title\n> quote\n- item", "Title\nquote\n• item"),
        ("```py\nif a < b:\n    pass\n```", "if a < b:\n    pass"),
        ("**unmatched", "**unmatched"),
    ],
)  # fmt: skip
def test_plain_text_drops_the_markers_and_escapes_nothing(markdown: str, expected: str):
    assert plain_text(markdown) == expected


# The catalogue

SAMPLE_VALUES = ["Ideias <novas> & *rascunhos*", "plain", "a_b_c", "`tick", "42"]


def catalogue_texts() -> list[tuple[str, str]]:
    texts = []
    for locale, catalogue in _TEXTS.items():
        texts += [(f"{locale}:{key}", template) for key, template in catalogue.items()]
        texts.append((f"{locale}:help", help_text(locale)))
    return texts


@pytest.mark.parametrize(("key", "template"), catalogue_texts(), ids=lambda value: value)
@pytest.mark.parametrize("sample", SAMPLE_VALUES)
def test_every_catalogue_text_renders_to_valid_html(key: str, template: str, sample: str):
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    markdown = template.format(**dict.fromkeys(fields, sample))
    markup = to_telegram_html(markdown)
    assert_valid_telegram_html(markup)
    assert visible_length(markup) <= len(markdown)


def test_the_catalogue_bold_and_placeholders_render_as_meant():
    assert to_telegram_html(_TEXTS["en"]["help_header"]) == "<b>Commands</b>"
    model_help = _TEXTS["en"]["model_current"].format(model="gpt-4o", example="x/y")
    assert to_telegram_html(model_help) == (
        "Model: <code>gpt-4o</code>. Change it with /model &lt;id&gt;, e.g. /model x/y."
    )
