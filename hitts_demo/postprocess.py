"""Model outputs -> arrays at the image's size, pseudo labels, and the raw-output encodings.

Resampling rules (outputs come at the model's input size, or h x w for token maps):
labels nearest; depth, confidence and score maps bilinear; normals bilinear then renormalised.

Pseudo labels follow the paper (Sec. 3.3): ``label = argmax softmax(G')`` and the kept mask is
``confidence > tau`` (strictly greater), computed on the confidence at the image's size.

Raw encodings (stated again in the README inside the download zip):
depth PNG = uint16 millimetres, 0 = no value; labels = palette PNG of class indices;
normals PNG = uint8 RGB of (n + 1) / 2 * 255.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from hitts_demo.manifest import TaskInfo

MM_PER_M = 1000.0
UINT16_MAX = 65535
DEPTH_PNG_MISSING = 0
IGNORE_INDEX = -1
"""Ground-truth index of an unlabelled pixel (classification, depth bin or normal centre)."""
NORMAL_MISSING_NORM = 0.5
"""A ground-truth normal shorter than this (e.g. a grey (128, 128, 128) pixel) is missing."""


def resize_nearest(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) integer map -> (H, W) with nearest sampling; ``size`` is (width, height)."""
    if label.shape[::-1] == tuple(size):
        return label
    im = Image.fromarray(label.astype(np.int32))
    return np.asarray(im.resize(size, Image.Resampling.NEAREST)).astype(label.dtype)


def resize_bilinear(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) float map -> (H, W) float32 with bilinear sampling; ``size`` is (width, height)."""
    values = np.asarray(values, np.float32)
    if values.shape[::-1] == tuple(size):
        return values
    im = Image.fromarray(np.ascontiguousarray(values))
    return np.asarray(im.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def resize_normals(normals: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(3, h, w) unit vectors -> (H, W, 3) unit vectors (bilinear per channel, renormalised)."""
    x, y, z = (resize_bilinear(c, size) for c in normals)
    norm = np.sqrt(x * x + y * y + z * z)
    np.maximum(norm, 1e-6, out=norm)
    return np.stack([x / norm, y / norm, z / norm], axis=-1)


def pseudo_label(label: np.ndarray, confidence: np.ndarray, tau: float) -> tuple[np.ndarray, float]:
    """The kept mask ``confidence > tau`` and its coverage (fraction of pixels kept)."""
    mask = confidence > tau
    return mask, float(mask.mean()) if mask.size else 0.0


def depth_to_png16(depth_m: np.ndarray) -> np.ndarray:
    """Depth in metres -> uint16 millimetres (rounded; 0 = no value; capped at 65.535 m)."""
    depth = np.asarray(depth_m, np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    mm = np.where(valid, np.round(depth * MM_PER_M), DEPTH_PNG_MISSING)
    return np.clip(mm, DEPTH_PNG_MISSING, UINT16_MAX).astype(np.uint16)


def png16_to_depth(mm: np.ndarray) -> np.ndarray:
    """uint16 millimetres -> float32 metres (0 stays 0 = no value)."""
    return (np.asarray(mm, np.float32) / MM_PER_M).astype(np.float32)


def normals_to_png(normals: np.ndarray) -> np.ndarray:
    """(H, W, 3) unit normals -> uint8 RGB of (n + 1) / 2 * 255."""
    return np.clip(np.round((normals + 1.0) / 2.0 * 255.0), 0, 255).astype(np.uint8)


def png_to_normals(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB normals -> (H, W, 3) unit vectors; short vectors (missing) become 0."""
    vec = rgb.astype(np.float32) / 255.0 * 2.0 - 1.0
    norm = np.linalg.norm(vec, axis=-1, keepdims=True)
    return np.where(norm > NORMAL_MISSING_NORM, vec / np.maximum(norm, 1e-6), 0.0).astype(np.float32)


def target_to_index(task: TaskInfo, target: np.ndarray) -> np.ndarray:
    """Ground truth -> the index a pseudo label is compared with (``IGNORE_INDEX`` where missing).

    classification: the class index itself (negative or >= C_p = ignore);
    depth (metres, 0 = missing): the nearest bin centre in log depth;
    normals ((H, W, 3), zero vector = missing): the centre with the largest cosine.
    """
    if task.is_classification:
        index = target.astype(np.int64)
        return np.where((index >= 0) & (index < task.num_outputs), index, IGNORE_INDEX)
    if task.kind == "depth":
        valid = np.isfinite(target) & (target > 0)
        log_centres = np.log(np.asarray(task.bin_centres, np.float64))
        logd = np.log(np.where(valid, target, 1.0))
        edges = (log_centres[1:] + log_centres[:-1]) / 2.0
        index = np.searchsorted(edges, logd)
        return np.where(valid, index, IGNORE_INDEX).astype(np.int64)
    centres = np.asarray(task.normal_centres, np.float32)
    valid = np.linalg.norm(target, axis=-1) > NORMAL_MISSING_NORM
    index = np.argmax(target @ centres.T, axis=-1)
    return np.where(valid, index, IGNORE_INDEX).astype(np.int64)


def accuracy_coverage(
    label: np.ndarray, confidence: np.ndarray, gt_index: np.ndarray, taus: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-label accuracy and coverage for each tau, over the pixels with ground truth.

    coverage(tau) = |kept & valid| / |valid|; accuracy(tau) = |kept & valid & label == gt| /
    |kept & valid| (NaN where nothing is kept).
    """
    valid = gt_index != IGNORE_INDEX
    n_valid = int(valid.sum())
    conf = confidence[valid]
    correct = label[valid] == gt_index[valid]
    order = np.argsort(conf)
    conf_sorted = conf[order]
    correct_cum = np.concatenate([[0], np.cumsum(correct[order][::-1])])  # correct among the top-k
    acc, cov = [], []
    for tau in taus:
        kept = n_valid - int(np.searchsorted(conf_sorted, tau, side="right"))  # confidence > tau
        cov.append(kept / n_valid if n_valid else 0.0)
        acc.append(correct_cum[kept] / kept if kept else np.nan)
    return np.asarray(acc, np.float64), np.asarray(cov, np.float64)
