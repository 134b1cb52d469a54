"""NYUD-v2 datasets, and the base class every dataset of ``trainer.data`` shares.

NYUD-v2, preprocessed layout of the public MTAN / XTC code (also written by the synthetic set)::

    <root>/{train,val}/image/<i>.npy    (H, W, 3) float32 in [0, 1] (uint8 0..255 accepted)
    <root>/{train,val}/label/<i>.npy    (H, W) float or int: 0..12 = 13 classes, -1 = ignore (255 accepted)
    <root>/{train,val}/depth/<i>.npy    (H, W) or (H, W, 1) float32 metres, 0 = missing
    <root>/{train,val}/normal/<i>.npy   (H, W, 3) float32 in [-1, 1], zero vector = missing
    <root>/{train,val}/edge/<i>.npy     optional (H, W) uint8 binary edges, read only for an "edge" task

with i = 0..N-1 in every folder (H x W = 288 x 384 for the real data: 795 train / 654 val). Only the
folders of the requested tasks are required. Arrays are resized to ``size`` when it differs from the
stored size (bilinear image, nearest targets). Normals are re-normalised to unit length.

The nyuv2-mini frames (``NYUv2MiniDataset``) are documented in ``trainer.data.nyuv2_mini``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from ..tasks import TaskSpec
from .layouts import (
    RGB_CHANNELS,
    DatasetError,
    check_labelled_mask,
    first_existing_dir,
    ignore_target,
    image_to_chw,
    npy_shape,
    npy_target_to_sample,
    read_npy,
    require_dir,
    resize_image,
    resize_nearest,
    scan_npy_split,
)
from .nyuv2_mini import list_frames, load_frame, prepare_frame
from .transforms import JointAugment, to_tensor_sample

ExtraTargets = Callable[[int], dict[str, np.ndarray]]
FILL_THREADS = 4
"""Threads that decode samples in ``fill_cache`` (file reads and numpy conversions release the GIL)."""
PIXEL_EXTRA_PREFIXES = ("pseudo/", "pseudo_mask/")
"""Extra targets that must have the image's (H, W) (feature maps may be smaller)."""


