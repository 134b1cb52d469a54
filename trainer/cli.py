"""Command line: ``python -m trainer {prepare,train,discover,evaluate,export,pipeline}``.

``COMMANDS`` is the command table: name -> (help, add its arguments, handler). Each handler takes
the parsed namespace and returns the exit status; the work is done by ``trainer.pipeline``,
``trainer.runs``, ``trainer.export`` and ``trainer.data.synthetic``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from hitts_schema import DEFAULT_METHODS, METHODS

from .config import ARCHS, DATASETS, PRESETS, SETTINGS, RunConfig, apply_overrides, preset_config
from .data.synthetic_profile import DEFAULT_PROFILE, PROFILES

Handler = Callable[[argparse.Namespace], int]
AddArguments = Callable[[argparse.ArgumentParser], None]


# ---- arguments of each command ----


def _add_data(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--data", required=required, help="data set root folder")
    p.add_argument(
        "--dataset", choices=DATASETS, default="synthetic" if not required else None, required=required
    )


def _add_prepare(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=["synthetic"], default="synthetic")
    p.add_argument("--out", required=True)
    p.add_argument("--num-train", type=int, default=795)
    p.add_argument("--num-test", type=int, default=654)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=int, default=288)
    p.add_argument("--width", type=int, default=384)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=DEFAULT_PROFILE,
        help="generator profile: nyu (the original generator), wide (wider domain randomisation "
        "for sim-to-real: camera, focal length, lights, exposure, colours, clutter, sensor) or "
        "wide_walls (wide plus papers, notice boards, whiteboards and doors on the walls, "
        "off-white paint, views nearer level)",
    )


def _add_training(p: argparse.ArgumentParser) -> None:
    """Arguments shared by ``train`` and ``pipeline``: data, setting, preset, seeds, overrides."""
    _add_data(p)
    p.add_argument("--setting", choices=SETTINGS, default="one-label")
    p.add_argument("--preset", choices=PRESETS, default="smoke")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--split", help="label-mask JSON to reuse (default: RUN/split.json, made once)")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override a config field, e.g. --set train.epochs=3 (repeatable)",
    )


def _add_train(p: argparse.ArgumentParser) -> None:
    _add_training(p)
    p.add_argument("--arch", choices=ARCHS, default="hitts")
    p.add_argument(
        "--discovery", help="discovery folder: train stage 2 with pseudo labels and feature targets from it"
    )
    p.add_argument("--no-lp", action="store_true", help="stage 2 without L_p")
    p.add_argument("--no-lf", action="store_true", help="stage 2 without L_f")


def _add_pipeline(p: argparse.ArgumentParser) -> None:
    _add_training(p)
    others = [m for m in METHODS if m not in DEFAULT_METHODS]
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help=f"methods to run (default: {' '.join(DEFAULT_METHODS)}); also {', '.join(others)}",
    )


def _add_discover(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="stage-1 HiTTs run folder")
    p.add_argument("--data", help="data root (default: the run's)")
    p.add_argument("--out", help="discovery folder (default: RUN/discovery)")


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True)
    p.add_argument("--data", help="data root (default: the run's)")
    p.add_argument("--dataset", choices=DATASETS, help="evaluate on another data set, e.g. nyuv2-mini")
    p.add_argument("--out", help="write the metrics JSON here")


def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--name", help="model name in the manifest (default: the run's arch)")
    p.add_argument(
        "--parity-data", help="folder of real images for the parity check (default: the run's val set)"
    )
    p.add_argument("--fp16", action="store_true", help="also write an fp16 model with its parity figures")
    p.add_argument("--int8", action="store_true", help="also write an int8 dynamically quantised model")


# ---- handlers (imports inside: ``--help`` and argument errors never load torch) ----


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


def cli_prepare(args: argparse.Namespace) -> int:
    from .data.synthetic import write_dataset

    write_dataset(
        args.out,
        num_train=args.num_train,
        num_test=args.num_test,
        seed=args.seed,
        height=args.height,
        width=args.width,
        workers=args.workers,
        profile=args.profile,
    )
    return 0


def cli_pipeline(args: argparse.Namespace) -> int:
    from .pipeline import run_pipeline
    from .runs import METRICS_NAME

    _check_root(args.data)
    methods = args.methods or DEFAULT_METHODS
    summary = run_pipeline(_base_config(args), args.data, args.out, methods, args.split, resume=args.resume)
    for m, entry in summary.items():
        if not m.startswith("_"):
            delta = entry["delta_mtl"]
            print(f"{m:>14}: delta_mtl {delta if delta is None else round(delta, 2)}")
    print(f"wrote {Path(args.out) / METRICS_NAME}")
    return 0


def cli_train(args: argparse.Namespace) -> int:
    from .pipeline import train_method
    from .runs import (
        QUANTISERS_NAME,
        SPLIT_NAME,
        ensure_quantisers,
        ensure_split,
        task_specs,
        validation_indices,
    )

    _check_root(args.data)
    cfg = _base_config(args, args.arch)
    if args.discovery:
        cfg = replace(cfg, stage=2, use_pseudo_labels=not args.no_lp, use_feature_targets=not args.no_lf)
    out = Path(args.out)
    specs = task_specs(cfg)
    split_file = Path(args.split) if args.split else out / SPLIT_NAME
    mask = ensure_split(cfg, args.data, specs, split_file)
    quantisers = ensure_quantisers(cfg, args.data, specs, mask, out / QUANTISERS_NAME)
    discovery = Path(args.discovery) if args.discovery else None
    held_out = validation_indices(split_file)  # never trained on: the per-epoch curves
    result = train_method(
        cfg, args.data, out, mask, quantisers, discovery, resume=args.resume, held_out=held_out
    )
    print(json.dumps(result["metrics"], indent=2))
    return 0


def cli_discover(args: argparse.Namespace) -> int:
    from .pipeline import run_discovery
    from .runs import DISCOVERY_DIR

    out = args.out or str(Path(args.run) / DISCOVERY_DIR)
    manifest = run_discovery(args.run, args.data, out)
    print(json.dumps(manifest, indent=2))
    return 0


def cli_evaluate(args: argparse.Namespace) -> int:
    from .engine import resolve_device
    from .pipeline import evaluate_model
    from .runs import dataset_for, load_run, task_specs

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


COMMANDS: dict[str, tuple[str, AddArguments, Handler]] = {
    "prepare": ("generate the synthetic indoor-scene set in the NYUD-v2 layout", _add_prepare, cli_prepare),
    "train": ("train one model (stage 1, or stage 2 with --discovery)", _add_train, cli_train),
    "pipeline": (
        "STL, MTL, HiTTs (stage 1), discovery and HiTTs + L_p + L_f (stage 2) on one saved split -> RUN/metrics.json",
        _add_pipeline,
        cli_pipeline,
    ),
    "discover": ("write pseudo labels, confidence masks and feature targets", _add_discover, cli_discover),
    "evaluate": ("evaluate a run's checkpoint with the paper's metrics", _add_evaluate, cli_evaluate),
    "export": ("export a run to ONNX with a manifest and verified parity", _add_export, cli_export),
}
"""The command table: name -> (help, function adding its arguments, handler)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer",
        description="HiTTs two-stage multi-task training: prepare data, train (stage 1 / 2), discover "
        "pseudo labels, evaluate, export to ONNX, or run the whole pipeline.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (helptext, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=helptext))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; a bad input (config, data, checkpoint, discovery folder) is one clear error line."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][2](args)
    except (ValueError, FileNotFoundError, RuntimeError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
