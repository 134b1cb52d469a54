"""nyuv2-mini: ten real NYUD-v2 test frames, read from their folder (torch-free, scipy-free).

Layout (``../shared/data/nyuv2-mini``; the folder is read in place, never copied)::

    <root>/rgb_NNNN.png          RGB, 640x480, uint8
    <root>/depth_NNNN.png        depth, 640x480, uint16 millimetres (0 = missing)
    <root>/semantic13_NNNN.png   13-class labels, 640x480, uint8: 0 = unlabelled, 1..13 = classes

``NNNN`` is the frame id (1-based index into the 1449-frame labelled set). Every rgb file must have
its depth and semantic13 partners. Prepared at 288x384 (the NYUD-v2 multi-task size): RGB bilinear,
labels and depth nearest, labels 1..13 -> 0..12 with 0 -> -1 (ignore), depth in metres. Surface
normals are NOT ground truth: they are derived from the resized depth (averaged over 7x7 windows of
valid pixels) with the NYU RGB intrinsics (fx 518.858, fy 519.470, cx 325.582, cy 253.736 at
640x480, scaled to the grid) by ``trainer.data.normals_from_depth``. Convention: camera x right,
y down, z forward; normals face the camera (n . P <= 0), so a wall facing the camera is (0, 0, -1).

This module only reads arrays (``list_frames``, ``load_frame``, ``prepare_frame``) so that the
dashboard gallery can use it without torch; the torch ``Dataset`` is
``trainer.data.nyud.NYUv2MiniDataset``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..tasks import IGNORE_LABEL
from .layouts import (
    MAX_LISTED,
    DatasetError,
    labels_to_int,
    read_png,
    require_dir,
    require_file,
    resize_nearest,
    resize_uint8_rgb,
)
from .normals_from_depth import CameraIntrinsics, normals_from_depth

FRAME_HEIGHT, FRAME_WIDTH = 480, 640
PREPARED_SIZE = (288, 384)
"""(H, W) of prepared frames: the NYUD-v2 multi-task input size."""
NYU_INTRINSICS = CameraIntrinsics(
    fx=518.858, fy=519.470, cx=325.582, cy=253.736, height=FRAME_HEIGHT, width=FRAME_WIDTH
)
"""NYU Depth v2 RGB camera intrinsics at 640x480."""
NORMALS_SMOOTH_RADIUS = 3
"""Depth is averaged over 7x7 windows (on the prepared grid) before deriving normals: Kinect depth is
quantised, and raw neighbour differences make the normals of flat walls visibly noisy."""
MM_PER_METRE = 1000.0
NUM_SEMANTIC_CLASSES = 13
SEMANTIC_UNLABELLED = 0
"""semantic13 value of unlabelled pixels; classes are stored as 1..13."""
MODALITIES = ("rgb", "depth", "semseg")
FILE_PREFIX = {"rgb": "rgb", "depth": "depth", "semseg": "semantic13"}
_FRAME_RE = re.compile(r"^rgb_(\d+)\.png$")


def _path(root: Path, modality: str, frame_id: str) -> Path:
    return root / f"{FILE_PREFIX[modality]}_{frame_id}.png"


def list_frames(root: str | Path) -> list[str]:
    """Sorted frame ids (``"0001"``, ...) of the folder, checking each has its depth and labels."""
    root = require_dir(root, "the nyuv2-mini folder (rgb_NNNN.png, depth_NNNN.png, semantic13_NNNN.png)")
    ids = sorted(m.group(1) for p in root.iterdir() if (m := _FRAME_RE.match(p.name)))
    if not ids:
        raise DatasetError(f"{root} holds no rgb_NNNN.png frames; expected the nyuv2-mini layout")
    for modality in ("depth", "semseg"):
        missing = [str(_path(root, modality, i)) for i in ids if not _path(root, modality, i).is_file()]
        if missing:
            raise DatasetError(
                f"{len(missing)} {modality} file(s) missing for the rgb frames: {missing[:MAX_LISTED]}"
            )
    return ids


def load_frame(
    root: str | Path, frame_id: str, modalities: Iterable[str] = MODALITIES
) -> dict[str, np.ndarray]:
    """Full-resolution arrays of one frame (only the requested ``modalities``).

    Returns ``rgb`` (480, 640, 3) uint8, ``depth`` (480, 640) float32 metres (0 = missing) and
    ``semseg`` (480, 640) int64 in 0..12 with -1 = unlabelled.
    """
    root = Path(root)
    out: dict[str, np.ndarray] = {}
    for modality in modalities:
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; valid: {list(MODALITIES)}")
        path = require_file(
            _path(root, modality, frame_id), f"the {modality} file of nyuv2-mini frame {frame_id}"
        )
        if modality == "rgb":
            arr = read_png(path, "RGB")
            expected: tuple[int, ...] = (FRAME_HEIGHT, FRAME_WIDTH, 3)
        else:
            arr = read_png(path)
            expected = (FRAME_HEIGHT, FRAME_WIDTH)
        if arr.shape != expected:
            raise DatasetError(f"{path}: shape {arr.shape}, expected {expected}")
        if modality == "depth":
            if arr.dtype != np.uint16:
                raise DatasetError(f"{path}: depth dtype {arr.dtype}, expected uint16 millimetres")
            arr = arr.astype(np.float32) / MM_PER_METRE
        elif modality == "semseg":
            stored = labels_to_int(arr, path, NUM_SEMANTIC_CLASSES + 1, ())  # 0..13, range-checked
            arr = np.where(stored == SEMANTIC_UNLABELLED, IGNORE_LABEL, stored - 1)
        out[modality] = np.ascontiguousarray(arr)
    return out


def prepare_frame(
    frame: dict[str, np.ndarray], size: tuple[int, int] = PREPARED_SIZE
) -> dict[str, np.ndarray]:
    """A frame from ``load_frame`` -> numpy sample arrays at ``size`` (whatever modalities it has).

    ``image`` (3, H, W) float32 in [0, 1] (bilinear); ``semseg`` (H, W) int64 (nearest); ``depth``
    (1, H, W) float32 metres (nearest); and, when depth is present, ``normals`` (3, H, W) float32
    derived from the resized depth (see module docstring).
    """
    out: dict[str, np.ndarray] = {}
    if "rgb" in frame:
        out["image"] = resize_uint8_rgb(frame["rgb"], size)
    if "semseg" in frame:
        out["semseg"] = resize_nearest(frame["semseg"], size)
    if "depth" in frame:
        depth = resize_nearest(frame["depth"], size)
        out["depth"] = depth[None].astype(np.float32)
        out["normals"] = normals_from_depth(depth, NYU_INTRINSICS.resized(*size), NORMALS_SMOOTH_RADIUS)
    return out
