"""PASCAL-Context in the multi-task layout of Multi-Task-Learning-PyTorch / ATRC / InvPT (PASCAL_MT).

Layout (``<id>`` like ``2008_000002``; only the files of the requested tasks are required)::

    <root>/ImageSets/Context/{train,val}.txt   one <id> per line (4998 train / 5105 val)
    <root>/JPEGImages/<id>.jpg                 RGB, any size
    <root>/semseg/pascal-context/<id>.png      uint8 (grey or palette) 0..20 = 21 classes, 255 = ignore
    <root>/human_parts/<id>.mat                PASCAL-Part MATLAB struct (below)
    <root>/normals_distill/<id>.png            uint8 RGB, n = rgb / 255 * 2 - 1 (re-normalised)
    <root>/sal_distill/<id>.png                uint8 grey (RGB accepted, converted), salient where > 127
    <root>/pascal-context/trainval/<id>.mat    variable ``LabelMap`` (H, W) int: PASCAL-Context classes

Every target must have its image's size. Everything is resized to ``size`` (default 512x512):
bilinear image, nearest targets.

Tasks:

* ``semseg``: the PNG values; 255 -> -1.
* ``human_parts``: ``human_parts/<id>.mat`` holds ``anno`` (1x1 struct) with ``objects`` (1xK struct
  array); each object has ``class`` (name), ``class_ind`` (VOC index, 15 = person), ``mask`` (H, W)
  and ``parts`` (1xP struct array of ``part_name``, ``mask`` (H, W); empty when none). Fields are read
  by name, or by position (objects 2nd field of anno; class_ind, mask, parts 2nd-4th of an object;
  part_name, mask 1st-2nd of a part) where unnamed. Part masks of every person are painted into 6
  parts (1 head: hair head lear rear lebrow rebrow leye reye mouth nose; 2 torso: neck torso;
  3 upper arm: luarm ruarm; 4 lower arm: llarm rlarm lhand rhand; 5 upper leg: luleg ruleg;
  6 lower leg: llleg rlleg lfoot rfoot), 0 = background elsewhere. An image with no annotated person
  is all ignore (-1), as the standard repos' ``AddIgnoreRegions`` does. Unknown part names fail.
* ``normals``: distilled normals, re-normalised to unit length; a decoded vector shorter than 0.5
  (grey, e.g. 128, 128, 128) is missing (zero vector). With ``normals_valid_classes`` (PASCAL-Context class
  ids of ``LabelMap``) normals are zeroed (missing) outside those classes, like the standard repos'
  NYU-compatible class filter; default None keeps every pixel (the class tables are not shipped here).
* ``sal``: binary, no ignore.
* ``edge``: binary boundaries of ``LabelMap``: a pixel is an edge when its label differs from its
  right or lower neighbour (one-pixel-wide boundaries; the standard repos use a Laplacian followed
  by morphological thinning, which needs scikit-image).

scipy (``scipy.io.loadmat``) is imported only when a ``.mat`` file is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..tasks import HUMAN_PART_CLASSES, IGNORE_LABEL, TaskSpec
from .layouts import (
    UINT8_MAX,
    DatasetError,
    check_files_exist,
    labels_to_int,
    read_png,
    require_dir,
    require_file,
    resize_nearest,
    resize_uint8_rgb,
    unit_normals,
)
from .nyud import DenseTaskDataset, ExtraTargets
from .transforms import JointAugment

PNG_IGNORE = 255
"""Ignore value of the semseg PNGs."""
SALIENT_ABOVE = 127
"""A sal_distill pixel is salient when its grey value is > 127 (i.e. > 0.5 of 255)."""
PERSON_CLASS_INDEX = 15
"""``class_ind`` of 'person' among the 20 PASCAL VOC classes (1-based)."""
HUMAN_PART_GROUPS: dict[int, tuple[str, ...]] = {
    1: ("hair", "head", "lear", "rear", "lebrow", "rebrow", "leye", "reye", "mouth", "nose"),
    2: ("neck", "torso"),
    3: ("luarm", "ruarm"),
    4: ("llarm", "rlarm", "lhand", "rhand"),
    5: ("luleg", "ruleg"),
    6: ("llleg", "rlleg", "lfoot", "rfoot"),
}
"""Human-part label (index into ``HUMAN_PART_CLASSES``) -> PASCAL-Part part names painted with it."""
PART_LABEL = {name: label for label, names in HUMAN_PART_GROUPS.items() for name in names}
DISTILLED_MIN_NORM = 0.5
"""A decoded normals_distill vector shorter than this (e.g. grey 128, 128, 128) is missing, not a normal."""
LABEL_MAP_KEY = "LabelMap"
# Positions of struct fields when they carry no names (the layout the standard repos index into).
ANNO_OBJECTS_POS, OBJ_CLASS_IND_POS, OBJ_PARTS_POS, PART_NAME_POS, PART_MASK_POS = 1, 1, 3, 0, 1

SPLIT_DIR = ("ImageSets", "Context")
IMAGE_DIR = "JPEGImages"
TASK_FILES: dict[str, tuple[str, str]] = {
    "semseg": ("semseg/pascal-context", ".png"),
    "human_parts": ("human_parts", ".mat"),
    "normals": ("normals_distill", ".png"),
    "sal": ("sal_distill", ".png"),
    "edge": ("pascal-context/trainval", ".mat"),
}
"""Task -> (folder under root, file suffix) of its source file."""
LABEL_MAP_SOURCE = TASK_FILES["edge"]


def _loadmat(path: Path) -> dict[str, Any]:
    from scipy.io import loadmat  # the dashboard's environment has no scipy; only PASCAL needs it
    from scipy.io.matlab import MatReadError

    try:
        return loadmat(path)
    except (OSError, ValueError, TypeError, NotImplementedError, MatReadError) as e:
        raise DatasetError(f"{path} is not a readable MATLAB file ({e})") from e


def _field(record: Any, name: str, position: int) -> Any:
    """A MATLAB struct field of a loadmat record, by name or else by position."""
    names = record.dtype.names or ()
    return record[name] if name in names else record[position]


def _scalar(value: Any) -> Any:
    return np.asarray(value).ravel()[0]


def human_parts_from_mat(mat: dict[str, Any], path: Path, hw: tuple[int, int]) -> np.ndarray:
    """(H, W) int64 human-part labels 0..6 of a PASCAL-Part ``anno`` struct (all -1 without people)."""
    try:
        objects = np.asarray(_field(mat["anno"][0, 0], "objects", ANNO_OBJECTS_POS)).ravel()
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise DatasetError(f"{path}: expected a struct 'anno' with an 'objects' struct array ({e})") from e
    target: np.ndarray | None = None
    for obj in objects:
        parts = np.asarray(_field(obj, "parts", OBJ_PARTS_POS))
        if int(_scalar(_field(obj, "class_ind", OBJ_CLASS_IND_POS))) != PERSON_CLASS_INDEX or parts.size == 0:
            continue
        if target is None:
            target = np.zeros(hw, dtype=np.int64)
        for part in parts.ravel():
            name = str(_scalar(_field(part, "part_name", PART_NAME_POS)))
            if name not in PART_LABEL:
                raise DatasetError(
                    f"{path}: unknown human part {name!r}; expected one of {sorted(PART_LABEL)}"
                )
            mask = np.asarray(_field(part, "mask", PART_MASK_POS)).astype(bool)
            if mask.shape != tuple(hw):
                raise DatasetError(
                    f"{path}: part mask {name!r} has size {mask.shape}, expected {tuple(hw)} (its image)"
                )
            target[mask] = PART_LABEL[name]
    return np.full(hw, IGNORE_LABEL, dtype=np.int64) if target is None else target


def label_map_from_mat(mat: dict[str, Any], path: Path, hw: tuple[int, int]) -> np.ndarray:
    """(H, W) int64 ``LabelMap`` of a PASCAL-Context ``.mat`` file."""
    if LABEL_MAP_KEY not in mat:
        raise DatasetError(f"{path}: no variable {LABEL_MAP_KEY!r}; expected the PASCAL-Context label map")
    labels = np.asarray(mat[LABEL_MAP_KEY])
    if labels.shape != tuple(hw) or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(
            f"{path}: {LABEL_MAP_KEY} is {labels.dtype} {labels.shape}, expected integers of {tuple(hw)}"
        )
    return labels.astype(np.int64)


def boundaries(labels: np.ndarray) -> np.ndarray:
    """(H, W) label map -> (H, W) int64 0/1: 1 where a pixel differs from its right or lower neighbour."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge.astype(np.int64)


