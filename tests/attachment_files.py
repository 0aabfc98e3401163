"""Real files of every kind core/attachments reads, made in the test: no binary fixtures.

Images come from Pillow's own encoders, WAV from the standard library's `wave`, PDFs are
written object by object with a correct cross-reference table, and the audio formats without
an encoder here (Ogg, MP3, MP4, WebM) are their real headers built from their specifications:
a sniffer reads no more than that.
"""

from __future__ import annotations

import io
import random
import struct
import wave
import zlib

from PIL import Image
from pypdf import PdfReader, PdfWriter


def image_file(fmt: str, size: tuple[int, int] = (8, 6), mode: str = "RGB") -> bytes:
    """A small image in `fmt` (JPEG, PNG, GIF, WEBP), a left-to-right gradient."""
    image = Image.linear_gradient("L").resize(size).convert(mode)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def wav_file(frames: int = 800) -> bytes:
    """A tenth of a second of 8 kHz mono silence."""
    out = io.BytesIO()
    with wave.open(out, "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes(b"\x00\x00" * frames)
    return out.getvalue()


def _ogg_crc(data: bytes) -> int:
    """Ogg's CRC-32: polynomial 0x04C11DB7, not reflected, initial value 0 (RFC 3533)."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = (crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def ogg_page(packet: bytes) -> bytes:
    """The first page of an Ogg stream (beginning-of-stream flag) carrying one small packet."""
    assert len(packet) < 255
    header = b"OggS" + struct.pack("<BBqIIIB", 0, 0x02, 0, 0x1234, 0, 0, 1) + bytes([len(packet)])
    page = header + packet
    return page[:22] + struct.pack("<I", _ogg_crc(page)) + page[26:]


def ogg_opus() -> bytes:
    """An Ogg Opus stream's identification header (RFC 7845 §5.1): mono, 48 kHz."""
    return ogg_page(b"OpusHead" + struct.pack("<BBHIhB", 1, 1, 312, 48000, 0, 0))


def ogg_vorbis() -> bytes:
    """An Ogg Vorbis stream's identification header (Vorbis I §4.2.2): mono, 44.1 kHz."""
    return ogg_page(b"\x01vorbis" + struct.pack("<IBIiiiBB", 0, 1, 44100, 0, 128000, 0, 0xB8, 1))


def ogg_flac() -> bytes:
    """An Ogg FLAC stream's first packet (the FLAC-to-Ogg mapping): version 1.0, one header
    packet to follow, then the native signature and STREAMINFO."""
    return ogg_page(b"\x7fFLAC\x01\x00\x00\x01" + flac_file()[:42])


def ogg_theora() -> bytes:
    """An Ogg Theora stream's identification header: Ogg, but video, not a codec we take."""
    return ogg_page(b"\x80theora\x03\x02\x01" + bytes(39))


def flac_file() -> bytes:
    """A native FLAC stream: the signature, then STREAMINFO (the last metadata block) of a
    44.1 kHz mono 16-bit stream, then no frames."""
    streaminfo = (
        struct.pack(">HH", 4096, 4096)  # min and max block size
        + bytes(6)  # min and max frame size: unknown
        + (44100 << 44 | 0 << 41 | 15 << 36).to_bytes(8, "big")  # rate, channels-1, bits-1
        + bytes(16)  # MD5 of the audio: none
    )
    return b"fLaC" + bytes([0x80]) + len(streaminfo).to_bytes(3, "big") + streaminfo


# MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, no padding, joint stereo: 417 bytes a frame.
MP3_FRAME = b"\xff\xfb\x90\x64" + bytes(413)
# AAC in ADTS: the same sync bits as MP3, layer bits 00.
ADTS_FRAME = b"\xff\xf1\x50\x80\x02\x1f\xfc" + bytes(9)


def with_id3(audio: bytes = MP3_FRAME * 2, *, padding: int = 0) -> bytes:
    """An ID3v2.4 tag holding a title (TIT2) and `padding` zero bytes, before `audio`: an MP3's
    frames by default."""
    title = b"\x03Song"  # encoding 3: UTF-8
    frame = b"TIT2" + _syncsafe(len(title)) + b"\x00\x00" + title + bytes(padding)
    return b"ID3\x04\x00\x00" + _syncsafe(len(frame)) + frame + audio


def _syncsafe(value: int) -> bytes:
    return bytes((value >> shift) & 0x7F for shift in (21, 14, 7, 0))


def iso_bmff(major_brand: bytes, *compatible: bytes) -> bytes:
    """An ISO BMFF file's `ftyp` box, then an empty `mdat`: MP4, M4A, HEIF and AVIF alike."""
    body = major_brand + b"\x00\x00\x02\x00" + b"".join(compatible)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body + struct.pack(">I", 8) + b"mdat"


def ebml(doc_type: bytes) -> bytes:
    """An EBML header (RFC 8794) with `doc_type` (webm, matroska), then an empty Segment."""
    elements = (
        b"\x42\x86\x81\x01"  # EBMLVersion 1
        b"\x42\xf7\x81\x01"  # EBMLReadVersion 1
        b"\x42\xf2\x81\x04"  # EBMLMaxIDLength 4
        b"\x42\xf3\x81\x08"  # EBMLMaxSizeLength 8
        + b"\x42\x82"
        + bytes([0x80 | len(doc_type)])
        + doc_type
        + b"\x42\x87\x81\x04"  # DocTypeVersion 4
        b"\x42\x85\x81\x02"  # DocTypeReadVersion 2
    )
    return b"\x1a\x45\xdf\xa3" + bytes([0x80 | len(elements)]) + elements + b"\x18\x53\x80\x67\x80"


def pdf_file(
    *pages: str | None,
    image_pages: tuple[int, ...] = (),
    stream_filter: str = "FlateDecode",
    trailer: bytes = b"",
) -> bytes:
    """A valid PDF, one page per item: its text in Helvetica, or None for a page with nothing
    on it. Pages whose index is in `image_pages` draw a picture (a scan has nothing else).
    `stream_filter` names the pages' compression, `trailer` adds entries to the trailer."""
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        4: b"<< /Type /XObject /Subtype /Image /Width 2 /Height 2 /ColorSpace /DeviceGray "
        b"/BitsPerComponent 8 /Length 4 >>\nstream\n\x00\xff\xff\x00\nendstream",
    }
    kids = []
    for index, text in enumerate(pages):
        page, content = 5 + 2 * index, 6 + 2 * index
        kids.append(f"{page} 0 R")
        drawing = b""
        if text is not None:
            drawing += b"BT /F1 12 Tf 72 720 Td " + _pdf_string(text) + b" Tj ET\n"
        if index in image_pages:
            drawing += b"q 200 0 0 200 72 400 cm /Im1 Do Q\n"
        objects[page] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> /XObject << /Im1 4 0 R >> >> "
            + f"/Contents {content} 0 R >>".encode()
        )
        objects[content] = _pdf_stream(drawing, stream_filter)
    objects[2] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(pages)} >>".encode()
    return _pdf_with_xref(objects, trailer)


