"""Sniffing: an attachment's media type comes from its bytes, whatever it is called."""

from __future__ import annotations

import pytest

from core.attachments.media import SNIFF_BYTES, MediaType, check_size, sniff_media_type
from core.conversation import AttachmentKind
from core.errors import AttachmentProblem, FileTooLarge, InvalidAttachment
from tests.attachment_files import (
    ADTS_FRAME,
    MP3_FRAME,
    ebml,
    flac_file,
    image_file,
    iso_bmff,
    ogg_flac,
    ogg_opus,
    ogg_theora,
    ogg_vorbis,
    pdf_file,
    wav_file,
    with_id3,
)

# Each file under the name and claimed type a sender might give it; neither is looked at.
KNOWN_FILES = [
    ("invoice.pdf", "application/pdf", image_file("JPEG"), MediaType.JPEG),
    ("photo.jpg", "image/jpeg", image_file("PNG"), MediaType.PNG),
    ("clip.mp4", "video/mp4", image_file("GIF"), MediaType.GIF),
    ("notes.txt", "text/plain", image_file("WEBP"), MediaType.WEBP),
    ("picture.png", "image/png", pdf_file("Hello"), MediaType.PDF),
    ("song.mp3", "audio/mpeg", ogg_opus(), MediaType.OGG),
    ("voice.opus", "audio/opus", ogg_vorbis(), MediaType.OGG),
    ("data.bin", "application/octet-stream", with_id3(), MediaType.MP3),
    ("cover.jpg", "image/jpeg", with_id3(padding=SNIFF_BYTES), MediaType.MP3),  # a long tag
    ("song.mp3", "audio/mpeg", flac_file(), MediaType.FLAC),
    ("song.ogg", "audio/ogg", with_id3(flac_file()), MediaType.FLAC),
    ("voice.m4a", "audio/mp4", ADTS_FRAME * 2, MediaType.AAC),
    ("voice.wav", "audio/wav", with_id3(ADTS_FRAME * 2), MediaType.AAC),
    ("song.flac", "audio/flac", ogg_flac(), MediaType.OGG),
    ("voice.ogg", "audio/ogg", MP3_FRAME * 3, MediaType.MP3),
    ("movie.webm", "video/webm", iso_bmff(b"M4A ", b"M4A ", b"mp42", b"isom"), MediaType.MP4),
    ("talk.m4a", "audio/mp4", iso_bmff(b"isom", b"isom", b"avc1"), MediaType.MP4),
    ("image.gif", "image/gif", wav_file(), MediaType.WAV),
    ("recording.wav", "audio/wav", ebml(b"webm"), MediaType.WEBM),
    ("photo.jpeg", "image/jpeg", b"plain words\n", MediaType.TEXT),
    ("doc.pdf", "application/pdf", "\ufeffwith a BOM".encode(), MediaType.TEXT),
    ("image.png", "image/png", "ação, 日本語, emoji 🎉".encode(), MediaType.TEXT),
    ("data.json", "application/json", b'{"a": [1, 2]}', MediaType.TEXT),
    ("script.py", "text/x-python", b"print('%PDF-1.4')\n", MediaType.TEXT),
]
UNKNOWN_FILES = [
    ("picture.jpg", "image/jpeg", b"\x00\x01\x02\x03binary"),
    ("notes.txt", "text/plain", "UTF-16 text".encode("utf-16")),  # NUL bytes
    ("notes.txt", "text/plain", "ação em Latin-1".encode("latin-1")),
    ("notes.txt", "text/plain", b"text with a NUL\x00 inside"),
    ("photo.heic", "image/heic", iso_bmff(b"heic", b"mif1", b"heic")),
    ("photo.avif", "image/avif", iso_bmff(b"avif", b"mif1", b"avif")),
    ("movie.mkv", "video/x-matroska", ebml(b"matroska")),
    ("movie.ogv", "video/ogg", ogg_theora()),
    ("song.aac", "audio/aac", ADTS_FRAME[:2] + b"\x7c" + ADTS_FRAME[3:]),  # rate index 15
    ("archive.zip", "application/zip", b"PK\x03\x04" + bytes(26)),
    ("half.ogg", "audio/ogg", ogg_opus()[:20]),
    ("tiny.mp3", "audio/mpeg", b"\xff\xfb"),
]


@pytest.mark.parametrize(
    ("name", "claimed", "data", "expected"), KNOWN_FILES, ids=[f[0] for f in KNOWN_FILES]
)
def test_the_media_type_comes_from_the_bytes_not_the_name_or_claimed_type(
    name: str, claimed: str, data: bytes, expected: MediaType
):
    assert sniff_media_type(data) is expected


