"""Any upload -> an upright RGB uint8 array, or one clear ``InputError``.

Follows Pillow's security handbook: the byte size is capped before decoding, ``Image.open`` is
restricted to common formats, a ``DecompressionBombWarning`` is an error, the declared pixel count is
checked from the header before any pixel is decoded, and truncated files raise (Pillow's default;
``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set). Animations are read at their first frame only.

Conversions to RGB (``to_rgb``):

* EXIF orientation applied (``ImageOps.exif_transpose``), so outputs align with the upright image.
* RGBA / LA / PA / P with transparency: composited over white.
* 16-bit greyscale (``I;16*``) and 32-bit ``I``: divided by 257 (65535 -> 255) when the values fit 16
  bits, else stretched from their min..max; ``F``: x255 when in [0, 1], else stretched from min..max.
* CMYK, YCbCr, 1, L, P, HSV: Pillow's conversion.
* Images larger than ``max_side`` are downscaled (aspect kept) before inference; the outputs are
  produced at this working size.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MEGABYTE = 1024 * 1024
DEFAULT_MAX_BYTES = 20 * MEGABYTE
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_SIDE = 1600
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
"""Formats ``Image.open`` may try (JPEG also opens multi-picture MPO files from phone cameras)."""
UINT16_TO_UINT8 = 257.0
BACKGROUND = (255, 255, 255)
EXIF_IFD = 0x8769
FOCAL_35MM_TAG = 0xA405
FILM_DIAGONAL_MM = math.hypot(36.0, 24.0)
MAX_FOCAL_35MM = 5000.0
"""Colour behind transparent pixels."""


class InputError(ValueError):
    """An upload that cannot be used; the message is meant for the user."""


@dataclass(frozen=True)
class ImageLimits:
    """Caps applied to every upload (bytes before decoding, declared pixels, working size)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_side: int = DEFAULT_MAX_SIDE
    formats: tuple[str, ...] = ALLOWED_FORMATS


DEFAULT_LIMITS = ImageLimits()


