"""Joint augmentation: one random geometry applied to every dense key, colour on the image only.

Rules (each has a test in ``tests/test_data_transforms.py``):

* One scale-crop + flip per sample. The crop window is ``1/s`` of the image in both axes at a random
  offset, ``s`` drawn from ``scales``; it is expressed in normalised coordinates so that every dense
  key is resampled at its *own* resolution with the same geometry (``feature_target/*`` maps are
  smaller than the image and stay aligned with it).
* Interpolation by key: ``image``, ``feature_target/*`` and ``feature_mask/*`` bilinear; everything
  else (class labels, ``depth``, ``normals``, ``pseudo/*``, ``pseudo_mask/*``) nearest, so ignore
  labels (-1), missing depth (0) and missing normals (zero vector) are never interpolated into values.
* A horizontal flip negates the x component (channel 0) of normal maps (``normals_keys``) and can
  remap index maps whose classes have a mirror image (``flip_index_maps``, e.g. ``pseudo/normals``
  whose indices are normal centres: pass the permutation centre k -> centre nearest to the mirrored
  centre k).
* Depth is NOT divided by the zoom: a crop-zoom is a focal-length change, the distance of every
  point is unchanged (this also keeps depth pseudo labels, which are bin indices, valid).
* Colour jitter (brightness, contrast, saturation, each by a factor in [1 - c, 1 + c]) on ``image``.
* Photometric mode ``"wide"`` (opt-in, ``DataConfig.photometric``; ``"basic"`` = the colour jitter
  alone, draws unchanged): after the jitter, on ``image`` only, each with its own probability:
  per-channel gains (white balance), grey, gamma, Gaussian blur, Gaussian + shot noise and JPEG
  re-encoding at a random quality (``PhotometricParams``, ``apply_photometric``). Labels are never
  touched; the image stays in [0, 1]. Its draws follow the basic ones from the same per-sample rng.

Arrays are in the numpy sample convention of ``trainer.data.layouts`` (channel-first, image in
[0, 1]); ``to_tensor_sample`` then normalises the image with ``IMAGE_MEAN`` / ``IMAGE_STD`` and
converts everything to tensors.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from .layouts import resample

IMAGE_MEAN = (0.485, 0.456, 0.406)
"""ImageNet RGB mean applied to images in [0, 1]."""
IMAGE_STD = (0.229, 0.224, 0.225)
"""ImageNet RGB std applied to images in [0, 1]."""

IMAGE_KEY = "image"
BILINEAR_PREFIXES = ("feature_target/", "feature_mask/")
"""Keys resampled bilinearly besides ``image``; every other dense key is resampled nearest."""
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""RGB -> grey weights (ITU-R BT.601) used by the contrast and saturation jitter."""
DENSE_MIN_NDIM = 2

PHOTOMETRIC_MODES = ("basic", "wide")
"""``JointAugment(photometric=...)`` / ``DataConfig.photometric``: "basic" = colour jitter only (the
default, as before), "wide" = colour jitter + the sim-to-real operations below."""
# "wide" photometric operations: probability per sample and range. Set against the ten real NYUD-v2
# frames vs the synthetic set (see ``trainer.data.synthetic_profile``): real frames are warm and
# their casts spread (mean R/G 0.99-1.21, B/G 0.86-1.01), softer (|Laplacian| of luma 0.044 vs
# 0.063), JPEG-compressed, with deeper shadows and clipped highlights.
WB_PROB, WB_LOG_STD = 0.8, 0.08
"""Per-channel gains exp(N(0, WB_LOG_STD)) (white balance / colour cast): +-8 % per channel, 1 std."""
GREY_PROB = 0.05
"""The image becomes grey (luma in all channels): colour must not be needed."""
GAMMA_PROB, GAMMA_RANGE = 0.5, (0.7, 1.5)
"""x -> x ** g: tone curves of other cameras (g < 1 lifts shadows, g > 1 deepens them)."""
BLUR_PROB, BLUR_SIGMA = 0.3, (0.4, 1.5)
"""Gaussian blur with this std in pixels (focus / motion softness of real frames)."""
BLUR_RADIUS_SIGMAS, BLUR_MAX_RADIUS = 2.5, 4
"""The blur kernel reaches round(BLUR_RADIUS_SIGMAS * sigma) pixels, at most BLUR_MAX_RADIUS."""
NOISE_PROB, NOISE_STD, SHOT_NOISE = 0.4, (0.0, 0.03), (0.0, 0.03)
"""Gaussian noise of std s + k sqrt(x): read noise s and shot noise k (signal-dependent)."""
JPEG_PROB, JPEG_QUALITY = 0.3, (30, 95)
"""Re-encode as JPEG (Pillow) at a quality drawn from [lo, hi] (NYU frames are JPEG-compressed)."""
U8_MAX = 255.0
GAMMA_LUT_SIZE = 4096
"""Gamma is applied through a table of this many entries (nearest entry: error below half an 8-bit
step for the gammas drawn, about 3x faster than a float power)."""
NOISE_POOL_SIZE = 1 << 20
"""Shared pool of standard normal float32 values that noise is cut from at a random offset and sign
(5 ms of fresh draws per 288x384 image otherwise); larger images draw fresh values."""
NOISE_POOL_SEED = 20241130


