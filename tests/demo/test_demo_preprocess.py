"""Upload hazards (docs/reliability.md): each gives a correct RGB image or one clear InputError."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from hitts_demo.preprocess import ImageLimits, InputError, load_image, to_rgb

EXIF_ORIENTATION = 0x0112
ROTATE_90_CW = 6  # EXIF orientation 6: the stored image must be rotated 90 degrees clockwise to be upright


def png_bytes(im: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_declaring(width: int, height: int) -> bytes:
    """A few hundred bytes whose header declares a width x height 8-bit RGB PNG (no real pixel data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def halves(width: int = 40, height: int = 20) -> Image.Image:
    """Left half red, right half blue."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:, : width // 2] = (255, 0, 0)
    arr[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(arr)


def test_plain_rgb_png_round_trips():
    arr = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    loaded = load_image(png_bytes(Image.fromarray(arr)))
    assert loaded.rgb.dtype == np.uint8 and loaded.rgb.shape == (17, 23, 3)
    np.testing.assert_array_equal(loaded.rgb, arr)
    assert loaded.format == "PNG" and loaded.notes == []


def test_byte_cap_is_checked_before_decoding(tmp_path):
    data = png_bytes(Image.new("RGB", (64, 64)))
    limits = ImageLimits(max_bytes=len(data) - 1)
    with pytest.raises(InputError, match="limit"):
        load_image(data, limits)
    path = tmp_path / "big.png"
    path.write_bytes(data)
    with pytest.raises(InputError, match="limit"):
        load_image(path, limits)


def test_small_file_declaring_huge_image_is_refused_from_its_header(monkeypatch):
    data = png_declaring(100_000, 100_000)  # 10 gigapixels in 200 bytes
    assert len(data) < 500
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size))
    with pytest.raises(InputError, match="megapixels"):
        load_image(data)
    assert decoded == []  # refused from the header: no pixel was decoded


def test_decompression_bomb_warning_is_an_error():
    # 100 MP is over Pillow's warning threshold (about 89.5 MP); our own cap is raised so Pillow's fires.
    limits = ImageLimits(max_pixels=10**10)
    with pytest.raises(InputError, match="decoded safely"):
        load_image(png_declaring(10_000, 10_000), limits)


def test_pixel_cap_applies_to_real_images():
    with pytest.raises(InputError, match="megapixels"):
        load_image(png_bytes(Image.new("RGB", (20, 20))), ImageLimits(max_pixels=399))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(fmt):
    buf = io.BytesIO()
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, format=fmt)
    data = buf.getvalue()
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_image(data[: len(data) // 2])


def test_empty_file(tmp_path):
    with pytest.raises(InputError, match="empty"):
        load_image(b"")
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_image(path)


def test_random_bytes():
    with pytest.raises(InputError, match="not an image"):
        load_image(np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def test_text_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is a text file, not a picture\n" * 20)
    with pytest.raises(InputError, match="not an image in a supported format"):
        load_image(path)


def test_unsupported_format_is_refused():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PPM")
    with pytest.raises(InputError, match="not an image"):
        load_image(buf.getvalue())


def test_no_image():
    with pytest.raises(InputError, match="no image"):
        load_image(None)


def test_missing_path():
    with pytest.raises(InputError, match="could not be found"):
        load_image("/nonexistent/upload.png")


def test_exif_rotation_gives_the_upright_image():
    """Stored 40x20 (red left, blue right) with orientation 6 -> upright 20 wide x 40 tall, red on top."""
    im = halves(40, 20)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = ROTATE_90_CW
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    loaded = load_image(buf.getvalue())
    assert loaded.rgb.shape == (40, 20, 3)
    top, bottom = loaded.rgb[5, 10].astype(int), loaded.rgb[35, 10].astype(int)
    assert top[0] > 200 and top[2] < 60  # red
    assert bottom[2] > 200 and bottom[0] < 60  # blue
    assert any("EXIF orientation 6" in n for n in loaded.notes)


def test_cmyk_jpeg():
    im = Image.new("CMYK", (16, 8), (0, 255, 255, 0))  # pure red in CMYK
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=95)
    loaded = load_image(buf.getvalue())
    assert loaded.rgb.shape == (8, 16, 3) and loaded.mode == "CMYK"
    r, g, b = loaded.rgb[4, 8].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_16bit_greyscale_is_scaled_to_8bit():
    """65535 -> 255, 257 -> 1, 0 -> 0: the 16-bit range maps onto the 8-bit range (divide by 257)."""
    values = np.array([[0, 257, 32896, 65535]], np.uint16)
    loaded = load_image(png_bytes(Image.fromarray(values)))
    assert loaded.mode.startswith("I")
    np.testing.assert_array_equal(loaded.rgb[0, :, 0], [0, 1, 128, 255])
    assert (loaded.rgb[..., 0] == loaded.rgb[..., 1]).all() and (
        loaded.rgb[..., 1] == loaded.rgb[..., 2]
    ).all()


def test_float_and_int32_modes():
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    np.testing.assert_array_equal(to_rgb(f).getchannel(0).getdata(), [0, 128, 255])
    wide = Image.fromarray(np.array([[-100, 0, 100]], np.int32))  # outside 0..65535: stretched
    np.testing.assert_array_equal(to_rgb(wide).getchannel(0).getdata(), [0, 128, 255])


def test_palette_with_transparency_goes_over_white():
    im = Image.new("P", (4, 2))
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    im.putpixel((0, 0), 1)
    loaded = load_image(png_bytes(im, transparency=0))  # index 0 (red) is transparent
    np.testing.assert_array_equal(loaded.rgb[0, 0], [0, 255, 0])
    np.testing.assert_array_equal(loaded.rgb[1, 1], [255, 255, 255])


def test_la_and_rgba():
    la = Image.fromarray(
        np.stack([np.full((2, 2), 50, np.uint8), np.array([[255, 0], [255, 0]], np.uint8)], -1), "LA"
    )
    rgb = load_image(png_bytes(la)).rgb
    np.testing.assert_array_equal(rgb[0, 0], [50, 50, 50])
    np.testing.assert_array_equal(rgb[0, 1], [255, 255, 255])
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)
    rgba[0, 1] = (200, 0, 0, 128)
    out = load_image(png_bytes(Image.fromarray(rgba, "RGBA"))).rgb
    np.testing.assert_array_equal(out[0, 0], [10, 20, 30])
    np.testing.assert_array_equal(out[1, 1], [255, 255, 255])  # fully transparent -> white
    assert abs(int(out[0, 1, 0]) - 228) <= 1 and abs(int(out[0, 1, 1]) - 127) <= 1  # half red over white


def test_greyscale_and_one_bit():
    grey = load_image(png_bytes(Image.new("L", (3, 3), 77))).rgb
    assert grey.shape == (3, 3, 3) and (grey == 77).all()
    bits = load_image(png_bytes(Image.new("1", (3, 3), 1))).rgb
    assert (bits == 255).all()


def _animated(fmt: str, frames: int) -> bytes:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    ims = [Image.new("RGB", (32, 16), colours[i % 3]) for i in range(frames)]
    buf = io.BytesIO()
    ims[0].save(buf, format=fmt, save_all=True, append_images=ims[1:], duration=40, loop=0)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animation_gives_first_frame_only(fmt):
    loaded = load_image(_animated(fmt, 3))
    r, g, b = loaded.rgb[8, 16].astype(int)
    assert r > 200 and g < 60 and b < 60
    assert any("first frame" in n for n in loaded.notes)


def test_long_animation_is_not_decoded_whole(monkeypatch):
    """Of a 600-frame GIF only the first frames are visited (frame 1 at most, to learn that it is
    animated), never the 600."""
    from PIL import GifImagePlugin

    visited = []
    real_seek = GifImagePlugin.GifImageFile._seek  # what seek, n_frames and is_animated all go through

    def spy_seek(self, frame, *args, **kwargs):
        visited.append(frame)
        return real_seek(self, frame, *args, **kwargs)

    monkeypatch.setattr(GifImagePlugin.GifImageFile, "_seek", spy_seek)
    loaded = load_image(_animated("GIF", 600))
    assert loaded.rgb.shape == (16, 32, 3)
    assert max(visited, default=0) <= 1


@pytest.mark.parametrize(
    ("size", "expected"), [((5000, 1), (1, 1600)), ((1, 5000), (1600, 1)), ((3000, 1000), (533, 1600))]
)
def test_extreme_aspect_ratios_and_downscaling(size, expected):
    loaded = load_image(png_bytes(Image.new("RGB", size, (9, 99, 199))))
    assert loaded.rgb.shape[:2] == expected
    assert (loaded.rgb == (9, 99, 199)).all()
    assert any("downscaled" in n for n in loaded.notes)


def test_one_pixel_image():
    loaded = load_image(png_bytes(Image.new("RGB", (1, 1), (1, 2, 3))))
    np.testing.assert_array_equal(loaded.rgb, [[[1, 2, 3]]])


def test_large_jpeg_is_drafted_and_downscaled(monkeypatch):
    """A 6000x4000 JPEG is decoded at the smallest DCT scale still >= the 1600-pixel cap (1/2:
    3000x2000, a quarter of the pixels), never at full size, then resized to the cap."""
    decoded_sizes = []
    original_load = ImageFile.ImageFile.load

    def spy_load(self):
        decoded_sizes.append(self.size)
        return original_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    buf = io.BytesIO()
    Image.new("RGB", (6000, 4000), (120, 60, 30)).save(buf, format="JPEG", quality=80)
    loaded = load_image(buf.getvalue())
    assert decoded_sizes and set(decoded_sizes) == {(3000, 2000)}
    assert loaded.rgb.shape[:2] == (1067, 1600)


def test_arrays_and_pil_images_are_accepted():
    arr = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    out = load_image(arr).rgb
    assert out.shape == (3, 4, 3) and out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    with pytest.raises(InputError, match="must be"):
        load_image(np.zeros((2, 2, 5)))
    assert load_image(Image.new("RGB", (5, 4))).rgb.shape == (4, 5, 3)