class DenseTaskDataset(Dataset):
    """A split of a multi-task dense data set returning the sample dict of ``docs/architecture.md``.

    root, split: where the data is and which split.
    specs: the tasks to return, in ``DATASET_TASKS`` order (the order of ``labelled``).
    labelled_mask: (N, T) bool, row i = which tasks are labelled for image i (N = images of the
        split, or after ``max_images``); None = every task labelled. An unlabelled task is never
        read from disk: its target is the ignore value (-1 / 0 / zero vector).
    augment: joint augmentation applied to the numpy sample (image, targets and extra targets).
    extra_targets: ``index -> {key: array}`` (stage 2: ``pseudo/<t>`` (H, W), ``pseudo_mask/<t>``
        (H, W), ``feature_target/<t>`` (D, h, w), ``feature_mask/<t>`` (h, w)), merged in before
        augmentation so that they get the same geometry.
    max_images: keep only the first ``max_images`` images.
    size: (H, W) of returned samples; None = the data set's default (stored size for ``.npy`` layouts).
    seed: (>= 0) augmentation randomness of sample ``index`` in epoch ``e`` is ``default_rng((seed, e, index))``
        (``set_epoch(e)`` before each epoch), so it is reproducible and independent of workers.

    Sample: ``image`` (3, H, W) float32 normalised; ``<task>`` per spec; ``labelled`` (T,) bool;
    ``index`` int; plus any ``sample_flags`` of the subclass and the extra targets.

    Subclasses implement ``_scan`` (construction-time layout checks), ``_read_image`` and
    ``_read_targets`` (per-file checks), returning arrays at ``self.size``.
    """

    supported_tasks: ClassVar[tuple[str, ...]] = ()
    splits: ClassVar[tuple[str, ...]] = ("train", "val")
    default_size: ClassVar[tuple[int, int] | None] = None
    sample_flags: ClassVar[dict[str, Any]] = {}

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
    ):
        self.root = Path(root)
        self.split = split
        self.specs = tuple(specs)
        self.task_names = tuple(s.name for s in self.specs)
        if not self.specs:
            raise ValueError(f"{type(self).__name__}: no tasks given")
        unsupported = [n for n in self.task_names if n not in self.supported_tasks]
        if unsupported:
            raise ValueError(
                f"{type(self).__name__} has no task(s) {unsupported}; supported: {list(self.supported_tasks)}"
            )
        if split not in self.splits:
            raise DatasetError(f"{type(self).__name__}: unknown split {split!r}; valid: {list(self.splits)}")
        if max_images is not None and max_images < 1:
            raise ValueError(f"max_images must be >= 1 or None, got {max_images}")
        self.augment = augment
        self.extra_targets = extra_targets
        self.seed = 0 if seed is None else int(seed)
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.epoch = 0
        num_full, stored_size = self._scan()
        chosen = size or self.default_size or stored_size
        if chosen is None:
            raise ValueError(f"{type(self).__name__}: no size given and the data set has no default")
        self.size: tuple[int, int] = (int(chosen[0]), int(chosen[1]))
        self.num_images = num_full if max_images is None else min(num_full, max_images)
        self.labelled_mask = check_labelled_mask(labelled_mask, num_full, self.num_images, self.task_names)

    # -- subclass hooks -----------------------------------------------------------------------------
    def _scan(self) -> tuple[int, tuple[int, int] | None]:
        """Check the layout; return (number of images in the split, stored (H, W) or None)."""
        raise NotImplementedError

    def _read_image(self, index: int) -> np.ndarray:
        """(3, H, W) float32 in [0, 1] at ``self.size``."""
        raise NotImplementedError

    def _read_targets(self, index: int, specs: list[TaskSpec]) -> dict[str, np.ndarray]:
        """The targets of ``specs`` (labelled for this image) at ``self.size``, numpy convention."""
        raise NotImplementedError

    # -- public -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.num_images

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, images={len(self)}, "
            f"tasks={list(self.task_names)}, size={self.size})"
        )

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation randomness of epoch ``epoch`` (called by the training loop)."""
        self.epoch = int(epoch)

    def rng_for(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, int(index)))

    def load_numpy(self, index: int) -> dict[str, np.ndarray]:
        """Un-augmented numpy sample: ``image`` (3, H, W) in [0, 1] and one target per task
        (read from disk only where labelled, else the ignore value)."""
        labelled = self.labelled_mask[index]
        to_read = [s for s, on in zip(self.specs, labelled) if on]
        targets = self._read_targets(index, to_read) if to_read else {}
        sample = {"image": self._read_image(index)}
        for spec in self.specs:
            sample[spec.name] = targets[spec.name] if spec.name in targets else ignore_target(spec, self.size)
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        sample = self._load_cached(index)
        if self.extra_targets is not None:
            sample.update(self._checked_extras(index, sample))
        if self.augment is not None:
            sample = self.augment(sample, self.rng_for(index))
        out = to_tensor_sample(sample)
        out["labelled"] = torch.from_numpy(self.labelled_mask[index].copy())
        out["index"] = index
        out.update(self.sample_flags)
        return out

    def cache_in_memory(self) -> DenseTaskDataset:
        """Keep every un-augmented sample in memory after its first read (small sets trained for
        many epochs at a reduced size; augmentation never mutates the cached arrays)."""
        self._cache: dict[int, dict[str, np.ndarray]] | None = {}
        return self

    def fill_cache(self, indices: Sequence[int] | None = None, threads: int = FILL_THREADS) -> int:
        """Read ``indices`` (default: every image) into the in-memory cache now, ``threads`` at a time;
        returns how many were read. Before a multi-process loader starts, so that its workers (which
        fork a copy of the dataset every epoch) find every sample decoded instead of each decoding
        its share again every epoch. Needs ``cache_in_memory()`` first."""
        cache = getattr(self, "_cache", None)
        if cache is None:
            raise RuntimeError("fill_cache needs cache_in_memory() first")
        todo = [int(i) for i in (range(len(self)) if indices is None else indices) if int(i) not in cache]
        with ThreadPoolExecutor(max(1, threads)) as pool:
            for index, sample in zip(todo, pool.map(self.load_numpy, todo)):
                cache[index] = sample
        return len(todo)

    def _load_cached(self, index: int) -> dict[str, np.ndarray]:
        cache = getattr(self, "_cache", None)
        if cache is None:
            return self.load_numpy(index)
        if index not in cache:
            cache[index] = self.load_numpy(index)
        return dict(cache[index])

    def _checked_extras(self, index: int, sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        extras = self.extra_targets(index)
        for key, value in extras.items():
            if key in sample:
                raise ValueError(f"extra target {key!r} of image {index} would overwrite a sample key")
            if not isinstance(value, np.ndarray):
                raise ValueError(
                    f"extra target {key!r} of image {index} must be a numpy array, got {type(value)}"
                )
            if key.startswith(PIXEL_EXTRA_PREFIXES) and tuple(value.shape) != self.size:
                raise ValueError(
                    f"extra target {key!r} of image {index} has shape {value.shape}, expected "
                    f"{self.size} (the sample size); was discovery run at another size?"
                )
        return extras


class NpyLayoutDataset(DenseTaskDataset):
    """The MTAN / XTC ``<root>/<split>/<modality>/<i>.npy`` layout (NYUD-v2, Cityscapes, synthetic).

    ``task_folders`` maps each supported task to its folder name(s) (first existing wins).
    """

    image_folder: ClassVar[str] = "image"
    task_folders: ClassVar[dict[str, tuple[str, ...]]] = {}
    layout_name: ClassVar[str] = ""

    def _scan(self) -> tuple[int, tuple[int, int] | None]:
        modalities = ", ".join(
            [self.image_folder] + ["/".join(self.task_folders[n]) for n in self.task_names]
        )
        what = f"{self.layout_name} data: {{train,val}}/{{{modalities}}}/<i>.npy"
        root = require_dir(self.root, what)
        split_dir = require_dir(root / self.split, f"the '{self.split}' split of the {what}")
        self._folders = {"image": first_existing_dir(split_dir, (self.image_folder,), "images as <i>.npy")}
        for name in self.task_names:
            self._folders[name] = first_existing_dir(
                split_dir, self.task_folders[name], f"task {name!r} as <i>.npy"
            )
        count = scan_npy_split(split_dir, self._folders)
        first = self._folders["image"] / "0.npy"
        shape = npy_shape(first)
        if len(shape) != 3 or shape[2] != RGB_CHANNELS:
            raise DatasetError(f"{first}: image has shape {shape}, expected (H, W, 3)")
        self._stored_hw = (shape[0], shape[1])
        return count, self._stored_hw

    def _read_image(self, index: int) -> np.ndarray:
        path = self._folders["image"] / f"{index}.npy"
        return resize_image(image_to_chw(read_npy(path), path, self._stored_hw), self.size)

    def _read_targets(self, index: int, specs: list[TaskSpec]) -> dict[str, np.ndarray]:
        out = {}
        for spec in specs:
            path = self._folders[spec.name] / f"{index}.npy"
            target = npy_target_to_sample(read_npy(path), spec, path, self._stored_hw)
            out[spec.name] = resize_nearest(target, self.size)
        return out


class NYUDDataset(NpyLayoutDataset):
    """NYUD-v2 in the MTAN / XTC ``.npy`` layout (module docstring); also reads the synthetic set."""

    layout_name = "NYUD-v2"
    supported_tasks = ("semseg", "depth", "normals", "edge")
    task_folders = {"semseg": ("label",), "depth": ("depth",), "normals": ("normal",), "edge": ("edge",)}


class NYUv2MiniDataset(DenseTaskDataset):
    """The ten real nyuv2-mini frames (layout in ``trainer.data.nyuv2_mini``), prepared at ``size``
    (default 288x384). Every split name returns all ten frames (they are for evaluation and demos).

    Normals are derived from depth (``normals_are_derived``; samples carry ``normals_derived``):
    reading them reads the depth file even where the depth task itself is unlabelled.
    """

    supported_tasks = ("semseg", "depth", "normals")
    splits = ("train", "val", "test", "all")
    default_size = (288, 384)
    sample_flags = {"normals_derived": True}
    normals_are_derived = True

    def _scan(self) -> tuple[int, tuple[int, int] | None]:
        self.frame_ids = list_frames(self.root)
        return len(self.frame_ids), None

    def _read_image(self, index: int) -> np.ndarray:
        return prepare_frame(load_frame(self.root, self.frame_ids[index], ("rgb",)), self.size)["image"]

    def _read_targets(self, index: int, specs: list[TaskSpec]) -> dict[str, np.ndarray]:
        names = {s.name for s in specs}
        modalities = (["semseg"] if "semseg" in names else []) + (
            ["depth"] if names & {"depth", "normals"} else []
        )
        prepared = prepare_frame(load_frame(self.root, self.frame_ids[index], modalities), self.size)
        return {name: prepared[name] for name in names}
