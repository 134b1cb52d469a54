"""Partial-label settings as data: a seeded (N, T) boolean mask, saved once and reused by every method.

``mask[i, t]`` is True when task ``t`` (in ``task_names`` order, i.e. ``DATASET_TASKS`` order) is
labelled for training image ``i``. Settings (paper Sec. 4.1):

* ``one-label``: exactly one task per image, balanced: a random permutation of the images is dealt
  to the tasks round-robin (counts differ by at most one).
* ``random-labels``: each image gets k tasks, k uniform in 1..T-1, the k tasks uniform at random
  (for T = 2 this is one-label, unbalanced).
* ``full-labels``: every task on every image.
* ``few-shot``: one task (default the first) labelled on only ``few_shot_k`` random images, every
  other task on all images.

File format (JSON)::

    {"setting": "one-label", "seed": 0, "tasks": ["semseg", "depth", "normals"], "num_images": 795,
     "images": {"0": ["semseg"], "1": ["normals"], ...}, "meta": {...}}

``images`` lists, per image index, its labelled tasks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import SETTINGS

MIN_TASKS_RANDOM_LABELS = 2
"""random-labels draws 1..T-1 tasks per image, which needs at least two tasks."""


def make_label_mask(
    num_images: int,
    task_names: Sequence[str],
    setting: str,
    seed: int,
    few_shot_k: int = 10,
    few_shot_task: str | None = None,
) -> np.ndarray:
    """(num_images, T) bool label mask of ``setting``; the same arguments always give the same mask."""
    names = list(task_names)
    num_tasks = len(names)
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; valid: {list(SETTINGS)}")
    if num_images < 1 or num_tasks < 1:
        raise ValueError(f"need at least one image and one task, got {num_images} images, tasks {names}")
    if len(set(names)) != num_tasks:
        raise ValueError(f"task names must be unique, got {names}")
    rng = np.random.default_rng(seed)
    mask = np.zeros((num_images, num_tasks), dtype=bool)
    if setting == "full-labels":
        mask[:] = True
    elif setting == "one-label":
        order = rng.permutation(num_images)  # (N,)
        mask[order, np.arange(num_images) % num_tasks] = True
    elif setting == "random-labels":
        if num_tasks < MIN_TASKS_RANDOM_LABELS:
            raise ValueError(f"random-labels needs at least {MIN_TASKS_RANDOM_LABELS} tasks, got {names}")
        counts = rng.integers(1, num_tasks, size=num_images)  # (N,) in 1..T-1
        for i, k in enumerate(counts):
            mask[i, rng.choice(num_tasks, size=int(k), replace=False)] = True
    else:  # few-shot
        task = names[0] if few_shot_task is None else few_shot_task
        if task not in names:
            raise ValueError(f"few_shot_task {task!r} is not one of the tasks {names}")
        if not 1 <= few_shot_k <= num_images:
            raise ValueError(
                f"few_shot_k must be in 1..{num_images} (the number of images), got {few_shot_k}"
            )
        mask[:] = True
        column = names.index(task)
        mask[:, column] = False
        mask[rng.choice(num_images, size=few_shot_k, replace=False), column] = True
    return mask


def save_label_mask(
    path: str | Path,
    mask: np.ndarray,
    task_names: Sequence[str],
    setting: str,
    seed: int,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write ``mask`` (N, T) as JSON (format in the module docstring)."""
    mask = np.asarray(mask, dtype=bool)
    names = list(task_names)
    if mask.ndim != 2 or mask.shape[1] != len(names):
        raise ValueError(f"mask has shape {mask.shape}, expected (N, {len(names)}) for tasks {names}")
    doc = {
        "setting": setting,
        "seed": int(seed),
        "tasks": names,
        "num_images": int(mask.shape[0]),
        "images": {str(i): [names[t] for t in np.flatnonzero(row)] for i, row in enumerate(mask)},
        "meta": dict(meta or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))


def load_label_mask(path: str | Path, task_names: Sequence[str], num_images: int | None = None) -> np.ndarray:
    """(N, T) bool mask from a file written by ``save_label_mask``, columns in ``task_names`` order.

    Fails with ``ValueError`` naming the file when its tasks are not exactly ``task_names`` (any
    order), when ``num_images`` is given and differs, or when the file is malformed.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        file_tasks, count, images = list(doc["tasks"]), int(doc["num_images"]), doc["images"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path} is not a label-mask file ({type(e).__name__}: {e})") from e
    names = list(task_names)
    if sorted(file_tasks) != sorted(names):
        raise ValueError(f"{path} holds label masks for tasks {file_tasks}, expected {names}")
    if num_images is not None and count != num_images:
        raise ValueError(f"{path} covers {count} images, the training split has {num_images}")
    if not isinstance(images, dict) or sorted(images, key=lambda k: (len(k), k)) != [
        str(i) for i in range(count)
    ]:
        raise ValueError(f"{path}: 'images' must have the keys '0'..'{count - 1}'")
    column = {n: t for t, n in enumerate(names)}
    mask = np.zeros((count, len(names)), dtype=bool)
    for key, labelled in images.items():
        unknown = [n for n in labelled if n not in column]
        if unknown:
            raise ValueError(f"{path}: image {key} lists unknown task(s) {unknown}; tasks are {names}")
        mask[int(key), [column[n] for n in labelled]] = True
    return mask