@pytest.mark.parametrize(
    ("name", "claimed", "data"),
    UNKNOWN_FILES,
    ids=[f"{f[0]}-{i}" for i, f in enumerate(UNKNOWN_FILES)],
)
def test_bytes_of_no_kind_we_read_are_refused_whatever_they_claim(
    name: str, claimed: str, data: bytes
):
    with pytest.raises(InvalidAttachment) as refused:
        sniff_media_type(data)
    assert refused.value.reason is AttachmentProblem.UNKNOWN_TYPE


def test_no_bytes_at_all_is_said_to_be_empty():
    with pytest.raises(InvalidAttachment) as refused:
        sniff_media_type(b"")
    assert refused.value.reason is AttachmentProblem.EMPTY


@pytest.mark.parametrize(
    ("media_type", "kind"),
    [(MediaType.JPEG, AttachmentKind.IMAGE), (MediaType.PNG, AttachmentKind.IMAGE),
     (MediaType.GIF, AttachmentKind.IMAGE), (MediaType.WEBP, AttachmentKind.IMAGE),
     (MediaType.PDF, AttachmentKind.DOCUMENT), (MediaType.TEXT, AttachmentKind.DOCUMENT),
     (MediaType.OGG, AttachmentKind.AUDIO), (MediaType.MP3, AttachmentKind.AUDIO),
     (MediaType.AAC, AttachmentKind.AUDIO), (MediaType.FLAC, AttachmentKind.AUDIO),
     (MediaType.MP4, AttachmentKind.AUDIO), (MediaType.WAV, AttachmentKind.AUDIO),
     (MediaType.WEBM, AttachmentKind.AUDIO)],
)  # fmt: skip
def test_every_media_type_has_its_kind(media_type: MediaType, kind: AttachmentKind):
    assert media_type.kind is kind


def _text_with_a_character_across(boundary: int) -> bytes:
    """ASCII up to `boundary` - 1, then a 3-byte character that `boundary` cuts in two."""
    return b"a" * (boundary - 1) + "語".encode() + b" and more"


@pytest.mark.parametrize("shift", [-1, 0, 1])
def test_text_longer_than_the_sniffed_bytes_is_text_even_when_they_end_inside_a_character(
    shift: int,
):
    data = _text_with_a_character_across(SNIFF_BYTES + shift)
    assert len(data) > SNIFF_BYTES
    assert sniff_media_type(data) is MediaType.TEXT


@pytest.mark.parametrize(
    ("length", "is_text"), [(SNIFF_BYTES - 1, False), (SNIFF_BYTES, False), (SNIFF_BYTES + 1, True)]
)
def test_a_file_cut_inside_a_character_is_not_text_when_the_cut_is_within_the_sniffed_bytes(
    length: int, is_text: bool
):
    """Past the sniffed bytes the rest is not looked at here: document_text reads it all."""
    data = b"a" * (length - 1) + "語".encode()[:1]
    if is_text:
        assert sniff_media_type(data) is MediaType.TEXT
        return
    with pytest.raises(InvalidAttachment) as refused:
        sniff_media_type(data)
    assert refused.value.reason is AttachmentProblem.UNKNOWN_TYPE


@pytest.mark.parametrize(
    ("size", "is_refused"), [(0, False), (1023, False), (1024, False), (1025, True)]
)
def test_an_attachment_may_have_as_many_bytes_as_the_limit_and_not_one_more(
    size: int, is_refused: bool
):
    if not is_refused:
        check_size(size, limit=1024)
        return
    with pytest.raises(FileTooLarge) as refused:
        check_size(size, limit=1024)
    assert (refused.value.size, refused.value.limit) == (1025, 1024)


@pytest.mark.parametrize(
    ("header", "is_mp3"),
    [
        (b"\xff\xfb\x90\x64", True),  # MPEG-1 layer III, 128 kbit/s, 44.1 kHz
        (b"\xff\xf3\x90\x64", True),  # MPEG-2 layer III
        (b"\xff\xe3\x90\x64", True),  # MPEG-2.5 layer III
        (b"\xff\xeb\x90\x64", False),  # version 01 is reserved
        (b"\xff\xfd\x90\x64", False),  # layer II
        (b"\xff\xfb\x00\x64", False),  # free-format bitrate
        (b"\xff\xfb\xf0\x64", False),  # bitrate index 15 does not exist
        (b"\xff\xfb\x9c\x64", False),  # sample rate index 3 is reserved
        (b"\xff\x1b\x90\x64", False),  # only 8 of the 11 sync bits
    ],
)
def test_an_mp3_without_a_tag_is_told_by_a_frame_header_that_can_exist(header: bytes, is_mp3: bool):
    data = header + bytes(413)
    if is_mp3:
        assert sniff_media_type(data) is MediaType.MP3
        return
    with pytest.raises(InvalidAttachment):
        sniff_media_type(data)
