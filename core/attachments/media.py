"""What an attachment is, told by its first bytes: never by its name or the type it claims.

A name ("photo.jpg") and a claimed type (Telegram's mime_type, the HTTP API's mediaType) are
whatever the sender says; the bytes are what a decoder will actually be fed. So every path in
takes the media type from `sniff_media_type`, and a file that is none of the kinds below is
refused before any decoder sees it.

    kind      media types
    image     image/jpeg, image/png, image/gif, image/webp
    document  application/pdf, text/plain (valid UTF-8 without NUL bytes, in the first 4 KiB)
    audio     audio/ogg (Opus, Vorbis, FLAC), audio/mpeg (an MPEG-1/2 Layer III frame),
              audio/aac (ADTS), audio/flac, audio/mp4 (an ISO BMFF `ftyp` of an MP4 or M4A
              brand), audio/wav, audio/webm: what OpenRouter's transcription takes

An ID3v2 tag is looked past to the audio it precedes (MP3, and sometimes AAC or FLAC); a tag
longer than the sniffed bytes (cover art) leaves MP3, by far the most common.
"""

from __future__ import annotations

import codecs
from enum import StrEnum
from typing import Final

from core.conversation import AttachmentKind
from core.errors import AttachmentProblem, FileTooLarge, InvalidAttachment

# Enough for every signature below and for a fair look at whether a file is text.
SNIFF_BYTES: Final = 4096


class MediaType(StrEnum):
    JPEG = "image/jpeg"
    PNG = "image/png"
    GIF = "image/gif"
    WEBP = "image/webp"
    PDF = "application/pdf"
    TEXT = "text/plain"
    OGG = "audio/ogg"
    MP3 = "audio/mpeg"
    AAC = "audio/aac"
    FLAC = "audio/flac"
    MP4 = "audio/mp4"
    WAV = "audio/wav"
    WEBM = "audio/webm"

    @property
    def kind(self) -> AttachmentKind:
        return _KIND_OF[self]


_KIND_OF: Final = {
    MediaType.JPEG: AttachmentKind.IMAGE,
    MediaType.PNG: AttachmentKind.IMAGE,
    MediaType.GIF: AttachmentKind.IMAGE,
    MediaType.WEBP: AttachmentKind.IMAGE,
    MediaType.PDF: AttachmentKind.DOCUMENT,
    MediaType.TEXT: AttachmentKind.DOCUMENT,
    MediaType.OGG: AttachmentKind.AUDIO,
    MediaType.MP3: AttachmentKind.AUDIO,
    MediaType.AAC: AttachmentKind.AUDIO,
    MediaType.FLAC: AttachmentKind.AUDIO,
    MediaType.MP4: AttachmentKind.AUDIO,
    MediaType.WAV: AttachmentKind.AUDIO,
    MediaType.WEBM: AttachmentKind.AUDIO,
}

# Signatures that sit at offset 0 and say it all.
_PREFIXES: Final = (
    (b"\xff\xd8\xff", MediaType.JPEG),
    (b"\x89PNG\r\n\x1a\n", MediaType.PNG),
    (b"GIF87a", MediaType.GIF),
    (b"GIF89a", MediaType.GIF),
    # PDF readers tolerate junk before the header; we do not, so a text file that quotes
    # "%PDF-" further down stays text (as in the WHATWG MIME sniffing standard).
    (b"%PDF-", MediaType.PDF),
    (b"fLaC", MediaType.FLAC),
)
# ISO BMFF major brands of MP4/M4A audio (and of video, whose sound track a transcription
# reads). HEIF and AVIF are ISO BMFF too (mif1, heic, avif): images we do not decode, so an
# unlisted brand is unknown, not audio.
_MP4_BRANDS: Final = frozenset(
    {
        b"M4A ", b"M4B ", b"M4P ", b"M4V ", b"mp41", b"mp42", b"mp71", b"isom", b"iso2",
        b"iso3", b"iso4", b"iso5", b"iso6", b"avc1", b"dash", b"3gp4", b"3gp5", b"3gp6",
        b"3g2a", b"MSNV", b"F4A ", b"F4V ",
    }
)  # fmt: skip
_OGG_CODECS: Final = (b"OpusHead", b"\x01vorbis", b"\x7fFLAC")
_ID3_MAGIC: Final = b"ID3"
_ID3_HEADER_BYTES: Final = 10
_ID3_HAS_FOOTER: Final = 0x10
_EBML_MAGIC: Final = b"\x1a\x45\xdf\xa3"
_EBML_DOCTYPE_ID: Final = b"\x42\x82"
_MP3_LAYER_III: Final = 0b01
_MP3_RESERVED_VERSION: Final = 0b01
_ADTS_SAMPLE_RATES: Final = 13  # indexes 13 to 15 are reserved