def interpolation_for(key: str) -> str:
    """ "bilinear" for the image and feature maps, "nearest" for every label-like key."""
    return "bilinear" if key == IMAGE_KEY or key.startswith(BILINEAR_PREFIXES) else "nearest"


@dataclass(frozen=True)
class PhotometricParams:
    """One draw of the "wide" photometric operations (each at its identity value when not drawn).

    gains: (r, g, b) channel factors. grey: replace the colours by the luma. gamma: exponent.
    blur_sigma: Gaussian blur std in pixels (0 = none). noise_std, shot_noise: noise std s + k sqrt(x)
    (0, 0 = none), drawn from ``default_rng(noise_seed)``. jpeg_quality: 0 = no JPEG re-encoding.
    """

    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    grey: bool = False
    gamma: float = 1.0
    blur_sigma: float = 0.0
    noise_std: float = 0.0
    shot_noise: float = 0.0
    noise_seed: int = 0
    jpeg_quality: int = 0


def sample_photometric(rng: np.random.Generator) -> PhotometricParams:
    """Draw the "wide" operations from ``rng`` (a fixed number of draws whatever is chosen)."""
    u = rng.random(6)
    gains = np.exp(rng.normal(0.0, WB_LOG_STD, size=3))
    gamma, sigma = rng.uniform(*GAMMA_RANGE), rng.uniform(*BLUR_SIGMA)
    noise_std, shot = rng.uniform(*NOISE_STD), rng.uniform(*SHOT_NOISE)
    quality, noise_seed = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)), int(rng.integers(2**31))
    noisy = bool(u[4] < NOISE_PROB)
    return PhotometricParams(
        gains=tuple(float(g) for g in gains) if u[0] < WB_PROB else (1.0, 1.0, 1.0),
        grey=bool(u[1] < GREY_PROB),
        gamma=float(gamma) if u[2] < GAMMA_PROB else 1.0,
        blur_sigma=float(sigma) if u[3] < BLUR_PROB else 0.0,
        noise_std=float(noise_std) if noisy else 0.0,
        shot_noise=float(shot) if noisy else 0.0,
        noise_seed=noise_seed,
        jpeg_quality=quality if u[5] < JPEG_PROB else 0,
    )


@dataclass(frozen=True)
class AugmentParams:
    """One draw of the joint augmentation.

    scale: zoom s >= 1; the crop window is (1/s) x (1/s) of the image (normalised).
    top, left: normalised offset of the window, each in [0, 1 - 1/s].
    flip: horizontal mirror.
    brightness, contrast, saturation: colour factors (1 = unchanged).
    photometric: the "wide" operations (None in "basic" mode).
    """

    scale: float = 1.0
    top: float = 0.0
    left: float = 0.0
    flip: bool = False
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    photometric: PhotometricParams | None = None

    @property
    def window(self) -> tuple[float, float, float, float]:
        """(top, left, height, width) of the crop in normalised coordinates."""
        return (self.top, self.left, 1.0 / self.scale, 1.0 / self.scale)