class PascalContextDataset(DenseTaskDataset):
    """PASCAL-Context multi-task layout (module docstring). Extra keyword arguments:

    size: (H, W) of samples, default 512x512.
    normals_valid_classes: PASCAL-Context ``LabelMap`` class ids where distilled normals are kept.
    """

    supported_tasks = tuple(TASK_FILES)
    default_size = (512, 512)

    def __init__(
        self,
        root: str | Path,
        split: str,
        specs: Sequence[TaskSpec],
        labelled_mask: np.ndarray | None = None,
        augment: JointAugment | None = None,
        extra_targets: ExtraTargets | None = None,
        max_images: int | None = None,
        *,
        size: tuple[int, int] | None = None,
        seed: int | None = 0,
        normals_valid_classes: Sequence[int] | None = None,
    ):
        self.normals_valid_classes = (
            None if normals_valid_classes is None else np.asarray(normals_valid_classes)
        )
        for spec in specs:
            if spec.name == "human_parts" and spec.num_outputs != len(HUMAN_PART_CLASSES):
                raise ValueError(
                    f"human_parts is read as {len(HUMAN_PART_CLASSES)} classes "
                    f"{HUMAN_PART_CLASSES}; the spec has {spec.num_outputs}"
                )
        super().__init__(
            root, split, specs, labelled_mask, augment, extra_targets, max_images, size=size, seed=seed
        )

    def _path(self, folder_suffix: tuple[str, str], image_id: str) -> Path:
        folder, suffix = folder_suffix
        return self.root / folder / f"{image_id}{suffix}"

    def _sources(self, name: str) -> list[tuple[str, str]]:
        sources = [TASK_FILES[name]]
        if name == "normals" and self.normals_valid_classes is not None:
            sources.append(LABEL_MAP_SOURCE)
        return sources

    def _scan(self) -> tuple[int, tuple[int, int] | None]:
        root = require_dir(
            self.root, "PASCAL-Context in the PASCAL_MT layout (JPEGImages/, ImageSets/Context/, ...)"
        )
        split_file = require_file(
            root.joinpath(*SPLIT_DIR, f"{self.split}.txt"), f"the list of '{self.split}' image ids"
        )
        self.ids = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
        if not self.ids:
            raise DatasetError(f"{split_file} lists no image ids")
        require_dir(root / IMAGE_DIR, "the images as <id>.jpg")
        check_files_exist((self._path((IMAGE_DIR, ".jpg"), i) for i in self.ids), "image")
        for name in self.task_names:
            for source in self._sources(name):
                require_dir(root / source[0], f"the {name} files <id>{source[1]}")
                check_files_exist((self._path(source, i) for i in self.ids), f"{name} ({source[0]})")
        return len(self.ids), None

    def _image_hw(self, index: int) -> tuple[int, int]:
        path = self._path((IMAGE_DIR, ".jpg"), self.ids[index])
        try:
            with Image.open(path) as im:
                return im.height, im.width
        except OSError as e:
            raise DatasetError(f"{path} is not a readable image ({e})") from e

    def _read_image(self, index: int) -> np.ndarray:
        return resize_uint8_rgb(read_png(self._path((IMAGE_DIR, ".jpg"), self.ids[index]), "RGB"), self.size)

    def _read_targets(self, index: int, specs: list[TaskSpec]) -> dict[str, np.ndarray]:
        hw = self._image_hw(index)
        image_id = self.ids[index]
        out = {}
        for spec in specs:
            path = self._path(TASK_FILES[spec.name], image_id)
            out[spec.name] = resize_nearest(self._read_target(spec, path, image_id, hw), self.size)
        return out

    def _read_target(self, spec: TaskSpec, path: Path, image_id: str, hw: tuple[int, int]) -> np.ndarray:
        if spec.name == "semseg":
            arr = read_png(path)
            if arr.ndim != 2:
                raise DatasetError(f"{path}: semseg PNG has shape {arr.shape}, expected one channel (H, W)")
            return labels_to_int(arr, path, spec.num_outputs, (PNG_IGNORE,), hw)
        if spec.name == "human_parts":
            return human_parts_from_mat(_loadmat(path), path, hw)
        if spec.name == "sal":
            grey = read_png(path, "L")
            if grey.shape != tuple(hw):
                raise DatasetError(f"{path}: size {grey.shape}, expected {tuple(hw)} (its image)")
            return (grey > SALIENT_ABOVE).astype(np.int64)
        if spec.name == "edge":
            return boundaries(label_map_from_mat(_loadmat(path), path, hw))
        return self._read_normals(path, image_id, hw)

    def _read_normals(self, path: Path, image_id: str, hw: tuple[int, int]) -> np.ndarray:
        rgb = read_png(path, "RGB")
        if rgb.shape[:2] != tuple(hw):
            raise DatasetError(f"{path}: size {rgb.shape[:2]}, expected {tuple(hw)} (its image)")
        normals = rgb.transpose(2, 0, 1).astype(np.float32) / UINT8_MAX * 2.0 - 1.0  # (3, H, W)
        normals = np.where(np.linalg.norm(normals, axis=0) < DISTILLED_MIN_NORM, 0.0, normals)
        if self.normals_valid_classes is not None:
            mat_path = self._path(LABEL_MAP_SOURCE, image_id)
            labels = label_map_from_mat(_loadmat(mat_path), mat_path, hw)
            normals = np.where(np.isin(labels, self.normals_valid_classes), normals, 0.0)
        return unit_normals(normals)
