"""Offline label discovery (paper Sec. 3.3): the frozen stage-1 model labels clean training images.

For every training image and task ``t`` one ``.npz`` file stores
  ``pseudo/<t>``         (H, W) uint8   argmax of softmax(G'_t): class, depth bin or normal centre index
  ``confidence/<t>``     (H, W) float16 max softmax(G'_t)
  ``pseudo_mask/<t>``    (H, W) uint8   confidence > tau_t (strictly greater, as in the paper)
  ``feature_target/<t>`` (D, h, w) float16  F''_t, the task feature after intra-task attention
                                          (the features the heads read; F' in the paper's L_f)
  ``feature_mask/<t>``   (h, w) float16 M_f_t = sigmoid(<F'_t, theta'_t>) (absent for models without it)
Files are written atomically and skipped when present, so a killed discovery resumes where it
stopped. ``manifest.json`` is written last; stage 2 refuses a folder whose manifest is missing or
whose image count does not match.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .tasks import TaskSpec

MANIFEST = "manifest.json"
MAX_CLASSES_UINT8 = 256


class DiscoveryError(RuntimeError):
    """A discovery folder is incomplete or does not match the data it is used with."""


def _image_path(out_dir: Path, index: int) -> Path:
    return out_dir / "images" / f"{index:06d}.npz"


def _save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def _batch_arrays(
    outputs: dict[str, Any], specs: tuple[TaskSpec, ...], taus: dict[str, float]
) -> tuple[list[dict[str, np.ndarray]], dict[str, int], list[int] | None]:
    """Per image of a batch, the arrays of its discovery file; kept pixels per task; F'_t's shape."""
    batch = next(iter(outputs["logits"].values())).shape[0]
    arrays: list[dict[str, np.ndarray]] = [{} for _ in range(batch)]
    kept: dict[str, int] = {}
    feature_shape = None
    for s in specs:
        probs = outputs["logits"][s.name].float().softmax(dim=1)  # (B, C_p, H, W)
        confidence, label = probs.max(dim=1)  # (B, H, W)
        mask = confidence > taus[s.name]
        kept[s.name] = int(mask.sum())
        feats = outputs.get("task_features", {}).get(s.name)  # (B, D, h, w)
        fmask = outputs.get("global_scores", {}).get(s.name)  # (B, h, w)
        for b, a in enumerate(arrays):
            a[f"pseudo/{s.name}"] = label[b].cpu().numpy().astype(np.uint8)
            a[f"confidence/{s.name}"] = confidence[b].cpu().numpy().astype(np.float16)
            a[f"pseudo_mask/{s.name}"] = mask[b].cpu().numpy().astype(np.uint8)
            if feats is not None:
                a[f"feature_target/{s.name}"] = feats[b].float().cpu().numpy().astype(np.float16)
                feature_shape = list(feats.shape[1:])
            if fmask is not None:
                a[f"feature_mask/{s.name}"] = fmask[b].float().cpu().numpy().astype(np.float16)
    return arrays, kept, feature_shape


@torch.no_grad()
def discover(
    model: nn.Module,
    dataset: Dataset,
    specs: tuple[TaskSpec, ...],
    taus: dict[str, float],
    out_dir: str | Path,
    device: torch.device,
    batch_size: int = 8,
    source: str = "",
) -> dict[str, Any]:
    """Run the frozen ``model`` over the clean (un-augmented) ``dataset`` and write discovery files.

    Returns the manifest (also written to ``out_dir/manifest.json``) with per-task coverage: the
    fraction of pixels whose confidence exceeds tau.
    """
    for s in specs:
        if s.num_outputs > MAX_CLASSES_UINT8:
            raise DiscoveryError(f"task {s.name}: {s.num_outputs} classes do not fit uint8 pseudo labels")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)  # incomplete until rewritten at the end
    model.eval().to(device)
    kept = dict.fromkeys((s.name for s in specs), 0)
    total_pixels = 0
    feature_shape: list[int] | None = None
    todo = [i for i in range(len(dataset)) if not _image_path(out_dir, i).exists()]
    loader = DataLoader(torch.utils.data.Subset(dataset, todo), batch_size=batch_size, shuffle=False)
    done = 0
    for batch in tqdm(loader, desc="discovery", disable=not todo):
        arrays, batch_kept, shape = _batch_arrays(model(batch["image"].to(device)), specs, taus)
        kept = {k: v + batch_kept[k] for k, v in kept.items()}
        feature_shape = shape or feature_shape
        total_pixels += int(batch["image"].shape[0] * batch["image"].shape[2] * batch["image"].shape[3])
        for b, a in enumerate(arrays):
            _save_npz_atomic(_image_path(out_dir, todo[done + b]), a)
        done += len(arrays)
    if len(todo) < len(dataset):  # resumed: count what earlier runs wrote too
        kept, total_pixels, feature_shape = _coverage_of_folder(out_dir, specs, len(dataset))
    manifest = {
        "num_images": len(dataset),
        "tasks": [s.name for s in specs],
        "tau": {s.name: float(taus[s.name]) for s in specs},
        "feature_shape": feature_shape,
        "coverage": {k: v / total_pixels for k, v in kept.items()} if total_pixels else None,
        "source_checkpoint": source,
        "complete": True,
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def _coverage_of_folder(
    out_dir: Path, specs: tuple[TaskSpec, ...], num_images: int
) -> tuple[dict[str, int], int, list[int] | None]:
    """Kept pixels per task, total pixels and feature shape over every written image file."""
    kept = dict.fromkeys((s.name for s in specs), 0)
    total, feature_shape = 0, None
    for i in range(num_images):
        with np.load(_image_path(out_dir, i)) as z:
            for s in specs:
                mask = z[f"pseudo_mask/{s.name}"]
                kept[s.name] += int(mask.sum())
                if f"feature_target/{s.name}" in z.files:
                    feature_shape = list(z[f"feature_target/{s.name}"].shape)
            total += int(mask.size)
    return kept, total, feature_shape


class DiscoveredTargets:
    """Reads a complete discovery folder: ``targets(index)`` -> dense arrays for stage 2.

    The returned dict has, per task, ``pseudo/<t>`` (H, W) int64, ``pseudo_mask/<t>`` (H, W) float32,
    and where saved ``feature_target/<t>`` (D, h, w) float32 and ``feature_mask/<t>`` (h, w) float32.
    Pass it as ``extra_targets`` to a dataset so that augmentation moves them with the image.
    """

    def __init__(self, out_dir: str | Path, specs: tuple[TaskSpec, ...], num_images: int):
        self.out_dir = Path(out_dir)
        path = self.out_dir / MANIFEST
        if not path.exists():
            present = (
                len(list((self.out_dir / "images").glob("*.npz")))
                if (self.out_dir / "images").exists()
                else 0
            )
            raise DiscoveryError(
                f"discovery folder {self.out_dir} is incomplete ({present} of {num_images} images, no "
                f"{MANIFEST}); re-run `python -m trainer discover` to complete it before stage 2"
            )
        self.manifest = json.loads(path.read_text())
        if self.manifest.get("num_images") != num_images:
            raise DiscoveryError(
                f"{path} covers {self.manifest.get('num_images')} images, the training set has {num_images}"
            )
        names = [s.name for s in specs]
        if self.manifest.get("tasks") != names:
            raise DiscoveryError(f"{path} has tasks {self.manifest.get('tasks')}, expected {names}")
        self.specs = specs

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        path = _image_path(self.out_dir, index)
        try:
            with np.load(path) as z:
                out: dict[str, np.ndarray] = {}
                for key in z.files:
                    kind = key.split("/")[0]
                    if kind == "pseudo":
                        out[key] = z[key].astype(np.int64)
                    elif kind in ("pseudo_mask", "feature_target", "feature_mask"):
                        out[key] = z[key].astype(np.float32)
                return out
        except (OSError, ValueError) as e:
            raise DiscoveryError(f"discovery file {path} is unreadable ({e}); re-run discovery") from e
