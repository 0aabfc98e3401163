"""Images for a model: upright, shrunk, re-encoded without metadata; bombs and damage refused."""

from __future__ import annotations

import contextlib
import io
import struct
import time
import zlib

import pytest
from PIL import ExifTags, Image, ImageCms, PngImagePlugin

from core.attachments.images import (
    MAX_DECODED_PIXELS,
    NormalizedImage,
    normalize_image,
    normalize_image_in_thread,
)
from core.attachments.media import MediaType
from core.errors import AttachmentProblem, InvalidAttachment
from tests.attachment_files import damaged_copies, image_file, pdf_file, wav_file

RED, BLUE = (255, 0, 0), (0, 0, 255)
# Generous: a bomb is refused from its header, in well under a millisecond.
QUICKLY_SECONDS = 1.0


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def reopened(result: NormalizedImage) -> Image.Image:
    image = Image.open(io.BytesIO(result.data))
    assert image.format == {MediaType.JPEG: "JPEG", MediaType.WEBP: "WEBP"}[result.media_type]
    assert image.size == (result.width, result.height)
    image.load()
    return image


def refusal(data: bytes, **limits: int) -> AttachmentProblem:
    with pytest.raises(InvalidAttachment) as refused:
        normalize_image(data, **{"max_side": 1568, **limits})
    return refused.value.reason


def close_to(pixel: tuple[int, ...], colour: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=False))


