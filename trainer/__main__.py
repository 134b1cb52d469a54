"""Command line: ``python -m trainer {prepare,train,discover,evaluate,export,pipeline}``."""

from __future__ import annotations

import argparse
import sys

from .config import ARCHS, DATASETS, PRESETS, SETTINGS


def _add_data(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--data", required=required, help="data set root folder")
    p.add_argument(
        "--dataset", choices=DATASETS, default="synthetic" if not required else None, required=required
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer",
        description="HiTTs two-stage multi-task training: prepare data, train (stage 1 / 2), discover "
        "pseudo labels, evaluate, export to ONNX, or run the whole pipeline.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prepare", help="generate the synthetic indoor-scene set in the NYUD-v2 layout")
    p.add_argument("--dataset", choices=["synthetic"], default="synthetic")
    p.add_argument("--out", required=True)
    p.add_argument("--num-train", type=int, default=795)
    p.add_argument("--num-test", type=int, default=654)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=int, default=288)
    p.add_argument("--width", type=int, default=384)
    p.add_argument("--workers", type=int, default=1)

    for name, helptext in (
        ("train", "train one model (stage 1, or stage 2 with --discovery)"),
        (
            "pipeline",
            "STL, MTL, HiTTs (stage 1), discovery and HiTTs + L_p + L_f "
            "(stage 2) on one saved split -> RUN/metrics.json",
        ),
    ):
        p = sub.add_parser(name, help=helptext)
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
        if name == "train":
            p.add_argument("--arch", choices=ARCHS, default="hitts")
            p.add_argument(
                "--discovery",
                help="discovery folder: train stage 2 with pseudo labels and feature targets from it",
            )
            p.add_argument("--no-lp", action="store_true", help="stage 2 without L_p")
            p.add_argument("--no-lf", action="store_true", help="stage 2 without L_f")
        else:
            p.add_argument(
                "--methods",
                nargs="+",
                default=None,
                help="methods to run (default: stl mtl hitts hitts_pseudo); also hitts_lp, "
                "hitts_lf, hitts_no_oe, hitts_no_inter, hitts_no_intra, hitts_no_global, "
                "hitts_no_fine",
            )

    p = sub.add_parser("discover", help="write pseudo labels, confidence masks and feature targets")
    p.add_argument("--run", required=True, help="stage-1 HiTTs run folder")
    p.add_argument("--data", help="data root (default: the run's)")
    p.add_argument("--out", help="discovery folder (default: RUN/discovery)")

    p = sub.add_parser("evaluate", help="evaluate a run's checkpoint with the paper's metrics")
    p.add_argument("--run", required=True)
    p.add_argument("--data", help="data root (default: the run's)")
    p.add_argument("--dataset", choices=DATASETS, help="evaluate on another data set, e.g. nyuv2-mini")
    p.add_argument("--out", help="write the metrics JSON here")

    p = sub.add_parser("export", help="export a run to ONNX with a manifest and verified parity")
    p.add_argument("--run", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--name", help="model name in the manifest (default: the run's arch)")
    p.add_argument(
        "--parity-data", help="folder of real images for the parity check (default: the run's val set)"
    )
    p.add_argument("--fp16", action="store_true", help="also write an fp16 model with its parity figures")
    p.add_argument("--int8", action="store_true", help="also write an int8 dynamically quantised model")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; a bad input (config, data, checkpoint, discovery folder) is one clear error line."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, FileNotFoundError, RuntimeError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "prepare":
        from .data.synthetic import write_dataset

        write_dataset(
            args.out,
            num_train=args.num_train,
            num_test=args.num_test,
            seed=args.seed,
            height=args.height,
            width=args.width,
            workers=args.workers,
        )
        return 0
    from . import pipeline

    return getattr(pipeline, f"cli_{args.command}")(args)


if __name__ == "__main__":
    sys.exit(main())
