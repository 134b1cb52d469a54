"""Tiny data sets written in the exact on-disk layouts the readers of ``trainer.data`` expect.

Reusable by any test: ``from fixtures_data import write_nyud_fixture`` (pytest puts ``tests/`` on
``sys.path``). Every writer is seeded and returns the root it wrote. Contents are simple patterns:

* class maps are blocks of ``BLOCK`` x ``BLOCK`` pixels (class = block index mod C), the top-left
  block ignore (-1 / 255), so alignment is easy to check;
* depth in [``DEPTH_MIN``, ``DEPTH_MAX``] metres with a missing (0) top-left block;
* normals unit vectors facing the camera (negative z) with a missing (zero) top-left block.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

BLOCK = 8
DEPTH_MIN, DEPTH_MAX = 0.5, 10.0
NYUD_CLASSES = 13
CITYSCAPES_CLASSES = 7
PASCAL_CLASSES = 21
PNG_IGNORE = 255
PERSON = 15
DOG = 12


def block_labels(height: int, width: int, num_classes: int, offset: int = 0, ignore: int = -1) -> np.ndarray:
    """(H, W) int64 block pattern: class (block_row * 3 + block_col + offset) % C, top-left block = ignore."""
    rows, cols = np.mgrid[0:height, 0:width] // BLOCK
    labels = (rows * 3 + cols + offset) % num_classes
    labels[:BLOCK, :BLOCK] = ignore
    return labels.astype(np.int64)


def random_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]."""
    return rng.random((height, width, 3), dtype=np.float32)


def random_depth(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W) float32 metres in [DEPTH_MIN, DEPTH_MAX], top-left block missing (0)."""
    depth = rng.uniform(DEPTH_MIN, DEPTH_MAX, size=(height, width)).astype(np.float32)
    depth[:BLOCK, :BLOCK] = 0.0
    return depth


def random_normals(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 unit vectors with z < 0, top-left block zero (missing)."""
    n = rng.normal(size=(height, width, 3)).astype(np.float32)
    n[..., 2] = -np.abs(n[..., 2]) - 0.5
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    n[:BLOCK, :BLOCK] = 0.0
    return n


def _write_npy_split(split_dir: Path, arrays: dict[str, list[np.ndarray]]) -> None:
    for folder, items in arrays.items():
        (split_dir / folder).mkdir(parents=True, exist_ok=True)
        for i, a in enumerate(items):
            np.save(split_dir / folder / f"{i}.npy", a)


def write_nyud_fixture(
    root: Path,
    n_train: int = 4,
    n_val: int = 3,
    height: int = 32,
    width: int = 48,
    seed: int = 0,
    with_edge: bool = False,
) -> Path:
    """NYUD-v2 MTAN layout: ``root/{train,val}/{image,label,depth,normal}[,edge]/<i>.npy``.

    image (H, W, 3) float32 [0, 1]; label (H, W) float32 (MTAN stores floats) 0..12, -1 ignore;
    depth (H, W) float32 metres; normal (H, W, 3) float32; edge (H, W) uint8 0/1.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split, n in (("train", n_train), ("val", n_val)):
        arrays: dict[str, list[np.ndarray]] = {"image": [], "label": [], "depth": [], "normal": []}
        if with_edge:
            arrays["edge"] = []
        for i in range(n):
            labels = block_labels(height, width, NYUD_CLASSES, offset=i)
            arrays["image"].append(random_image(rng, height, width))
            arrays["label"].append(labels.astype(np.float32))
            arrays["depth"].append(random_depth(rng, height, width))
            arrays["normal"].append(random_normals(rng, height, width))
            if with_edge:
                edge = np.zeros((height, width), dtype=np.uint8)
                edge[:, ::BLOCK] = 1
                arrays["edge"].append(edge)
        _write_npy_split(root / split, arrays)
    return root


def write_cityscapes_fixture(
    root: Path,
    n_train: int = 4,
    n_val: int = 3,
    height: int = 16,
    width: int = 32,
    seed: int = 0,
) -> Path:
    """Cityscapes MTAN layout: ``root/{train,val}/{image,label,depth}/<i>.npy``.

    image (H, W, 3) float32 [0, 1]; label (H, W) float32 0..6, -1 ignore; depth (H, W, 1) float32
    disparity (0 = missing).
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split, n in (("train", n_train), ("val", n_val)):
        arrays: dict[str, list[np.ndarray]] = {"image": [], "label": [], "depth": []}
        for i in range(n):
            arrays["image"].append(random_image(rng, height, width))
            arrays["label"].append(
                block_labels(height, width, CITYSCAPES_CLASSES, offset=i).astype(np.float32)
            )
            arrays["depth"].append((random_depth(rng, height, width) / DEPTH_MAX)[..., None])
        _write_npy_split(root / split, arrays)
    return root