class JointAugment:
    """Scale-crop, horizontal flip and colour jitter applied consistently to a whole numpy sample.

    scales: zoom factors (>= 1) drawn uniformly; (1.0,) disables the scale-crop.
    flip_prob: probability of a horizontal flip.
    color_jitter: c, the half-width of the brightness / contrast / saturation factors; 0 disables it.
    seed: seeds the generator used when ``__call__`` gets no ``rng`` (datasets always pass one).
    normals_keys: keys holding (3, H, W) normal maps whose x component flips sign with the image.
    flip_index_maps: key -> (C,) int permutation applied to an index map when flipped (see module doc).
    photometric: "basic" (colour jitter only) or "wide" (+ white balance, grey, gamma, blur, noise,
        JPEG on the image; see the module doc and ``PHOTOMETRIC_MODES``).
    """

    def __init__(
        self,
        scales: tuple[float, ...] = (1.0, 1.2, 1.5),
        flip_prob: float = 0.5,
        color_jitter: float = 0.2,
        seed: int | None = None,
        *,
        normals_keys: tuple[str, ...] = ("normals",),
        flip_index_maps: Mapping[str, np.ndarray] | None = None,
        photometric: str = "basic",
    ):
        if not scales or min(scales) < 1.0:
            raise ValueError(f"scales must be non-empty and >= 1 (a zoom into the image), got {scales}")
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
        if not 0.0 <= color_jitter < 1.0:
            raise ValueError(f"color_jitter must be in [0, 1), got {color_jitter}")
        if photometric not in PHOTOMETRIC_MODES:
            raise ValueError(f"unknown photometric mode {photometric!r}; valid: {list(PHOTOMETRIC_MODES)}")
        self.photometric = photometric
        self.scales = tuple(float(s) for s in scales)
        self.flip_prob = float(flip_prob)
        self.color_jitter = float(color_jitter)
        self.normals_keys = tuple(normals_keys)
        self.flip_index_maps = {k: np.asarray(v, dtype=np.int64) for k, v in (flip_index_maps or {}).items()}
        self._rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return (
            f"JointAugment(scales={self.scales}, flip_prob={self.flip_prob}, "
            f"color_jitter={self.color_jitter}, photometric={self.photometric!r})"
        )

    def sample_params(self, rng: np.random.Generator) -> AugmentParams:
        """Draw one geometry + colour change."""
        scale = float(self.scales[rng.integers(len(self.scales))])
        slack = 1.0 - 1.0 / scale
        top, left = (float(v) for v in rng.uniform(0.0, slack, size=2))
        flip = bool(rng.random() < self.flip_prob)
        c = self.color_jitter
        brightness, contrast, saturation = (float(v) for v in rng.uniform(1.0 - c, 1.0 + c, size=3))
        photo = sample_photometric(rng) if self.photometric == "wide" else None
        return AugmentParams(scale, top, left, flip, brightness, contrast, saturation, photo)

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator | None = None) -> dict[str, Any]:
        """Augmented copy of ``sample`` (dense arrays resampled; other values passed through)."""
        return self.apply(sample, self.sample_params(self._rng if rng is None else rng))

    def apply(self, sample: dict[str, Any], params: AugmentParams) -> dict[str, Any]:
        """Apply fixed ``params`` to every dense (ndim >= 2) array of ``sample``, each at its own size."""
        out: dict[str, Any] = {}
        for key, value in sample.items():
            if not isinstance(value, np.ndarray) or value.ndim < DENSE_MIN_NDIM:
                out[key] = value
                continue
            moved = resample(value, value.shape[-2:], interpolation_for(key), params.window, params.flip)
            if params.flip and key in self.normals_keys:
                moved[0] = -moved[0]
            if params.flip and key in self.flip_index_maps:
                moved = np.where(moved >= 0, self.flip_index_maps[key][np.clip(moved, 0, None)], moved)
            if key == IMAGE_KEY:
                moved = jitter_colour(moved, params.brightness, params.contrast, params.saturation)
                if params.photometric is not None:
                    moved = apply_photometric(moved, params.photometric)
            out[key] = moved
        return out


def normal_flip_permutation(centres: np.ndarray) -> np.ndarray:
    """(K, 3) normal centres -> (K,) int64: k -> the centre closest (cosine) to centre k mirrored
    (x negated). Pass as ``flip_index_maps={"pseudo/normals": ...}`` so that flipped pseudo labels
    of a normals task name the mirrored direction."""
    centres = np.asarray(centres, dtype=np.float64)
    mirrored = centres * np.array([-1.0, 1.0, 1.0])
    return np.argmax(mirrored @ centres.T, axis=1).astype(np.int64)


def jitter_colour(image: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """(3, H, W) image in [0, 1] -> brightness, then contrast (about the mean grey), then saturation
    (about the per-pixel grey), clipped to [0, 1]."""
    if brightness == contrast == saturation == 1.0:
        return image
    luma = np.asarray(LUMA_WEIGHTS, dtype=np.float32)[:, None, None]
    out = image * brightness
    mean_grey = float((out * luma).sum(0).mean())
    out = (out - mean_grey) * contrast + mean_grey
    grey = (out * luma).sum(0, keepdims=True)
    out = (out - grey) * saturation + grey
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """(C, H, W) -> separable Gaussian blur of std ``sigma`` pixels (edges replicated), float32."""
    radius = int(min(BLUR_MAX_RADIUS, max(1, round(BLUR_RADIUS_SIGMAS * sigma))))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    _, h, w = image.shape
    rows = np.pad(image, ((0, 0), (0, 0), (radius, radius)), mode="edge")
    out = rows[:, :, :w] * taps[0]
    for k in range(1, 2 * radius + 1):
        out += rows[:, :, k : k + w] * taps[k]
    cols = np.pad(out, ((0, 0), (radius, radius), (0, 0)), mode="edge")
    out = cols[:, :h] * taps[0]
    for k in range(1, 2 * radius + 1):
        out += cols[:, k : k + h] * taps[k]
    return out


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """(3, H, W) in [0, 1] -> JPEG-encoded and decoded by Pillow at ``quality``, (3, H, W) float32."""
    from PIL import Image

    u8 = np.round(image.transpose(1, 2, 0) * U8_MAX).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    decoded = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32)
    return decoded.transpose(2, 0, 1) * np.float32(1.0 / U8_MAX)