def photo_with_orientation_and_location() -> bytes:
    """A 60x30 JPEG as a phone writes it: stored sideways with EXIF Orientation 6 (turn 90°
    clockwise to view), GPS coordinates, a camera model, a comment and an ICC profile. Its
    stored top-left quarter is red, the rest blue."""
    image = Image.new("RGB", (60, 30), BLUE)
    image.paste(RED, (0, 0, 30, 15))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.Model] = "Phone 15"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "S"
    gps[ExifTags.GPS.GPSLatitude] = (23.0, 33.0, 1.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "W"
    gps[ExifTags.GPS.GPSLongitude] = (46.0, 38.0, 2.0)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return encode(image, "JPEG", exif=exif, comment=b"at home", icc_profile=srgb, quality=95)


def test_a_photo_is_turned_upright_by_its_exif_orientation():
    result = normalize_image(photo_with_orientation_and_location(), max_side=1568)
    image = reopened(result)
    assert (result.width, result.height) == (30, 60)  # turned: portrait now
    assert result.media_type is MediaType.JPEG
    assert close_to(image.getpixel((22, 7)), RED)  # the red corner is now top right
    assert close_to(image.getpixel((7, 7)), BLUE)
    assert close_to(image.getpixel((7, 52)), BLUE)


def test_a_photo_whose_exif_is_damaged_is_still_turned_upright():
    """A GPS entry renumbered as a text tag (GPSDestDistanceRef) still holding three numbers:
    Pillow reads it, but cannot write it back (ImageOps.exif_transpose would raise)."""
    longitude = b"\x00\x04\x00\x05\x00\x00\x00\x03"  # tag 4, RATIONAL, 3 values (big-endian)
    photo = photo_with_orientation_and_location()
    assert photo.count(longitude) == 1
    damaged = photo.replace(longitude, b"\x00\x19" + longitude[2:])
    result = normalize_image(damaged, max_side=1568)
    assert (result.width, result.height) == (30, 60)
    assert not reopened(result).getexif()


def test_a_photos_location_camera_comment_and_profile_are_gone():
    original = Image.open(io.BytesIO(photo_with_orientation_and_location()))
    assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # it had them
    assert {"exif", "comment", "icc_profile"} <= original.info.keys()
    image = reopened(normalize_image(photo_with_orientation_and_location(), max_side=1568))
    assert not image.getexif()
    assert not image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert not {"exif", "comment", "icc_profile", "xmp"} & image.info.keys()


def test_a_pngs_text_chunks_are_gone():
    chunks = PngImagePlugin.PngInfo()
    chunks.add_text("Author", "Ana Souza")
    chunks.add_text("Comment", "my address is …")
    data = encode(Image.new("RGB", (8, 8), RED), "PNG", pnginfo=chunks)
    result = normalize_image(data, max_side=1568)
    assert b"Ana Souza" not in result.data
    assert "Author" not in reopened(result).info


def test_a_png_whose_alpha_is_used_becomes_a_webp_that_keeps_it():
    image = Image.new("RGBA", (40, 20), (*RED, 255))
    image.paste((0, 0, 0, 0), (20, 0, 40, 20))  # the right half transparent
    result = normalize_image(encode(image, "PNG"), max_side=1568)
    assert result.media_type is MediaType.WEBP
    out = reopened(result).convert("RGBA")
    assert out.getpixel((35, 10))[3] == 0
    assert out.getpixel((5, 10))[3] == 255
    assert close_to(out.getpixel((5, 10))[:3], RED)


def test_a_png_with_an_alpha_channel_all_opaque_becomes_a_jpeg():
    result = normalize_image(encode(Image.new("RGBA", (16, 16), (*RED, 255)), "PNG"), max_side=64)
    assert result.media_type is MediaType.JPEG
    assert reopened(result).mode == "RGB"


def test_a_gif_with_a_transparent_colour_becomes_a_webp():
    image = Image.new("P", (10, 10), 1)
    image.putpalette([0, 0, 0, *RED] + [0] * 762)
    image.paste(0, (0, 0, 5, 10))
    result = normalize_image(encode(image, "GIF", transparency=0), max_side=64)
    assert result.media_type is MediaType.WEBP
    assert reopened(result).convert("RGBA").getpixel((2, 5))[3] == 0


def test_a_greyscale_image_stays_greyscale_and_a_cmyk_one_becomes_rgb():
    grey = normalize_image(image_file("PNG", mode="L"), max_side=64)
    assert reopened(grey).mode == "L"
    cmyk = normalize_image(encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"), max_side=64)
    assert reopened(cmyk).mode == "RGB"
    assert close_to(reopened(cmyk).getpixel((4, 4)), RED, tolerance=60)


def test_a_16_bit_greyscale_png_is_scaled_to_8_bits_not_clipped_to_white():
    image = Image.new("I;16", (4, 4), 32768)  # mid grey in 16 bits
    result = normalize_image(encode(image, "PNG"), max_side=64)
    (grey,) = {reopened(result).getpixel((x, y)) for x in range(4) for y in range(4)}
    assert 120 <= grey <= 136


def test_an_animation_gives_its_first_frame():
    frames = [Image.new("RGB", (12, 12), colour) for colour in (RED, BLUE, (0, 255, 0))]
    for fmt in ("GIF", "WEBP"):
        data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)
        assert Image.open(io.BytesIO(data)).n_frames == 3
        result = normalize_image(data, max_side=64)
        assert close_to(reopened(result).getpixel((6, 6)), RED), fmt


def test_a_one_pixel_image_stays_one_pixel():
    result = normalize_image(encode(Image.new("RGB", (1, 1), RED), "PNG"), max_side=1568)
    assert (result.width, result.height) == (1, 1)
    assert close_to(reopened(result).getpixel((0, 0)), RED)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((99, 50), (99, 50)),  # below max_side: as it was
        ((100, 50), (100, 50)),  # at max_side: as it was
        ((101, 50), (100, 50)),  # above: the long side brought to max_side
        ((50, 101), (50, 100)),  # portrait alike
        ((400, 300), (100, 75)),
        ((10, 10), (10, 10)),  # never enlarged
        ((5000, 1), (100, 1)),  # however thin, never below one pixel
    ],
)
def test_the_long_side_is_brought_to_max_side_never_above_and_never_enlarged(
    size: tuple[int, int], expected: tuple[int, int]
):
    for fmt in ("PNG", "JPEG"):
        result = normalize_image(image_file(fmt, size=size), max_side=100)
        assert (result.width, result.height) == expected, fmt
        reopened(result)


@pytest.mark.parametrize(("max_pixels", "is_refused"), [(99, True), (100, False), (101, False)])
def test_an_image_may_have_as_many_pixels_as_the_cap_and_not_one_more(
    max_pixels: int, is_refused: bool
):
    data = image_file("PNG", size=(10, 10))
    if is_refused:
        assert refusal(data, max_pixels=max_pixels) is AttachmentProblem.TOO_MANY_PIXELS
    else:
        assert normalize_image(data, max_side=1568, max_pixels=max_pixels).width == 10


