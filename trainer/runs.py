"""Run folders: what a run or a pipeline folder holds, and the functions that read and write it.

A run folder holds ``config.json`` (the resolved RunConfig), ``checkpoint.pt`` (self-describing),
``log.jsonl`` (every loss term and eval metric per epoch) and ``metrics.json`` (final evaluation).
A pipeline folder holds ``split.json`` (the label masks every method shares), ``quantisers.json``
(depth bins and normal centres fitted on the labelled training targets), one run folder per method,
``discovery/`` and ``metrics.json`` with one entry per method and its Delta_MTL against STL.

Nothing here trains: ``trainer.pipeline`` runs methods, ``trainer.cli`` parses the command line,
and ``trainer.export`` reads run folders through this module.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from .checkpoint import CHECKPOINT_NAME, load_checkpoint
from .config import TASK_SET, RunConfig
from .data import build_dataset
from .data.partial_labels import load_label_mask, make_label_mask, save_label_mask
from .data.transforms import JointAugment, normal_flip_permutation
from .models import build_model
from .quantise import build_quantisers, quantisers_from_dict, quantisers_to_dict
from .tasks import TaskSpec, tasks_for

SPLIT_NAME = "split.json"
QUANTISERS_NAME = "quantisers.json"
METRICS_NAME = "metrics.json"
CONFIG_NAME = "config.json"
DISCOVERY_DIR = "discovery"

VALIDATION_KEY = "validation"
"""Key, in the split file's ``meta``, of the training-scene indices held out as the validation split."""


def task_specs(cfg: RunConfig) -> tuple[TaskSpec, ...]:
    return tasks_for(TASK_SET[cfg.data.dataset])


def dataset_for(
    cfg: RunConfig,
    root: str | Path,
    split: str,
    specs: tuple[TaskSpec, ...],
    labelled_mask: np.ndarray | None = None,
    augment: bool = False,
    extra_targets: Any = None,
    dataset: str | None = None,
    quantisers: dict | None = None,
) -> Dataset:
    """A split of the run's data set at the run's input size.

    With ``quantisers``, a horizontal flip also mirrors normal pseudo labels (centre indices are
    remapped to the index of the mirrored centre). ``augment`` uses ``cfg.data.photometric``.
    """
    flip_maps = {
        f"pseudo/{s.name}": normal_flip_permutation(quantisers[s.name].centres)
        for s in specs
        if s.kind == "normals" and quantisers
    }
    max_images = cfg.data.max_train_images if split == "train" else cfg.data.max_eval_images
    data = build_dataset(
        dataset or cfg.data.dataset,
        root,
        split,
        specs,
        labelled_mask=labelled_mask,
        augment=JointAugment(flip_index_maps=flip_maps or None, photometric=cfg.data.photometric)
        if augment
        else None,
        extra_targets=extra_targets,
        max_images=max_images,
        size=(cfg.data.height, cfg.data.width),
        seed=cfg.train.seed,
    )
    return data.cache_in_memory() if cfg.data.cache_in_memory else data


class TrainSubset(Subset):
    """A subset of a training set that forwards ``set_epoch`` (per-epoch augmentation seeds)."""

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


def validation_indices(path: Path) -> np.ndarray:
    """Training-scene indices held out as the validation split by the split file at ``path`` (may be empty)."""
    doc = json.loads(Path(path).read_text())
    return np.asarray(doc.get("meta", {}).get(VALIDATION_KEY, []), dtype=np.int64)


def _hold_out(mask: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Seeded choice of ``count`` training scenes for validation; their label rows are cleared in place."""
    if not 0 < count < len(mask):
        raise ValueError(f"validation_images must be in 1..{len(mask) - 1}, got {count}")
    held = np.sort(np.random.default_rng([seed, 7]).choice(len(mask), size=count, replace=False))
    mask[held] = False  # a held-out scene is never trained on, so none of its labels is "available"
    return held


def _load_split(cfg: RunConfig, names: list[str], path: Path) -> np.ndarray:
    mask = load_label_mask(path, names)
    held = validation_indices(path)
    if len(held) != cfg.data.validation_images:
        raise ValueError(
            f"{path} holds out {len(held)} validation scenes, the config asks for "
            f"{cfg.data.validation_images}: use another split file"
        )
    return mask


def ensure_split(cfg: RunConfig, root: str | Path, specs: tuple[TaskSpec, ...], path: Path) -> np.ndarray:
    """Load the label masks at ``path``, or make them once from the split seed and save them there.

    With ``data.validation_images`` > 0 the file also names the held-out validation scenes (their
    rows of the mask are all False); a file made with another count is refused.
    """
    names = [s.name for s in specs]
    if path.exists():
        return _load_split(cfg, names, path)
    n = len(dataset_for(cfg, root, "train", specs))
    d = cfg.data
    mask = make_label_mask(
        n, names, d.setting, d.split_seed, few_shot_k=d.few_shot_k, few_shot_task=d.few_shot_task
    )
    meta: dict[str, Any] = {"dataset": d.dataset, "root": str(root)}
    if d.validation_images:
        meta[VALIDATION_KEY] = _hold_out(mask, d.validation_images, d.split_seed).tolist()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_label_mask(path, mask, names, d.setting, d.split_seed, meta)
    return mask


def ensure_quantisers(
    cfg: RunConfig, root: str | Path, specs: tuple[TaskSpec, ...], mask: np.ndarray, path: Path
) -> dict:
    """Quantisers fitted on the *labelled* training targets only, saved once and shared by all methods."""
    if path.exists():
        return quantisers_from_dict(json.loads(path.read_text()), specs)
    train = dataset_for(cfg, root, "train", specs, labelled_mask=mask)
    # NYUD-v2: k-means centres of the labelled training normals (paper); PASCAL-Context's normals are
    # distilled, so the paper spreads its 40 centres uniformly over the sphere
    normal_method = "uniform" if TASK_SET[cfg.data.dataset] == "pascal" else "kmeans"
    quantisers = build_quantisers(specs, train, seed=cfg.data.split_seed, normal_method=normal_method)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(quantisers_to_dict(quantisers)))
    return quantisers


def load_run(run_dir: str | Path, map_location: str = "cpu") -> tuple[RunConfig, torch.nn.Module, dict, dict]:
    """(config, model with trained weights, quantisers, checkpoint) of a run folder."""
    state = load_checkpoint(Path(run_dir) / CHECKPOINT_NAME, map_location=map_location)
    cfg = RunConfig.from_dict(state["config"])
    specs = task_specs(cfg)
    # the weights come from the checkpoint: no ImageNet file (or package) is needed to load a run
    model = build_model(replace(cfg.model, pretrained=False, backbone_checkpoint=None), specs)
    model.load_state_dict(state["model"])
    return cfg, model.eval(), quantisers_from_dict(state["quantisers"], specs), state


def read_json(path: Path, default: Any = None) -> Any:
    """The JSON document at ``path``, or ``default`` when there is no file."""
    return json.loads(path.read_text()) if path.exists() else default


def write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))


def read_run_metrics(run_dir: str | Path) -> dict[str, Any]:
    """The final per-task metrics of a run folder (``{}`` when it has not finished)."""
    return read_json(Path(run_dir) / METRICS_NAME, {}).get("metrics", {})