def _human_parts_struct(
    image_id: str, objects: list[tuple[str, int, np.ndarray, list[tuple[str, np.ndarray]]]]
) -> np.ndarray:
    """PASCAL-Part ``anno`` struct: (1, 1) record of imname, objects (1, K) of class, class_ind, mask,
    parts (1, P) of part_name, mask (an empty (0, 0) array when an object has no parts)."""
    obj_dtype = [("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]
    part_dtype = [("part_name", "O"), ("mask", "O")]
    objs = np.empty((1, len(objects)), dtype=obj_dtype)
    for k, (name, class_ind, mask, parts) in enumerate(objects):
        if parts:
            part_arr = np.empty((1, len(parts)), dtype=part_dtype)
            for j, (part_name, part_mask) in enumerate(parts):
                part_arr[0, j] = (part_name, part_mask.astype(np.uint8))
        else:
            part_arr = np.zeros((0, 0))
        objs[0, k] = (name, np.array([[class_ind]], dtype=np.uint8), mask.astype(np.uint8), part_arr)
    anno = np.empty((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = (image_id, objs)
    return anno


def pascal_ids(n: int) -> list[str]:
    return [f"2008_{k:06d}" for k in range(n)]


def pascal_fixture_size(k: int, height: int, width: int) -> tuple[int, int]:
    """Image k of the PASCAL fixture has its own size (the reader resizes every image)."""
    return height + 4 * (k % 3), width - 4 * (k % 2)


def pascal_person_parts(height: int, width: int) -> dict[str, np.ndarray]:
    """Part masks of the fixture's person: head rows [0, 8), torso [8, 16), lhand [16, 24) of the
    left half (parts -> labels 1, 2, 4)."""
    parts = {}
    for r, name in enumerate(("head", "torso", "lhand")):
        m = np.zeros((height, width), dtype=bool)
        m[r * BLOCK : (r + 1) * BLOCK, : width // 2] = True
        parts[name] = m
    return parts


def write_pascal_fixture(
    root: Path,
    n_train: int = 3,
    n_val: int = 2,
    height: int = 40,
    width: int = 56,
    seed: int = 0,
) -> Path:
    """PASCAL-Context PASCAL_MT layout (see ``trainer/data/pascal.py``), images of varying sizes.

    Even images have a person (human parts from ``pascal_person_parts``) and a dog with parts; odd
    images only the dog (their human parts are all ignore). semseg = ``block_labels`` (21 classes,
    255 ignore); normals_distill RGB facing the camera; sal_distill 255 on the left half;
    pascal-context LabelMap = blocks (uint16).
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    ids = pascal_ids(n_train + n_val)
    dirs = [
        "JPEGImages",
        "semseg/pascal-context",
        "human_parts",
        "normals_distill",
        "sal_distill",
        "pascal-context/trainval",
        "ImageSets/Context",
    ]
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    from scipy.io import savemat

    for k, image_id in enumerate(ids):
        h, w = pascal_fixture_size(k, height, width)
        rgb = (random_image(rng, h, w) * 255).astype(np.uint8)
        Image.fromarray(rgb).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        seg = block_labels(h, w, PASCAL_CLASSES, offset=k, ignore=PNG_IGNORE).astype(np.uint8)
        Image.fromarray(seg).save(root / "semseg/pascal-context" / f"{image_id}.png")
        normals = random_normals(rng, h, w)
        Image.fromarray(np.round((normals + 1.0) / 2.0 * 255).astype(np.uint8)).save(
            root / "normals_distill" / f"{image_id}.png"
        )
        sal = np.zeros((h, w), dtype=np.uint8)
        sal[:, : w // 2] = 255
        Image.fromarray(sal).save(root / "sal_distill" / f"{image_id}.png")
        label_map = (np.mgrid[0:h, 0:w][1] // BLOCK).astype(np.uint16) + 1
        savemat(root / "pascal-context/trainval" / f"{image_id}.mat", {"LabelMap": label_map})
        dog_mask = np.zeros((h, w), dtype=bool)
        dog_mask[-BLOCK:, :] = True
        objects = [("dog", DOG, dog_mask, [("leye", dog_mask), ("tail", dog_mask)])]
        if k % 2 == 0:
            parts = pascal_person_parts(h, w)
            person = np.logical_or.reduce(list(parts.values()))
            objects.insert(0, ("person", PERSON, person, list(parts.items())))
        savemat(root / "human_parts" / f"{image_id}.mat", {"anno": _human_parts_struct(image_id, objects)})
    (root / "ImageSets/Context/train.txt").write_text("\n".join(ids[:n_train]) + "\n")
    (root / "ImageSets/Context/val.txt").write_text("\n".join(ids[n_train:]) + "\n")
    return root
