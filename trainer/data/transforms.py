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

Arrays are in the numpy sample convention of ``trainer.data.layouts`` (channel-first, image in
[0, 1]); ``to_tensor_sample`` then normalises the image with ``IMAGE_MEAN`` / ``IMAGE_STD`` and
converts everything to tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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


def interpolation_for(key: str) -> str:
    """ "bilinear" for the image and feature maps, "nearest" for every label-like key."""
    return "bilinear" if key == IMAGE_KEY or key.startswith(BILINEAR_PREFIXES) else "nearest"


@dataclass(frozen=True)
class AugmentParams:
    """One draw of the joint augmentation.

    scale: zoom s >= 1; the crop window is (1/s) x (1/s) of the image (normalised).
    top, left: normalised offset of the window, each in [0, 1 - 1/s].
    flip: horizontal mirror.
    brightness, contrast, saturation: colour factors (1 = unchanged).
    """

    scale: float = 1.0
    top: float = 0.0
    left: float = 0.0
    flip: bool = False
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0

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
    ):
        if not scales or min(scales) < 1.0:
            raise ValueError(f"scales must be non-empty and >= 1 (a zoom into the image), got {scales}")
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
        if not 0.0 <= color_jitter < 1.0:
            raise ValueError(f"color_jitter must be in [0, 1), got {color_jitter}")
        self.scales = tuple(float(s) for s in scales)
        self.flip_prob = float(flip_prob)
        self.color_jitter = float(color_jitter)
        self.normals_keys = tuple(normals_keys)
        self.flip_index_maps = {k: np.asarray(v, dtype=np.int64) for k, v in (flip_index_maps or {}).items()}
        self._rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return (
            f"JointAugment(scales={self.scales}, flip_prob={self.flip_prob}, "
            f"color_jitter={self.color_jitter})"
        )

    def sample_params(self, rng: np.random.Generator) -> AugmentParams:
        """Draw one geometry + colour change."""
        scale = float(self.scales[rng.integers(len(self.scales))])
        slack = 1.0 - 1.0 / scale
        top, left = (float(v) for v in rng.uniform(0.0, slack, size=2))
        flip = bool(rng.random() < self.flip_prob)
        c = self.color_jitter
        brightness, contrast, saturation = (float(v) for v in rng.uniform(1.0 - c, 1.0 + c, size=3))
        return AugmentParams(scale, top, left, flip, brightness, contrast, saturation)

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
