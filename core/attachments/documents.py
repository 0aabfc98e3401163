"""A document as text a model reads: a PDF's text (pypdf) or a UTF-8 text file, named and fenced.

`document_text` takes the first `max_pages` pages of a PDF and at most `max_chars` characters
(MAX_DOCUMENT_CHARS) of either kind, and says when it cut. `DocumentText.block()` is what goes
into the user's message, one block per file:

    Attached file "notes.md" (text/plain):
    ```
    …the file's text…
    ```

    Attached file "book.pdf" (application/pdf, 300 pages; pages 1-41 read; cut after 100000 …
    ````
    …its text, which holds ``` somewhere, so the fence has four…
    ````

The header is one line (shortened above): the name, JSON-quoted after control, format and
separator characters are taken out (a name cannot start a line of its own, nor turn its text
around with U+202E), then the media type, the page count, and what was left out. The text
follows in a Markdown code fence one backtick longer than the longest run of backticks in the
text (at least three): by CommonMark's rule only a run at least as long closes a fence, so
nothing inside the file, and nothing of the user's own text, can end the block early and pass
for something the user said outside it.

A PDF that needs a password is refused (pypdf tries the empty password first, which opens the
many PDFs locked only against editing; those encrypted with AES need the `cryptography` package,
not installed, and are refused the same way); a damaged one too; one with no text in the pages
read is DocumentHasNoText, a different error, because the file is fine and another engine may
read it (PDF_ENGINE=openrouter). One encrypted by another handler than the standard one
(certificates, DRM), or compressed by a filter pypdf lacks, is UNSUPPORTED.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import struct
import unicodedata
import zlib
from dataclasses import dataclass, field
from typing import Final

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, PyPdfError

from core.attachments.media import MediaType, sniff_media_type
from core.errors import AttachmentProblem, DocumentHasNoText, InvalidAttachment

# A reasonable page cap for callers (no setting asks for another): past MAX_DOCUMENT_CHARS'
# default a PDF of prose has long been cut, so the pages cap mostly bounds the work spent on
# pages without text.
MAX_PDF_PAGES: Final = 100
MAX_NAME_CHARS: Final = 200
UNNAMED: Final = "unnamed"
SHORTEST_FENCE: Final = 3
PAGE_SEPARATOR: Final = "\n\n"

# What pypdf raises on malformed input besides its own errors: it parses untrusted structure
# with plain Python, so a damaged file can surface as almost any of these.
_DAMAGED_PDF_ERRORS: Final = (
    PyPdfError,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    IndexError,
    RecursionError,
    OSError,
    EOFError,
    zlib.error,
    struct.error,
)
_BACKTICK_RUN: Final = re.compile(r"`+")
# Unicode categories a one-line name may not hold: controls (newlines), format characters
# (bidi overrides), line and paragraph separators.
_HIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp"})


@dataclass(frozen=True)
class DocumentText:
    name: str  # as the block shows it: one line, at most MAX_NAME_CHARS
    media_type: MediaType  # PDF or TEXT
    text: str = field(repr=False)  # at most max_chars characters
    is_text_cut: bool = False  # the text went on past max_chars
    page_count: int | None = None  # a PDF's pages
    pages_read: int | None = None  # of which read: max_pages at most, fewer once text was cut

    @property
    def was_cut(self) -> bool:
        """Something of the document is left out: text past max_chars, or unread pages."""
        return self.is_text_cut or self.pages_read != self.page_count

    def block(self) -> str:
        """The file as the model receives it (the format is in the module's docstring)."""
        longest_run = max((len(run) for run in _BACKTICK_RUN.findall(self.text)), default=0)
        fence = "`" * max(SHORTEST_FENCE, longest_run + 1)
        body = self.text if self.text.endswith("\n") or not self.text else f"{self.text}\n"
        return f"{self._header()}\n{fence}\n{body}{fence}"

    def _header(self) -> str:
        about = [str(self.media_type)]
        if self.page_count is not None:
            about[0] += f", {self.page_count} page{'' if self.page_count == 1 else 's'}"
        cuts = []
        if self.pages_read is not None and self.pages_read != self.page_count:
            cuts.append(f"pages 1-{self.pages_read} read")
        if self.is_text_cut:
            cuts.append(f"cut after {len(self.text)} characters")
        if cuts:
            about.append("; ".join(cuts))
        quoted = json.dumps(self.name, ensure_ascii=False)
        return f"Attached file {quoted} ({'; '.join(about)}):"


def document_text(data: bytes, *, name: str, max_chars: int, max_pages: int) -> DocumentText:
    """The text of a PDF or UTF-8 text file (see the module's docstring).

    InvalidAttachment: not a document (NOT_A_DOCUMENT, UNKNOWN_TYPE, EMPTY), a damaged PDF
    (DAMAGED), one that needs a password (ENCRYPTED) or that pypdf cannot decode
    (UNSUPPORTED), text that is not UTF-8 throughout or
    holds NUL bytes (NOT_TEXT). DocumentHasNoText: a PDF whose pages read hold no text."""
    if max_chars < 1 or max_pages < 1:
        raise ValueError("max_chars and max_pages must be at least 1")
    media_type = sniff_media_type(data)
    shown_name = one_line_name(name)
    if media_type is MediaType.TEXT:
        text = _utf8_text(data)
        return DocumentText(
            shown_name, media_type, text[:max_chars], is_text_cut=len(text) > max_chars
        )
    if media_type is not MediaType.PDF:
        raise InvalidAttachment(reason=AttachmentProblem.NOT_A_DOCUMENT)
    return _pdf_text(data, name=shown_name, max_chars=max_chars, max_pages=max_pages)


async def document_text_in_thread(
    data: bytes, *, name: str, max_chars: int, max_pages: int
) -> DocumentText:
    """`document_text` off the event loop (a long PDF takes pypdf a while)."""
    return await asyncio.to_thread(
        document_text, data, name=name, max_chars=max_chars, max_pages=max_pages
    )


def one_line_name(name: str) -> str:
    """A file name fit for a one-line header: no control, format or separator characters,
    white space collapsed, at most MAX_NAME_CHARS (an ellipsis says it was longer)."""
    visible = "".join(
        " " if unicodedata.category(char) in _HIDDEN_CATEGORIES else char for char in name
    )
    collapsed = " ".join(visible.split())
    if len(collapsed) > MAX_NAME_CHARS:
        collapsed = collapsed[: MAX_NAME_CHARS - 1] + "…"
    return collapsed or UNNAMED


def _utf8_text(data: bytes) -> str:
    """The whole file as UTF-8 (sniffing looked at its start only), a BOM dropped, line ends
    made `\\n`."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidAttachment(reason=AttachmentProblem.NOT_TEXT) from None
    if "\x00" in text:
        raise InvalidAttachment(reason=AttachmentProblem.NOT_TEXT)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _pdf_text(data: bytes, *, name: str, max_chars: int, max_pages: int) -> DocumentText:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        _unlock(reader)
        page_count = len(reader.pages)
        pieces: list[str] = []
        length = pages_read = 0
        while pages_read < min(page_count, max_pages) and length <= max_chars:
            page = reader.pages[pages_read].extract_text().strip()
            pages_read += 1
            if page:
                pieces.append(page)
                length += len(page) + (len(PAGE_SEPARATOR) if len(pieces) > 1 else 0)
    except (DependencyError, FileNotDecryptedError):
        raise InvalidAttachment(reason=AttachmentProblem.ENCRYPTED) from None
    except NotImplementedError:  # an encryption handler or a stream filter pypdf lacks
        raise InvalidAttachment(reason=AttachmentProblem.UNSUPPORTED) from None
    except _DAMAGED_PDF_ERRORS:
        raise InvalidAttachment(reason=AttachmentProblem.DAMAGED) from None
    text = PAGE_SEPARATOR.join(pieces)
    if not text.strip():
        raise DocumentHasNoText(name=name)
    return DocumentText(
        name,
        MediaType.PDF,
        text[:max_chars],
        is_text_cut=len(text) > max_chars,
        page_count=page_count,
        pages_read=pages_read,
    )


def _unlock(reader: PdfReader) -> None:
    """An encrypted PDF opens only with the empty user password (locked against editing or
    printing, not reading); DependencyError when it is AES and `cryptography` is missing."""
    if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise InvalidAttachment(reason=AttachmentProblem.ENCRYPTED)