@lru_cache(maxsize=1)
def _noise_pool() -> np.ndarray:
    return np.random.default_rng(NOISE_POOL_SEED).standard_normal(NOISE_POOL_SIZE, dtype=np.float32)


def _standard_noise(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 noise of ``shape``, a function of ``seed``: a window of the shared
    pool at a seeded offset and sign (fresh seeded draws when the pool is too small)."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    pool = _noise_pool()
    if n > len(pool) // 2:
        return rng.standard_normal(shape, dtype=np.float32)
    start = int(rng.integers(len(pool) - n))
    return pool[start : start + n].reshape(shape) * np.float32(rng.choice([-1.0, 1.0]))


def _gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """Image in [0, 1] -> image ** gamma through the nearest entry of a GAMMA_LUT_SIZE table."""
    lut = (np.linspace(0.0, 1.0, GAMMA_LUT_SIZE) ** gamma).astype(np.float32)
    idx = image * np.float32(GAMMA_LUT_SIZE - 1)
    idx += np.float32(0.5)
    return lut.take(idx.astype(np.intp))


def apply_photometric(image: np.ndarray, p: PhotometricParams) -> np.ndarray:
    """(3, H, W) image in [0, 1] -> the "wide" operations of ``p`` in order: gains, grey, gamma,
    blur, noise, JPEG; (3, H, W) float32 in [0, 1]. Deterministic for fixed ``p``."""
    out = np.asarray(image, dtype=np.float32)
    if p.gains != (1.0, 1.0, 1.0):
        out = out * np.asarray(p.gains, dtype=np.float32)[:, None, None]
    if p.grey:
        luma = (out * np.asarray(LUMA_WEIGHTS, dtype=np.float32)[:, None, None]).sum(0, keepdims=True)
        out = np.repeat(luma, 3, axis=0)
    out = np.clip(out, 0.0, 1.0)
    if p.gamma != 1.0:
        out = _gamma(out, p.gamma)
    if p.blur_sigma > 0:
        out = _gaussian_blur(out, p.blur_sigma)
    if p.noise_std > 0 or p.shot_noise > 0:
        noise = _standard_noise(p.noise_seed, out.shape)
        out = out + noise * (np.float32(p.noise_std) + np.float32(p.shot_noise) * np.sqrt(out))
        np.clip(out, 0.0, 1.0, out=out)
    if p.jpeg_quality:
        out = _jpeg(out, p.jpeg_quality)
    return out


def normalise_image(image: np.ndarray) -> np.ndarray:
    """(3, H, W) image in [0, 1] -> (image - IMAGE_MEAN) / IMAGE_STD, float32."""
    mean = np.asarray(IMAGE_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(IMAGE_STD, dtype=np.float32)[:, None, None]
    return ((image - mean) / std).astype(np.float32)


def denormalise_image(image: np.ndarray) -> np.ndarray:
    """Inverse of ``normalise_image``: (3, H, W) normalised -> [0, 1] (clipped)."""
    mean = np.asarray(IMAGE_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(IMAGE_STD, dtype=np.float32)[:, None, None]
    return np.clip(image * std + mean, 0.0, 1.0).astype(np.float32)


def to_tensor_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """Numpy sample -> tensor sample: ``image`` normalised float32; integer arrays int64; boolean
    arrays bool; other arrays float32; non-array values passed through."""
    out: dict[str, Any] = {}
    for key, value in sample.items():
        if key == IMAGE_KEY:
            out[key] = torch.from_numpy(normalise_image(value))
        elif isinstance(value, np.ndarray):
            if value.dtype == bool:
                out[key] = torch.from_numpy(np.ascontiguousarray(value))
            elif np.issubdtype(value.dtype, np.integer):
                out[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.int64))
            else:
                out[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
        else:
            out[key] = value
    return out
