"""Runs methods: one method trained and evaluated in its own folder, and the whole comparison pipeline.

What a run or pipeline folder holds, and the functions that read and write it, are in
``trainer.runs`` (re-exported here: ``dataset_for``, ``ensure_split``, ``load_run`` ...); the
command-line handlers are in ``trainer.cli``. Methods are looked up by name in
``hitts_schema.METHODS``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from hitts_schema import DEFAULT_METHODS, DELTA_ALL_KEY, DELTA_KEY, get_method, metric_set_for, val_metrics

from .checkpoint import CHECKPOINT_NAME
from .config import TASK_SET, RunConfig
from .discovery import MANIFEST as DISCOVERY_MANIFEST
from .discovery import DiscoveredTargets, discover
from .engine import LossFn, fit, resolve_device
from .losses import compute_losses
from .metrics import MultiTaskMeter, delta_mtl
from .models import build_model
from .quantise import logits_to_outputs, quantisers_to_dict
from .runs import (
    CONFIG_NAME,
    DISCOVERY_DIR,
    METRICS_NAME,
    QUANTISERS_NAME,
    SPLIT_NAME,
    VALIDATION_KEY,
    TrainSubset,
    dataset_for,
    ensure_quantisers,
    ensure_split,
    load_run,
    read_json,
    task_specs,
    validation_indices,
    write_json,
)
from .tasks import TaskSpec, tau_for

__all__ = [  # run-folder names and readers re-exported from trainer.runs for existing importers
    "DEFAULT_METHODS",
    "DISCOVERY_DIR",
    "METRICS_NAME",
    "QUANTISERS_NAME",
    "SPLIT_NAME",
    "VALIDATION_KEY",
    "TrainSubset",
    "dataset_for",
    "ensure_quantisers",
    "ensure_split",
    "evaluate_model",
    "load_run",
    "method_config",
    "run_discovery",
    "run_pipeline",
    "task_specs",
    "train_method",
    "validation_indices",
]

EVAL_BATCH = 8


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module,
    dataset: Dataset,
    specs: tuple[TaskSpec, ...],
    quantisers: dict,
    device: torch.device,
) -> dict[str, dict[str, float]]:
    """Paper metrics over a whole split, accumulated in one pass."""
    was_training = model.training
    model.eval().to(device)
    meter = MultiTaskMeter(specs)
    for batch in DataLoader(dataset, batch_size=EVAL_BATCH, shuffle=False):
        logits = model(batch["image"].to(device))["logits"]
        # NCHW whatever the model's memory format: the decoding reduces over the class axis
        outputs = {
            s.name: logits_to_outputs(s, logits[s.name].float().contiguous(), quantisers[s.name])
            for s in specs
        }
        meter.update(outputs, {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()})
    model.train(was_training)
    return meter.compute()


def _method_data(
    cfg: RunConfig,
    root: str | Path,
    specs: tuple[TaskSpec, ...],
    mask: np.ndarray,
    quantisers: dict,
    discovery_dir: Path | None,
    held_out: np.ndarray,
) -> tuple[Dataset, Dataset, Dataset]:
    """(train, per-epoch validation, test) sets of one method.

    Stage 2 samples carry the discovery's pseudo labels and feature targets. With held-out scenes
    the validation set is those scenes (never trained on); without, it is the data set's test split
    ("val" folder on disk), as is the test set.
    """
    extra = None
    if cfg.stage == 2:
        if discovery_dir is None:
            raise ValueError("stage 2 needs a discovery folder (--discovery)")
        n = len(dataset_for(cfg, root, "train", specs, labelled_mask=mask))
        extra = DiscoveredTargets(discovery_dir, specs, n)
    train = dataset_for(
        cfg,
        root,
        "train",
        specs,
        labelled_mask=mask,
        augment=cfg.data.augment,
        extra_targets=extra,
        quantisers=quantisers if extra else None,
    )
    test = dataset_for(cfg, root, "val", specs)
    if not len(held_out):
        return train, test, test
    train = TrainSubset(train, np.setdiff1d(np.arange(len(train)), held_out).tolist())
    val = Subset(dataset_for(cfg, root, "train", specs), held_out.tolist())
    return train, val, test


def _fill_cache(cfg: RunConfig, train: Dataset) -> None:
    """With loader workers and an in-memory cache, decode every training sample once, now, in this
    process: the workers fork it every epoch and would otherwise decode their share again each time."""
    if not (cfg.data.num_workers > 0 and cfg.data.cache_in_memory):
        return
    indices = train.indices if isinstance(train, Subset) else None
    base = train.dataset if isinstance(train, Subset) else train
    if hasattr(base, "fill_cache"):
        base.fill_cache(indices)


def _checkpoint_meta(cfg: RunConfig, specs: tuple[TaskSpec, ...], root: str | Path, quantisers: dict) -> dict:
    """What makes a checkpoint self-describing (export and resume rebuild everything from it)."""
    return {
        "config": cfg.to_dict(),
        "tasks": [s.name for s in specs],
        "stage": cfg.stage,
        "dataset": cfg.data.dataset,
        "data_root": str(root),
        "quantisers": quantisers_to_dict(quantisers),
    }


def _loss_fn(cfg: RunConfig, specs: tuple[TaskSpec, ...], quantisers: dict) -> LossFn:
    """The method's loss: L_s, plus L_p and L_f as its config says, in its loss form."""

    def loss_fn(outputs: dict, batch: dict) -> dict:
        return compute_losses(
            outputs,
            batch,
            specs,
            quantisers,
            use_pseudo=cfg.use_pseudo_labels,
            use_features=cfg.use_feature_targets,
            loss_form=cfg.loss.form,
        )

    return loss_fn