@dataclass
class LoadedImage:
    """An upright RGB uint8 image (H, W, 3) and what was done to get it."""

    rgb: np.ndarray
    source_size: tuple[int, int]  # (width, height) as stored in the file, before EXIF rotation
    format: str
    mode: str
    notes: list[str] = field(default_factory=list)
    scale: float = 1.0
    """``rgb`` pixels per pixel of the upright upload (below 1 when it was downscaled)."""
    focal_px: float | None = None
    """Focal length in pixels of ``rgb`` from the file's EXIF (35 mm equivalent), None without one."""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of ``rgb``."""
        return self.rgb.shape[1], self.rgb.shape[0]


def _human(nbytes: int) -> str:
    return f"{nbytes / MEGABYTE:.1f} MB"


def _read_bytes(source: str | Path | bytes | BinaryIO, limits: ImageLimits) -> bytes:
    """The upload's bytes, refusing anything over ``limits.max_bytes`` before reading it whole."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise InputError("the uploaded file could not be found on the server; please upload it again")
        size = os.stat(path).st_size
        if size > limits.max_bytes:
            raise InputError(f"the file is {_human(size)}; the limit is {_human(limits.max_bytes)}")
        data = path.read_bytes()
    else:
        data = source.read(limits.max_bytes + 1)
    if len(data) > limits.max_bytes:
        raise InputError(f"the file is over the {_human(limits.max_bytes)} limit")
    if not data:
        raise InputError("the file is empty")
    return data


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Integer, bool or float pixels -> uint8, per the rules in the module docstring."""
    arr = np.asarray(arr)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    is_float = np.issubdtype(arr.dtype, np.floating)
    finite = np.isfinite(arr) if is_float else np.ones(arr.shape, bool)
    if not finite.any():
        return np.zeros(arr.shape, np.uint8)
    values = np.where(finite, arr, 0).astype(np.float64)
    lo, hi = float(values.min()), float(values.max())
    if is_float and lo >= 0.0 and hi <= 1.0:
        out = values * 255.0
    elif lo >= 0 and hi <= 255:
        out = values
    elif lo >= 0 and hi <= 65535:
        out = values / UINT16_TO_UINT8
    else:
        out = (values - lo) / max(hi - lo, 1e-12) * 255.0
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _high_depth_to_rgb(im: Image.Image) -> Image.Image:
    """``I;16*``, ``I`` and ``F`` images -> RGB (see the module docstring for the scaling)."""
    arr = np.asarray(im)
    if im.mode.startswith("I;16") or im.mode == "I":
        # a 16-bit file uses the 16-bit range even when its values happen to be small
        arr = arr.astype(np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        grey = arr / UINT16_TO_UINT8 if lo >= 0 and hi <= 65535 else (arr - lo) / max(hi - lo, 1e-12) * 255.0
        grey = np.clip(np.round(grey), 0, 255).astype(np.uint8)
    else:
        grey = _scale_to_uint8(arr.astype(np.float32))
    return Image.fromarray(np.repeat(grey[..., None], 3, axis=-1))


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB (transparency over white; high bit depths scaled, see module docstring)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _high_depth_to_rgb(im)
    if mode == "P" and "transparency" in im.info or mode in ("PA", "LA", "La", "RGBa"):
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        background = Image.new("RGBA", im.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, im).convert("RGB")
    try:
        return im.convert("RGB")
    except (ValueError, OSError) as err:
        raise InputError(
            f"colour mode {mode} is not supported; please upload an RGB or greyscale image"
        ) from err


def _downscale(im: Image.Image, max_side: int) -> Image.Image:
    width, height = im.size
    longest = max(width, height)
    if longest <= max_side:
        return im
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def load_image(source: Any, limits: ImageLimits = DEFAULT_LIMITS) -> LoadedImage:
    """Decode ``source`` (path, bytes, file object, PIL image or array) to an upright RGB uint8 image.

    Raises ``InputError`` with a message for the user for anything that is not a usable image.
    """
    if source is None:
        raise InputError("no image was given: upload one first")
    if isinstance(source, np.ndarray):
        return _from_array(source, limits)
    if isinstance(source, Image.Image):
        return _from_pil(source, "array", limits)
    data = _read_bytes(source, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=list(limits.formats))
            return _from_pil(im, im.format or "unknown", limits)
    except InputError:
        raise
    except (UnidentifiedImageError, SyntaxError) as err:
        names = ", ".join(limits.formats)
        raise InputError(f"this is not an image in a supported format ({names})") from err
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise InputError(
            f"the image declares more pixels than can be decoded safely (the limit is "
            f"{min(limits.max_pixels, Image.MAX_IMAGE_PIXELS or limits.max_pixels) / 1e6:.0f} megapixels)"
        ) from err
    except (OSError, ValueError, EOFError, IndexError, TypeError, MemoryError) as err:
        raise InputError(f"the image could not be decoded: it looks truncated or corrupt ({err})") from err


def _from_pil(im: Image.Image, fmt: str, limits: ImageLimits) -> LoadedImage:
    width, height = im.size
    if width < 1 or height < 1:
        raise InputError(f"the image has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise InputError(
            f"the image is {width}x{height} ({width * height / 1e6:.0f} megapixels); "
            f"the limit is {limits.max_pixels / 1e6:.0f} megapixels"
        )
    notes: list[str] = []
    if getattr(im, "is_animated", False):
        notes.append("animated image: the first frame is used")
    if im.format in ("JPEG", "MPO") and max(width, height) > 2 * limits.max_side:
        im.draft(
            "RGB",
            (width * limits.max_side // max(width, height), height * limits.max_side // max(width, height)),
        )
    mode = im.mode
    im.load()  # decodes the first frame only; raises on truncated data
    orientation = im.getexif().get(0x0112, 1) if hasattr(im, "getexif") else 1
    focal_35mm = exif_focal_35mm(im)
    upright = ImageOps.exif_transpose(im)
    if orientation not in (1, None):
        notes.append(f"EXIF orientation {orientation} applied")
    rgb = to_rgb(upright)
    if mode != "RGB":
        notes.append(f"converted from mode {mode}")
    small = _downscale(rgb, limits.max_side)
    if small.size != rgb.size:
        notes.append(f"downscaled from {rgb.size[0]}x{rgb.size[1]} to {small.size[0]}x{small.size[1]}")
    arr = np.ascontiguousarray(np.asarray(small, dtype=np.uint8))
    focal = focal_35mm * math.hypot(*small.size) / FILM_DIAGONAL_MM if focal_35mm else None
    if focal:
        notes.append(f"EXIF focal length {focal_35mm:g} mm (35 mm equivalent) = {focal:.0f} px")
    return LoadedImage(
        rgb=arr,
        source_size=(width, height),
        format=fmt,
        mode=mode,
        notes=notes,
        scale=small.size[0] / rgb.size[0],
        focal_px=focal,
    )


def exif_focal_35mm(im: Image.Image) -> float | None:
    """``FocalLengthIn35mmFilm`` of the Exif IFD (what phones write), None if absent or unreadable.

    In pixels: f_px = f_35mm * (image diagonal in px) / 43.27 mm (the 36 x 24 mm frame's diagonal),
    the conversion ml-depth-pro uses; it holds for any orientation and downscaling of the image."""
    try:
        value = im.getexif().get_ifd(EXIF_IFD).get(FOCAL_35MM_TAG)
        value = float(value) if value is not None else None
    except (AttributeError, TypeError, ValueError, OSError, SyntaxError):
        return None
    return value if value and math.isfinite(value) and 0 < value < MAX_FOCAL_35MM else None


def _from_array(arr: np.ndarray, limits: ImageLimits) -> LoadedImage:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) arrays of any numeric dtype."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InputError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    if arr.shape[0] * arr.shape[1] > limits.max_pixels:
        raise InputError(
            f"the image is {arr.shape[1]}x{arr.shape[0]}; the limit is {limits.max_pixels / 1e6:.0f} megapixels"
        )
    if arr.size == 0:
        raise InputError("the image has no pixels")
    u8 = _scale_to_uint8(arr) if arr.dtype != np.uint8 else arr
    if u8.ndim == 2:
        u8 = np.repeat(u8[..., None], 3, axis=-1)
    im = Image.fromarray(np.ascontiguousarray(u8))
    return _from_pil(im, "array", limits)