def _pdf_string(text: str) -> bytes:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("cp1252") + b")"


def _pdf_stream(data: bytes, stream_filter: str) -> bytes:
    packed = zlib.compress(data)
    return (
        f"<< /Length {len(packed)} /Filter /{stream_filter} >>\nstream\n".encode()
        + packed
        + b"\nendstream"
    )


def _pdf_with_xref(objects: dict[int, bytes], trailer: bytes) -> bytes:
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += f"{number} 0 obj\n".encode() + objects[number] + b"\nendobj\n"
    xref_at = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for number in sorted(objects):
        out += f"{offsets[number]:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R ".encode() + trailer + b" >>\n"
    out += f"startxref\n{xref_at}\n%%EOF\n".encode()
    return bytes(out)


def encrypted_pdf(text: str, *, user_password: str) -> bytes:
    """A one-page PDF encrypted by pypdf (RC4, 128 bits): with an empty user password anyone
    may open it (only editing is locked), with another only who knows it."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_file(text))))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def damaged_copies(data: bytes, *, count: int, seed: int) -> list[bytes]:
    """`count` copies of `data`, each damaged a few times over: bytes changed, cut out,
    inserted, or the end cut off. Seeded: the same copies on every run."""
    rng = random.Random(seed)
    copies = []
    for _ in range(count):
        copy = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            if len(copy) < 2:
                break
            at, kind = rng.randrange(len(copy)), rng.random()
            if kind < 0.5:
                copy[at] = rng.randrange(256)
            elif kind < 0.7:
                del copy[at : at + rng.randint(1, 50)]
            elif kind < 0.85:
                copy[at:at] = rng.randbytes(rng.randint(1, 20))
            elif at > 8:
                del copy[at:]
        copies.append(bytes(copy))
    return copies