def last_val_metrics(log: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The ``val/<task>/<metric>`` entries of the last log record, as {task: {metric: value}}."""
    return val_metrics(log[-1])


def train_method(
    cfg: RunConfig,
    root: str | Path,
    run_dir: Path,
    mask: np.ndarray,
    quantisers: dict,
    discovery_dir: Path | None = None,
    resume: bool = False,
    step_hook: Any = None,
    held_out: np.ndarray | None = None,
) -> dict[str, Any]:
    """Train one model described by ``cfg`` in ``run_dir``; evaluate it; write ``metrics.json``.

    held_out: training-scene indices of the validation split (never trained on); the per-epoch
        curves are computed on them, and the final metrics on ``data.eval_split``.
    step_hook: passed to the loop (``fit``), called after every optimiser step (tests kill runs with it).
    """
    held_out = np.asarray([] if held_out is None else held_out, dtype=np.int64)
    specs = task_specs(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.dump(run_dir / CONFIG_NAME)
    train, val, test = _method_data(cfg, root, specs, mask, quantisers, discovery_dir, held_out)
    _fill_cache(cfg, train)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, specs)
    device = resolve_device(cfg.train.device)

    start = time.time()
    log = fit(
        model,
        train,
        _loss_fn(cfg, specs, quantisers),
        cfg.train,
        run_dir,
        _checkpoint_meta(cfg, specs, root, quantisers),
        evaluate_fn=lambda m: evaluate_model(m, val, specs, quantisers, device),
        resume=resume,
        num_workers=cfg.data.num_workers,
        step_hook=step_hook,
    )
    result: dict[str, Any] = {"wall_time_s": time.time() - start, "epochs": cfg.train.epochs}
    if len(held_out):  # curves on the held-out scenes; the test split evaluated once, at the end
        result["val_metrics"] = last_val_metrics(log)
        result["test_metrics"] = evaluate_model(model, test, specs, quantisers, device)
        result["eval_split"] = cfg.data.eval_split
        result["metrics"] = result[f"{cfg.data.eval_split}_metrics"]
    else:
        result.update(metrics=last_val_metrics(log), eval_split="test")
    write_json(run_dir / METRICS_NAME, result)
    return result


def method_config(base: RunConfig, method: str) -> RunConfig:
    """The run config of a registered method (``hitts_schema.METHODS``) on top of ``base``."""
    m = get_method(method)
    return replace(
        base,
        model=replace(base.model, arch=m.arch, **dict(m.model_switches)),
        stage=m.stage,
        use_pseudo_labels=m.use_pseudo_labels,
        use_feature_targets=m.use_feature_targets,
    )


def method_order(methods: list[str] | tuple[str, ...]) -> list[str]:
    """The methods in training order: stage-2 methods after their stage-1 teacher ``hitts`` (added
    when a stage-2 method needs it); fails on an unknown name before any work."""
    stages = {m: get_method(m).stage for m in methods}
    order = list(methods)
    if 2 in stages.values() and "hitts" not in order:
        order.insert(0, "hitts")
        stages["hitts"] = 1
    return sorted(order, key=stages.__getitem__)


def _summary(
    base: RunConfig,
    specs: tuple[TaskSpec, ...],
    results: dict[str, Any],
    previous: dict[str, Any],
    split_file: Path,
    held_out: np.ndarray,
) -> dict[str, Any]:
    """The pipeline's ``metrics.json``: one entry per method (earlier invocations' entries kept) with
    Delta_MTL against STL on the paper's metric set and on every metric, and a ``_meta`` block."""
    table: dict[str, Any] = {m: v for m, v in previous.items() if not m.startswith("_") and m not in results}
    reference = results.get("stl", {}).get("metrics")
    metric_set = metric_set_for(base.data.dataset, base.data.setting)
    for m, r in results.items():
        entry = dict(r["metrics"])
        entry[DELTA_KEY] = delta_mtl(r["metrics"], reference, specs, metric_set) if reference else None
        entry[DELTA_ALL_KEY] = delta_mtl(r["metrics"], reference, specs) if reference else None
        table[m] = entry
    wall = {
        **previous.get("_meta", {}).get("wall_time_s", {}),
        **{m: r["wall_time_s"] for m, r in results.items()},
    }
    meta = {
        "dataset": base.data.dataset,
        "setting": base.data.setting,
        "seed": base.train.seed,
        "split": str(split_file),
        "eval_split": base.data.eval_split if len(held_out) else "test",
        "validation_images": len(held_out),
        "delta_mtl_metrics": [f"{t}/{m}" for t, m in metric_set],
        "wall_time_s": wall,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "config": base.to_dict(),
    }
    return {**table, "_meta": meta}


