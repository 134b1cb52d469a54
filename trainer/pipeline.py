"""Runs: one method trained and evaluated in its own folder, and the whole comparison pipeline.

A run folder holds ``config.json`` (the resolved RunConfig), ``checkpoint.pt`` (self-describing),
``log.jsonl`` (every loss term and eval metric per epoch) and ``metrics.json`` (final evaluation).
A pipeline folder holds ``split.json`` (the label masks every method shares), ``quantisers.json``
(depth bins and normal centres fitted on the labelled training targets), one run folder per method,
``discovery/`` and ``metrics.json`` with one entry per method and its Delta_MTL against STL.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from hitts_schema import DEFAULT_METHODS, DELTA_ALL_KEY, DELTA_KEY, METHODS, get_method, metric_set_for

from .checkpoint import CHECKPOINT_NAME, load_checkpoint
from .config import TASK_SET, RunConfig, apply_overrides, preset_config
from .data import build_dataset
from .data.partial_labels import load_label_mask, make_label_mask, save_label_mask
from .data.transforms import JointAugment, normal_flip_permutation
from .discovery import DiscoveredTargets, discover
from .engine import fit, resolve_device
from .losses import compute_losses
from .metrics import MultiTaskMeter, delta_mtl
from .models import build_model
from .quantise import build_quantisers, logits_to_outputs, quantisers_from_dict, quantisers_to_dict
from .tasks import TaskSpec, tasks_for, tau_for

SPLIT_NAME = "split.json"
QUANTISERS_NAME = "quantisers.json"
METRICS_NAME = "metrics.json"
DISCOVERY_DIR = "discovery"
EVAL_BATCH = 8

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
    remapped to the index of the mirrored centre).
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
        augment=JointAugment(flip_index_maps=flip_maps or None) if augment else None,
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


def ensure_split(cfg: RunConfig, root: str | Path, specs: tuple[TaskSpec, ...], path: Path) -> np.ndarray:
    """Load the label masks at ``path``, or make them once from the split seed and save them there.

    With ``data.validation_images`` > 0 the file also names the held-out validation scenes (their
    rows of the mask are all False); a file made with another count is refused.
    """
    names = [s.name for s in specs]
    if path.exists():
        mask = load_label_mask(path, names)
        held = validation_indices(path)
        if len(held) != cfg.data.validation_images:
            raise ValueError(
                f"{path} holds out {len(held)} validation scenes, the config asks for "
                f"{cfg.data.validation_images}: use another split file"
            )
    else:
        n = len(dataset_for(cfg, root, "train", specs))
        mask = make_label_mask(
            n,
            names,
            cfg.data.setting,
            cfg.data.split_seed,
            few_shot_k=cfg.data.few_shot_k,
            few_shot_task=cfg.data.few_shot_task,
        )
        meta: dict[str, Any] = {"dataset": cfg.data.dataset, "root": str(root)}
        if cfg.data.validation_images:
            meta[VALIDATION_KEY] = _hold_out(mask, cfg.data.validation_images, cfg.data.split_seed).tolist()
        path.parent.mkdir(parents=True, exist_ok=True)
        save_label_mask(path, mask, names, cfg.data.setting, cfg.data.split_seed, meta)
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
        outputs = {s.name: logits_to_outputs(s, logits[s.name].float(), quantisers[s.name]) for s in specs}
        meter.update(outputs, {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()})
    model.train(was_training)
    return meter.compute()


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
    cfg.dump(run_dir / "config.json")
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
    test = dataset_for(cfg, root, "val", specs)  # the data set's test split ("val" folder on disk)
    val = test
    if len(held_out):
        keep = np.setdiff1d(np.arange(len(train)), held_out)
        train = TrainSubset(train, keep.tolist())
        val = Subset(dataset_for(cfg, root, "train", specs), held_out.tolist())
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, specs)
    device = resolve_device(cfg.train.device)

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

    meta = {
        "config": cfg.to_dict(),
        "tasks": [s.name for s in specs],
        "stage": cfg.stage,
        "dataset": cfg.data.dataset,
        "data_root": str(root),
        "quantisers": quantisers_to_dict(quantisers),
    }
    start = time.time()
    log = fit(
        model,
        train,
        loss_fn,
        cfg.train,
        run_dir,
        meta,
        evaluate_fn=lambda m: evaluate_model(m, val, specs, quantisers, device),
        resume=resume,
        num_workers=cfg.data.num_workers,
        step_hook=step_hook,
    )
    last_val: dict[str, dict[str, float]] = {}
    for k, v in log[-1].items():
        if k.startswith("val/"):
            _, task, metric = k.split("/", 2)
            last_val.setdefault(task, {})[metric] = v
    result: dict[str, Any] = {"wall_time_s": time.time() - start, "epochs": cfg.train.epochs}
    if len(held_out):  # curves on the held-out scenes; the test split evaluated once, at the end
        result["val_metrics"] = last_val
        result["test_metrics"] = evaluate_model(model, test, specs, quantisers, device)
        result["eval_split"] = cfg.data.eval_split
        result["metrics"] = result[f"{cfg.data.eval_split}_metrics"]
    else:
        result.update(metrics=last_val, eval_split="test")
    (run_dir / METRICS_NAME).write_text(json.dumps(result, indent=2))
    return result


def load_run(run_dir: str | Path, map_location: str = "cpu") -> tuple[RunConfig, torch.nn.Module, dict, dict]:
    """(config, model with trained weights, quantisers, checkpoint) of a run folder."""
    state = load_checkpoint(Path(run_dir) / CHECKPOINT_NAME, map_location=map_location)
    cfg = RunConfig.from_dict(state["config"])
    specs = task_specs(cfg)
    model = build_model(replace(cfg.model, pretrained=False), specs)
    model.load_state_dict(state["model"])
    return cfg, model.eval(), quantisers_from_dict(state["quantisers"], specs), state


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
    for m in methods:
        method_config(base, m)  # fail on an unknown method before any work
    specs = task_specs(base)
    split_file = Path(split_path) if split_path else out / SPLIT_NAME
    mask = ensure_split(base, root, specs, split_file)
    held_out = validation_indices(split_file)
    quantisers = ensure_quantisers(base, root, specs, mask, out / QUANTISERS_NAME)
    needs_stage1 = any(METHODS[m].stage == 2 for m in methods)
    order = list(methods)
    if needs_stage1 and "hitts" not in order:
        order.insert(0, "hitts")
    order.sort(key=lambda m: METHODS[m].stage)  # stage-2 methods after their stage-1 teacher
    results: dict[str, Any] = {}
    discovery_dir = out / DISCOVERY_DIR
    for m in order:
        cfg = method_config(base, m)
        run_dir = out / m
        done = (run_dir / METRICS_NAME).exists() and resume
        if cfg.stage == 2 and not (discovery_dir / "manifest.json").exists():
            run_discovery(out / "hitts", root, discovery_dir)
        results[m] = (
            json.loads((run_dir / METRICS_NAME).read_text())
            if done
            else train_method(
                cfg, root, run_dir, mask, quantisers, discovery_dir, resume=resume, held_out=held_out
            )
        )
    # a pipeline folder accumulates methods: entries of earlier invocations are kept
    previous = json.loads((out / METRICS_NAME).read_text()) if (out / METRICS_NAME).exists() else {}
    table: dict[str, Any] = {m: v for m, v in previous.items() if not m.startswith("_") and m not in results}
    reference = results.get("stl", {}).get("metrics")
    metric_set = metric_set_for(base.data.dataset, base.data.setting)
    for m, r in results.items():
        entry = dict(r["metrics"])
        entry[DELTA_KEY] = delta_mtl(r["metrics"], reference, specs, metric_set) if reference else None
        entry[DELTA_ALL_KEY] = delta_mtl(r["metrics"], reference, specs) if reference else None
        table[m] = entry
    summary = {
        **table,
        "_meta": {
            "dataset": base.data.dataset,
            "setting": base.data.setting,
            "seed": base.train.seed,
            "split": str(split_file),
            "eval_split": base.data.eval_split if len(held_out) else "test",
            "validation_images": len(held_out),
            "delta_mtl_metrics": [f"{t}/{m}" for t, m in metric_set],
            "wall_time_s": {**previous.get("_meta", {}).get("wall_time_s", {}),
                        **{m: r["wall_time_s"] for m, r in results.items()}},
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "config": base.to_dict(),
        },
    }
    (out / METRICS_NAME).write_text(json.dumps(summary, indent=2))
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


# ---- command-line entry points (argparse namespaces from trainer.__main__) ----


def _base_config(args: argparse.Namespace, arch: str = "hitts") -> RunConfig:
    cfg = preset_config(args.preset, args.dataset, args.setting, arch)
    cfg = replace(
        cfg,
        data=replace(cfg.data, root=str(args.data), split_seed=args.split_seed),
        train=replace(cfg.train, seed=args.seed),
    )
    return apply_overrides(cfg, args.overrides)


def _check_root(root: str) -> None:
    if not Path(root).exists():
        raise SystemExit(f"error: data folder {root} does not exist")


def cli_pipeline(args: argparse.Namespace) -> int:
    _check_root(args.data)
    summary = run_pipeline(
        _base_config(args),
        args.data,
        args.out,
        args.methods or DEFAULT_METHODS,
        args.split,
        resume=args.resume,
    )
    for m, entry in summary.items():
        if not m.startswith("_"):
            print(
                f"{m:>14}: delta_mtl {entry['delta_mtl'] if entry['delta_mtl'] is None else round(entry['delta_mtl'], 2)}"
            )
    print(f"wrote {Path(args.out) / METRICS_NAME}")
    return 0


def cli_train(args: argparse.Namespace) -> int:
    _check_root(args.data)
    cfg = _base_config(args, args.arch)
    if args.discovery:
        cfg = replace(cfg, stage=2, use_pseudo_labels=not args.no_lp, use_feature_targets=not args.no_lf)
    out = Path(args.out)
    specs = task_specs(cfg)
    mask = ensure_split(cfg, args.data, specs, Path(args.split) if args.split else out / SPLIT_NAME)
    quantisers = ensure_quantisers(cfg, args.data, specs, mask, out / QUANTISERS_NAME)
    result = train_method(
        cfg,
        args.data,
        out,
        mask,
        quantisers,
        Path(args.discovery) if args.discovery else None,
        resume=args.resume,
    )
    print(json.dumps(result["metrics"], indent=2))
    return 0


def cli_discover(args: argparse.Namespace) -> int:
    out = args.out or str(Path(args.run) / DISCOVERY_DIR)
    manifest = run_discovery(args.run, args.data, out)
    print(json.dumps(manifest, indent=2))
    return 0


def cli_evaluate(args: argparse.Namespace) -> int:
    cfg, model, quantisers, state = load_run(args.run)
    specs = task_specs(cfg)
    dataset = args.dataset or cfg.data.dataset
    root = args.data or state["data_root"]
    data = dataset_for(cfg, root, "val", specs, dataset=dataset)
    metrics = evaluate_model(model, data, specs, quantisers, resolve_device(cfg.train.device))
    text = json.dumps({"dataset": dataset, "root": str(root), "metrics": metrics}, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


def cli_export(args: argparse.Namespace) -> int:
    from .export import export_run

    export_run(
        args.run, args.out, name=args.name, parity_data=args.parity_data, fp16=args.fp16, int8=args.int8
    )
    return 0