def sniff_media_type(data: bytes) -> MediaType:
    """The media type of `data`, from its first bytes; InvalidAttachment when it is none we
    read (EMPTY, UNKNOWN_TYPE)."""
    if not data:
        raise InvalidAttachment(reason=AttachmentProblem.EMPTY)
    head = data[:SNIFF_BYTES]
    for prefix, media_type in _PREFIXES:
        if head.startswith(prefix):
            return media_type
    if head.startswith(_ID3_MAGIC):
        return _tagged_audio_type(head)
    found = _container_type(head) or _audio_frame_type(head)
    if found is not None:
        return found
    if _looks_like_text(head, is_whole=len(data) <= SNIFF_BYTES):
        return MediaType.TEXT
    raise InvalidAttachment(reason=AttachmentProblem.UNKNOWN_TYPE)


def check_size(size: int, *, limit: int) -> None:
    """FileTooLarge past `limit` bytes (MAX_ATTACHMENT_BYTES); `limit` itself is fine.

    Takes a size, not bytes, so a front can refuse a file by the size its platform announces
    before downloading it."""
    if size > limit:
        raise FileTooLarge(size=size, limit=limit)


def _container_type(head: bytes) -> MediaType | None:
    """RIFF (WAV, WebP), ISO BMFF (MP4, M4A), Ogg and EBML (WebM): a container's signature,
    then what the container says it carries."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return MediaType.WAV
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return MediaType.WEBP
    if head[4:8] == b"ftyp" and head[8:12] in _MP4_BRANDS:
        return MediaType.MP4
    if head[:4] == b"OggS" and _ogg_codec_is_read(head):
        return MediaType.OGG
    if head[:4] == _EBML_MAGIC and _ebml_doctype(head) == b"webm":
        return MediaType.WEBM
    return None


def _ogg_codec_is_read(head: bytes) -> bool:
    """The first Ogg page's packet names its codec: Opus and Vorbis, not Theora video or FLAC.

    The page header is 27 bytes, then one byte per segment (count at offset 26), then data."""
    if len(head) < 27:
        return False
    return head[27 + head[26] :].startswith(_OGG_CODECS)


def _ebml_doctype(head: bytes) -> bytes | None:
    """The DocType of an EBML header: `webm`, or `matroska` for the files we do not take."""
    at = head.find(_EBML_DOCTYPE_ID, len(_EBML_MAGIC), 64)
    if at < 0 or at + 2 >= len(head):
        return None
    length, width = _ebml_size(head, at + 2)
    start = at + 2 + width
    return head[start : start + length] if width else None


def _ebml_size(head: bytes, at: int) -> tuple[int, int]:
    """An EBML variable-size integer at `at`: (its value, its width in bytes), or (0, 0)."""
    first = head[at]
    width = 9 - first.bit_length()  # the leading zero bits say how many bytes follow
    if first == 0 or at + width > len(head):
        return 0, 0
    value = first & (0xFF >> width)
    for byte in head[at + 1 : at + width]:
        value = value << 8 | byte
    return value, width


def _tagged_audio_type(head: bytes) -> MediaType:
    """What follows an ID3v2 tag: its size is four 7-bit bytes, then a footer if flagged."""
    if len(head) < _ID3_HEADER_BYTES:
        return MediaType.MP3
    size = 0
    for byte in head[6:10]:
        size = size << 7 | byte & 0x7F
    if head[5] & _ID3_HAS_FOOTER:
        size += _ID3_HEADER_BYTES
    after = head[_ID3_HEADER_BYTES + size :]
    if after.startswith(b"fLaC"):
        return MediaType.FLAC
    return _audio_frame_type(after) or MediaType.MP3


def _audio_frame_type(head: bytes) -> MediaType | None:
    """Audio without a container starts with a frame header: 12 sync bits, then fields whose
    values must exist. Layer bits 01 are MP3 (MPEG layer III), 00 are AAC in ADTS."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return None
    layer = head[1] >> 1 & 0b11
    if layer == _MP3_LAYER_III and _is_mp3_frame(head):
        return MediaType.MP3
    if layer == 0 and head[1] & 0xF0 == 0xF0 and head[2] >> 2 & 0xF < _ADTS_SAMPLE_RATES:
        return MediaType.AAC
    return None


def _is_mp3_frame(head: bytes) -> bool:
    """A version, a bitrate and a sample rate that exist (not free-format, not reserved)."""
    version = head[1] >> 3 & 0b11
    bitrate, sample_rate = head[2] >> 4, head[2] >> 2 & 0b11
    return version != _MP3_RESERVED_VERSION and bitrate not in (0, 0b1111) and sample_rate != 0b11


def _looks_like_text(head: bytes, *, is_whole: bool) -> bool:
    """Valid UTF-8 (a BOM allowed) without NUL bytes. `head` may end inside a character when
    it is not the whole file, so that end is not held against it."""
    if b"\x00" in head:
        return False
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    try:
        decoder.decode(head, final=is_whole)
    except UnicodeDecodeError:
        return False
    return True
