"""An image as a model should get it: decoded, upright, small enough, re-encoded, no metadata.

`normalize_image` feeds Pillow only the format the bytes were sniffed as (core/attachments/
media.py), never Pillow's whole plugin zoo; refuses decompression bombs before it decodes;
turns the camera's EXIF orientation into real rotation; shrinks the long side to `max_side`
(IMAGE_MAX_SIDE), never enlarging; and encodes a fresh file from the pixels alone, so EXIF
(GPS included), XMP, ICC profiles, comments and text chunks stay behind. An animation gives its
first frame.

The output is JPEG (quality 85): every vision model takes it and it is the smallest for photos.
An image whose alpha channel is really used (some pixel not fully opaque) becomes WebP instead,
lossy at the same quality with its alpha kept: JPEG would have to paint the transparent parts a
colour of our choosing, which can hide what is drawn there (black text on nothing turns into
black on black), and PNG would be several times larger. A PNG that merely carries an alpha
channel, all opaque (most screenshots), is a JPEG.

Memory and CPU are bounded: a file whose header claims more than Pillow's own bomb limit
(`PIL.Image.MAX_IMAGE_PIXELS`, about 89 megapixels) is refused whatever its format, and no
more than `max_pixels` (25 megapixels by default, 100 MB as RGBA) are ever decoded. A JPEG is
decoded straight at 1/2, 1/4 or 1/8 of its size when that still covers `max_side` (libjpeg's
DCT scaling), so a 48-megapixel phone photo costs what a 12-megapixel one does. Decoding is CPU
work: from the event loop, use `normalize_image_in_thread`.
"""

from __future__ import annotations

import asyncio
import io
import math
import struct
from dataclasses import dataclass, field
from typing import Final

from PIL import ExifTags, Image

from core.attachments.media import MediaType, sniff_media_type
from core.conversation import AttachmentKind
from core.errors import AttachmentProblem, InvalidAttachment

MAX_DECODED_PIXELS: Final = 25_000_000
JPEG_QUALITY: Final = 85
WEBP_QUALITY: Final = 85
# Downscale in two steps past this ratio (a cheap reduce, then Lanczos): nearly the same
# result as Lanczos alone at a fraction of the CPU.
REDUCING_GAP: Final = 3.0

# The one Pillow plugin each sniffed type may be decoded by.
_PILLOW_FORMAT: Final = {
    MediaType.JPEG: "JPEG",
    MediaType.PNG: "PNG",
    MediaType.GIF: "GIF",
    MediaType.WEBP: "WEBP",
}
# What Pillow raises on damaged input, as its own fuzzing harness lists them, with struct.error
# and IndexError from plugins that read headers by hand. UnidentifiedImageError is an OSError.
_DAMAGED_ERRORS: Final = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)
_BOMB_ERRORS: Final = (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError)
_EIGHT_BITS: Final = 1 / 256
# What undoes each EXIF orientation (EXIF 2.3, tag 0x0112): 1 is upright, 6 a phone held upright.
_ORIENTATION_FIX: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class NormalizedImage:
    data: bytes = field(repr=False)  # a log line names the image, it does not hold it
    media_type: MediaType  # JPEG, or WEBP when the image has transparency
    width: int
    height: int


def normalize_image(
    data: bytes, *, max_side: int, max_pixels: int = MAX_DECODED_PIXELS
) -> NormalizedImage:
    """`data` re-encoded for a model (see the module's docstring); InvalidAttachment when it is
    not an image we read (NOT_AN_IMAGE, UNKNOWN_TYPE, EMPTY), is damaged or truncated
    (DAMAGED), or has too many pixels (TOO_MANY_PIXELS)."""
    if max_side < 1 or max_pixels < 1:
        raise ValueError("max_side and max_pixels must be at least 1")
    media_type = sniff_media_type(data)
    if media_type.kind is not AttachmentKind.IMAGE:
        raise InvalidAttachment(reason=AttachmentProblem.NOT_AN_IMAGE)
    try:
        with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMAT[media_type]]) as opened:
            _refuse_bombs(opened, max_side=max_side, max_pixels=max_pixels)
            opened.load()  # the first frame only
            return _encoded(_shrunk(_eight_bit(_upright(opened)), max_side))
    except _BOMB_ERRORS:
        raise InvalidAttachment(reason=AttachmentProblem.TOO_MANY_PIXELS) from None
    except _DAMAGED_ERRORS:
        raise InvalidAttachment(reason=AttachmentProblem.DAMAGED) from None


