"""Files a person sent with a message, made into what a turn stores and what the model reads.

Every front (and the HTTP API) hands over the bytes and the name it got; the kind comes from
the bytes (media.py), never from the name or a claimed type:

- an image is re-encoded for the model (images.py) and stored as re-encoded;
- a document's text (documents.py) joins the message as a named block after the person's
  words, and its bytes are stored as received; a PDF without text (a scan) is refused, or with
  PDF_ENGINE=openrouter sent to the model as a file for OpenRouter's OCR, as an image is sent;
- audio is transcribed (OpenRouter's /audio/transcriptions): the transcript becomes the
  person's words, before any they typed, and is shown to them first; the bytes are stored.

At most MAX_FILES_PER_MESSAGE files, each at most MAX_ATTACHMENT_BYTES. Anything refused is
refused before a turn begins: nothing is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from core.attachments.documents import MAX_PDF_PAGES, document_text_in_thread
from core.attachments.images import normalize_image_in_thread
from core.attachments.media import check_size, sniff_media_type
from core.conversation import AttachmentKind, NewAttachment
from core.errors import DocumentHasNoText, TooManyAttachments

MAX_FILES_PER_MESSAGE = 4


class Transcriber(Protocol):
    """What the intake needs of the model client (core.llm.openrouter.OpenRouterClient)."""

    async def transcribe(self, audio: bytes, media_type: str) -> _Spoken: ...


class _Spoken(Protocol):
    @property
    def text(self) -> str: ...


@dataclass(frozen=True)
class IncomingFile:
    """A file as a front received it."""

    data: bytes = field(repr=False)
    name: str


@dataclass(frozen=True)
class IntakeLimits:
    max_file_bytes: int  # MAX_ATTACHMENT_BYTES
    image_max_side: int  # IMAGE_MAX_SIDE
    max_document_chars: int  # MAX_DOCUMENT_CHARS
    # PDF_ENGINE=openrouter: a PDF without text goes to the model as a file, for OpenRouter's
    # parser (OCR), instead of being refused.
    sends_textless_pdfs: bool = False


@dataclass(frozen=True)
class TakenIn:
    """A message with its files: what the turn stores and sends, and what to tell first."""

    text: str  # transcripts, then the typed words, then documents' blocks
    attachments: tuple[NewAttachment, ...]
    transcripts: tuple[str, ...] = ()  # shown to the person first, quoted
    cut_documents: tuple[str, ...] = ()  # names of documents only partly read


class AttachmentIntake:
    def __init__(self, limits: IntakeLimits, transcriber: Transcriber) -> None:
        self.limits = limits
        self._transcriber = transcriber

    async def take_in(self, typed: str, files: Sequence[IncomingFile]) -> TakenIn:
        """`typed` (already held to MAX_MESSAGE_LENGTH) with `files`; raises the first file's
        refusal (InvalidAttachment, FileTooLarge, DocumentHasNoText, TranscriptionFailed, ...)
        or TooManyAttachments, before anything is stored."""
        if len(files) > MAX_FILES_PER_MESSAGE:
            raise TooManyAttachments(count=len(files), limit=MAX_FILES_PER_MESSAGE)
        for file in files:  # all sizes first: refused before any work on the others
            check_size(len(file.data), limit=self.limits.max_file_bytes)
        spoken: list[str] = []
        blocks: list[str] = []
        cut: list[str] = []
        stored: list[NewAttachment] = []
        for file in files:
            media_type = sniff_media_type(file.data)
            kind = media_type.kind
            if kind is AttachmentKind.IMAGE:
                image = await normalize_image_in_thread(
                    file.data, max_side=self.limits.image_max_side
                )
                stored.append(NewAttachment(kind, image.media_type, file.name, image.data))
                continue
            if kind is AttachmentKind.DOCUMENT:
                try:
                    document = await document_text_in_thread(
                        file.data, name=file.name, max_chars=self.limits.max_document_chars,
                        max_pages=MAX_PDF_PAGES,
                    )  # fmt: skip
                except DocumentHasNoText:
                    if not self.limits.sends_textless_pdfs:
                        raise
                    stored.append(
                        NewAttachment(kind, media_type, file.name, file.data, is_read_by_model=True)
                    )
                    continue
                blocks.append(document.block())
                if document.was_cut:
                    cut.append(document.name)
            else:
                spoken.append((await self._transcriber.transcribe(file.data, media_type)).text)
            stored.append(NewAttachment(kind, media_type, file.name, file.data))
        text = "\n\n".join(part for part in (*spoken, typed, *blocks) if part)
        return TakenIn(text, tuple(stored), tuple(spoken), tuple(cut))
