"""Upload decoding: what people really upload becomes uint8 RGB, everything else a one-line ImageError."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from explain.errors import ImageError
from explain.image import ImageLimits, load_image


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def photo(width=64, height=48) -> Image.Image:
    """A smooth gradient with a red top-left block: compresses like a photo, has a landmark."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 128)], -1).astype(np.uint8)
    rgb[:8, :8] = (255, 0, 0)
    return Image.fromarray(rgb)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF"])
def test_common_formats_decode_to_uint8_rgb(fmt):
    out = load_image(encode(photo(), fmt))
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    assert out[2, 2, 0] > 200 and out[2, 2, 1] < 60  # the red landmark survived


def test_exif_rotation_is_honoured():
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    out = load_image(encode(photo(), "JPEG", exif=exif))
    assert out.shape == (64, 48, 3)
    assert out[2, -3, 0] > 200 and out[2, -3, 1] < 60  # top-left block is now top-right


def test_transparency_is_flattened_on_white():
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[:, :5] = (0, 0, 255, 255)  # left half opaque blue, right half fully transparent
    out = load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert tuple(out[5, 1]) == (0, 0, 255) and tuple(out[5, 8]) == (255, 255, 255)


def test_palette_with_transparency_and_grayscale():
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 255, 0] + [0, 0, 0] * 255)
    palette.info["transparency"] = 0
    assert tuple(load_image(encode(palette, "PNG", transparency=0))[0, 0]) == (255, 255, 255)
    gray = load_image(encode(Image.new("L", (5, 4), 77), "PNG"))
    assert gray.shape == (4, 5, 3) and np.all(gray == 77)


def test_sixteen_bit_gray_scales_by_257():
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    out = load_image(encode(Image.fromarray(values), "PNG"))
    assert out[0, :, 0].tolist() == [0, 100, 255] and np.all(out[..., 0] == out[..., 2])


def test_float_tiff_in_unit_range():
    out = load_image(encode(Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F"), "TIFF"))
    assert out[0, :, 1].tolist() == [0, 128, 255]


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (6, 6), colour) for colour in ("red", "blue", "green")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    out = load_image(data)
    assert out.shape == (6, 6, 3) and out[0, 0, 0] > 200 and out[0, 0, 2] < 60


def png_claiming(width: int, height: int) -> bytes:
    """A valid tiny PNG whose header claims width x height (a decompression bomb's header)."""
    data = bytearray(encode(Image.new("1", (1, 1)), "PNG"))
    ihdr = 8 + 8  # signature, then length + b"IHDR"
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4:ihdr + 13]))
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


@pytest.mark.parametrize("data, limits, message", [
    (b"", ImageLimits(), "empty"),
    (b"just some text, not pixels\n", ImageLimits(), "not an image"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", ImageLimits(), "not an image"),
    (encode(photo(), "JPEG")[:300], ImageLimits(), "truncated or corrupt"),
    (encode(photo(), "PNG"), ImageLimits(max_bytes=100), "the limit is"),
    (png_claiming(8000, 6000), ImageLimits(), r"8000x6000 = 48.0 MP; the limit is 40 MP"),
    (png_claiming(30000, 30000), ImageLimits(max_pixels=10**12), "limit|MP"),  # Pillow's own bomb guard
])
def test_bad_uploads_raise_one_line_image_errors(data, limits, message):
    with pytest.raises(ImageError, match=message) as info:
        load_image(data, limits)
    assert "\n" not in str(info.value)


def test_truncated_jpeg_that_opens_fails_on_load():
    data = encode(photo(256, 256), "JPEG", quality=95)
    with pytest.raises(ImageError, match="truncated"):
        load_image(data[: len(data) * 2 // 3])