async def normalize_image_in_thread(
    data: bytes, *, max_side: int, max_pixels: int = MAX_DECODED_PIXELS
) -> NormalizedImage:
    """`normalize_image` off the event loop (it is CPU work: tens of milliseconds a photo)."""
    return await asyncio.to_thread(normalize_image, data, max_side=max_side, max_pixels=max_pixels)


def _refuse_bombs(image: Image.Image, *, max_side: int, max_pixels: int) -> None:
    """Before decoding: refuse what would take too much memory to decode.

    Pillow itself raises DecompressionBombError at open past twice its limit, and only warns
    between once and twice: past once is refused here too, whatever warnings are set to do.
    A JPEG is first set to decode at the smallest scale that still covers `max_side`."""
    declared = image.width * image.height
    pillow_limit = Image.MAX_IMAGE_PIXELS
    if pillow_limit is not None and declared > pillow_limit:
        raise InvalidAttachment(reason=AttachmentProblem.TOO_MANY_PIXELS)
    long_side = max(image.size)
    if long_side > max_side:
        scale = max_side / long_side
        image.draft(None, (math.ceil(image.width * scale), math.ceil(image.height * scale)))
    if image.width * image.height > max_pixels:
        raise InvalidAttachment(reason=AttachmentProblem.TOO_MANY_PIXELS)


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF Orientation says a viewer shows it.

    Not ImageOps.exif_transpose: that also writes the EXIF back without the tag, which fails on
    some damaged EXIF (a TypeError deep in Pillow), and we drop the EXIF anyway."""
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    method = _ORIENTATION_FIX.get(orientation) if isinstance(orientation, int) else None
    return image.transpose(method) if method is not None else image


def _eight_bit(image: Image.Image) -> Image.Image:
    """16- and 32-bit greyscale (16-bit PNGs) scaled to 8 bits: Pillow's own conversion clips
    everything above 255 to white."""
    if image.mode.startswith("I"):
        return image.convert("I").point(lambda value: value * _EIGHT_BITS).convert("L")
    return image


def _shrunk(image: Image.Image, max_side: int) -> Image.Image:
    """The long side at most `max_side`, the aspect ratio kept, never enlarged; no side below
    one pixel, however thin the image."""
    long_side = max(image.size)
    if long_side <= max_side:
        return image
    scale = max_side / long_side
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)


def _encoded(image: Image.Image) -> NormalizedImage:
    """A new file from the pixels only: nothing of the original's metadata is passed to the
    encoder (and the JPEG encoder would copy a comment from `info`, so that goes too)."""
    if _uses_transparency(image):
        pixels, media_type, quality = image.convert("RGBA"), MediaType.WEBP, WEBP_QUALITY
    else:
        pixels = image.convert("L" if image.mode in ("1", "L", "LA") else "RGB")
        media_type, quality = MediaType.JPEG, JPEG_QUALITY
    pixels.info.clear()
    out = io.BytesIO()
    pixels.save(out, format=_PILLOW_FORMAT[media_type], quality=quality)
    return NormalizedImage(out.getvalue(), media_type, pixels.width, pixels.height)


def _uses_transparency(image: Image.Image) -> bool:
    if not image.has_transparency_data:
        return False
    alpha_counts = image.convert("RGBA").getchannel("A").histogram()
    return any(alpha_counts[:255])  # some pixel less than fully opaque