def run_pipeline(
    base: RunConfig,
    root: str | Path,
    out: str | Path,
    methods: list[str] | tuple[str, ...],
    split_path: str | Path | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train every method on one saved split; discovery from the stage-1 HiTTs; Delta_MTL vs STL."""
    out = Path(out)
    order = method_order(methods)
    specs = task_specs(base)
    split_file = Path(split_path) if split_path else out / SPLIT_NAME
    mask = ensure_split(base, root, specs, split_file)
    held_out = validation_indices(split_file)
    quantisers = ensure_quantisers(base, root, specs, mask, out / QUANTISERS_NAME)
    discovery_dir = out / DISCOVERY_DIR
    results: dict[str, Any] = {}
    for m in order:
        cfg, run_dir = method_config(base, m), out / m
        if cfg.stage == 2 and not (discovery_dir / DISCOVERY_MANIFEST).exists():
            run_discovery(out / "hitts", root, discovery_dir)
        done = read_json(run_dir / METRICS_NAME) if resume else None
        results[m] = done or train_method(
            cfg, root, run_dir, mask, quantisers, discovery_dir, resume=resume, held_out=held_out
        )
    summary = _summary(base, specs, results, read_json(out / METRICS_NAME, {}), split_file, held_out)
    write_json(out / METRICS_NAME, summary)
    return summary


def run_discovery(run_dir: str | Path, root: str | Path | None, out_dir: str | Path) -> dict[str, Any]:
    """Discovery with a stage-1 run's model on its clean training images."""
    cfg, model, _, state = load_run(run_dir)
    specs = task_specs(cfg)
    root = root or state["data_root"]
    clean = dataset_for(cfg, root, "train", specs)
    taus = tau_for(TASK_SET[cfg.data.dataset], cfg.data.setting, specs)
    return discover(
        model,
        clean,
        specs,
        taus,
        out_dir,
        resolve_device(cfg.train.device),
        source=str(Path(run_dir) / CHECKPOINT_NAME),
    )