def test_a_large_jpeg_is_decoded_at_a_smaller_scale_within_the_cap():
    """800x600 = 480,000 pixels: over a cap of 200,000 at full size, yet a long side of 300
    needs only half of it (400x300 = 120,000), which is what libjpeg decodes."""
    data = image_file("JPEG", size=(800, 600))
    result = normalize_image(data, max_side=300, max_pixels=200_000)
    assert (result.width, result.height) == (300, 225)
    assert refusal(data, max_side=800, max_pixels=200_000) is AttachmentProblem.TOO_MANY_PIXELS


def test_the_default_pixel_cap_fits_a_48_megapixel_photo_but_not_a_100_megapixel_one():
    assert 8000 * 6000 // 4 <= MAX_DECODED_PIXELS < 10_000 * 10_000


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` pixels, followed by next to no data: what a
    decompression bomb's first bytes look like."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header (SOF0) is made to claim `width` x `height`."""
    data = bytearray(image_file("JPEG", size=(16, 16)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


BOMBS = [
    ("png past twice Pillow's limit", png_claiming(100_000, 100_000)),
    ("png between once and twice Pillow's limit", png_claiming(10_000, 10_000)),
    ("png past the cap only", png_claiming(6_000, 5_000)),
    ("jpeg past twice Pillow's limit", jpeg_claiming(65_000, 65_000)),
    ("jpeg between once and twice Pillow's limit", jpeg_claiming(10_000, 10_000)),
]


@pytest.mark.parametrize("data", [bomb for _, bomb in BOMBS], ids=[name for name, _ in BOMBS])
def test_a_decompression_bomb_is_refused_quickly_from_its_header(data: bytes):
    started = time.monotonic()
    assert refusal(data) is AttachmentProblem.TOO_MANY_PIXELS
    assert time.monotonic() - started < QUICKLY_SECONDS


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("data", [bomb for _, bomb in BOMBS], ids=[name for name, _ in BOMBS])
def test_a_decompression_bomb_is_refused_where_pillow_only_warns(data: bytes):
    """As in production, where Pillow's DecompressionBombWarning is not an error."""
    assert refusal(data) is AttachmentProblem.TOO_MANY_PIXELS


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_a_truncated_image_is_damaged(fmt: str):
    data = image_file(fmt, size=(64, 64))
    for cut in (40, len(data) // 2, len(data) * 3 // 4):  # each cuts into the pixels
        assert refusal(data[:cut]) is AttachmentProblem.DAMAGED, cut


# Pillow warns of damaged EXIF it reads past ("Truncated File Read"): a warning in production,
# an error under this suite's filterwarnings.
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_damaged_image_is_read_or_refused_never_a_crash():
    frames = [Image.new("RGB", (12, 12), colour) for colour in (RED, BLUE)]
    originals = [
        photo_with_orientation_and_location(),
        encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        encode(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        image_file("PNG", size=(20, 20), mode="I;16"),
        image_file("PNG", size=(30, 30), mode="P"),
    ]
    for seed, original in enumerate(originals):
        for data in damaged_copies(original, count=200, seed=seed):
            with contextlib.suppress(InvalidAttachment):
                normalize_image(data, max_side=32)


def test_a_known_signature_over_garbage_is_damaged():
    assert refusal(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4) is AttachmentProblem.DAMAGED
    assert refusal(b"\xff\xd8\xff" + bytes(200)) is AttachmentProblem.DAMAGED


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (pdf_file("Hello"), AttachmentProblem.NOT_AN_IMAGE),
        (wav_file(), AttachmentProblem.NOT_AN_IMAGE),
        (b"just some text", AttachmentProblem.NOT_AN_IMAGE),
        (b"\x00\x01binary", AttachmentProblem.UNKNOWN_TYPE),
        (b"", AttachmentProblem.EMPTY),
    ],
    ids=["pdf", "wav", "text", "unknown", "empty"],
)
def test_what_is_not_an_image_is_refused_before_pillow_sees_it(
    data: bytes, reason: AttachmentProblem
):
    assert refusal(data) is reason


def test_limits_below_one_are_a_programming_error():
    with pytest.raises(ValueError, match="at least 1"):
        normalize_image(image_file("PNG"), max_side=0)


async def test_the_async_wrapper_gives_the_same_image():
    data = image_file("PNG", size=(300, 200))
    assert await normalize_image_in_thread(data, max_side=150) == normalize_image(
        data, max_side=150
    )
