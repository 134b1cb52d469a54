"""Collect the reproduction runs into ``results/`` and the dashboard's run records into ``exports/runs/``.

Usage: python scripts/collect_results.py RUNS_DIR [--nyuv2-mini DIR]

For each setting, ``results/synthetic-<setting>.json`` holds, per method, the mean over seeds of every
metric and of Delta_MTL (keys as in a pipeline's metrics.json: ``stl``, ``mtl``, ``hitts``,
``hitts_pseudo``, ...), the per-seed values, and ``_meta`` (seeds, commands, hardware, wall time).
``results/nyuv2-mini-transfer.json`` evaluates the same trained models on the 10 real NYUD-v2 frames
(normals there are derived from depth, not ground truth): a domain-transfer figure, kept apart.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from trainer.metrics import delta_mtl
from trainer.pipeline import dataset_for, evaluate_model, load_run, task_specs

REPO = Path(__file__).resolve().parents[1]
METHOD_ORDER = ("stl", "mtl", "hitts", "hitts_no_oe", "hitts_small_init", "hitts_lf", "hitts_lp", "hitts_pseudo")
RUN_PATTERN = re.compile(r"(?P<setting>[a-z-]+)-seed(?P<seed>\d+)$")


def mean_metrics(entries: list[dict]) -> dict:
    out: dict = {}
    for task in entries[0]:
        if isinstance(entries[0][task], dict):
            out[task] = {m: float(np.mean([e[task][m] for e in entries])) for m in entries[0][task]}
    return out


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {torch.get_num_threads()} torch threads available, torch {torch.__version__}"


def collect(runs: Path, nyuv2_mini: Path | None) -> None:
    by_setting: dict[str, dict[int, Path]] = defaultdict(dict)
    for d in sorted(runs.iterdir()):
        m = RUN_PATTERN.match(d.name)
        if m and (d / "metrics.json").exists():
            by_setting[m["setting"]][int(m["seed"])] = d
    (REPO / "results").mkdir(exist_ok=True)
    transfer: dict = {}
    for setting, seeds in by_setting.items():
        per_seed = {s: json.loads((d / "metrics.json").read_text()) for s, d in seeds.items()}
        found = {m for r in per_seed.values() for m in r if not m.startswith("_")}
        methods = [m for m in METHOD_ORDER if m in found] + sorted(found - set(METHOD_ORDER))
        result: dict = {}
        for m in methods:
            rows = {s: r[m] for s, r in per_seed.items() if m in r}
            metrics = mean_metrics(
                [{k: v for k, v in row.items() if k != "delta_mtl"} for row in rows.values()]
            )
            deltas = {s: row["delta_mtl"] for s, row in rows.items()}
            result[m] = {
                **metrics,
                "delta_mtl": float(np.mean(list(deltas.values()))),
                "delta_mtl_per_seed": deltas,
                "seeds": sorted(rows),
                "per_seed": {
                    s: {k: v for k, v in row.items() if k != "delta_mtl"} for s, row in rows.items()
                },
            }
        first = next(iter(per_seed.values()))["_meta"]
        result["_meta"] = {
            "dataset": "synthetic (795 train / 654 test, rendered at 288x384)",
            "setting": setting,
            "preset": "cpu",
            "seeds": sorted(per_seed),
            "split": first["split"],
            "commands": [
                f"python -m trainer pipeline --data data/synthetic --dataset synthetic --setting {setting} "
                f"--preset cpu --seed {s} --split runs/repro/split-{setting}.json "
                f"--out runs/repro/{setting}-seed{s} --methods {' '.join(sorted(per_seed[s]))}"
                for s in sorted(per_seed)
            ],
            "hardware": hardware(),
            "wall_time_s": {s: r["_meta"]["wall_time_s"] for s, r in per_seed.items()},
            "config": first["config"],
            "delta_mtl_reference": "the STL run of the same seed",
        }
        (REPO / "results" / f"synthetic-{setting}.json").write_text(json.dumps(result, indent=2))
        for s, d in seeds.items():  # run records for the dashboard's Metrics view
            dest = REPO / "exports" / "runs" / f"synthetic-{setting}-seed{s}"
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(d / "metrics.json", dest / "metrics.json")
            # one log for the run: per epoch, every method's terms prefixed with the method name
            merged: dict[int, dict] = defaultdict(dict)
            for method_dir in sorted(d.iterdir()):
                log = method_dir / "log.jsonl"
                for line in log.read_text().splitlines() if log.exists() else []:
                    rec = json.loads(line)
                    merged[rec["epoch"]].update(
                        {f"{method_dir.name}/{k}": v for k, v in rec.items() if k != "epoch"}
                    )
            (dest / "log.jsonl").write_text(
                "".join(json.dumps({"epoch": e, **merged[e]}) + "\n" for e in sorted(merged))
            )
        if nyuv2_mini is not None:
            transfer[setting] = evaluate_transfer(seeds, nyuv2_mini)
    if transfer:
        transfer["_meta"] = {
            "data": "the 10 real NYUD-v2 test frames of ../shared/data/nyuv2-mini, 288x384 "
            "resized to the models' input; normals derived from depth (not ground truth)",
            "models": "trained on the synthetic set only (no real image seen)",
        }
        (REPO / "results" / "nyuv2-mini-transfer.json").write_text(json.dumps(transfer, indent=2))


def evaluate_transfer(seeds: dict[int, Path], root: Path) -> dict:
    """Every trained model of every seed evaluated on the real frames; Delta_MTL vs that seed's STL."""
    raw: dict[str, dict[int, dict]] = defaultdict(dict)
    specs = None
    for s, d in seeds.items():
        for method_dir in sorted(p for p in d.iterdir() if (p / "checkpoint.pt").exists()):
            cfg, model, quantisers, _ = load_run(method_dir)
            specs = task_specs(cfg)
            data = dataset_for(cfg, root, "val", specs, dataset="nyuv2-mini")
            raw[method_dir.name][s] = evaluate_model(model, data, specs, quantisers, torch.device("cpu"))
    out: dict = {}
    for method in [m for m in METHOD_ORDER if m in raw] + sorted(set(raw) - set(METHOD_ORDER)):
        per_seed = raw[method]
        out[method] = {**mean_metrics(list(per_seed.values())), "seeds": sorted(per_seed), "per_seed": per_seed}
        if "stl" in raw:
            deltas = {s: delta_mtl(per_seed[s], raw["stl"][s], specs) for s in per_seed if s in raw["stl"]}
            out[method]["delta_mtl"] = float(np.mean(list(deltas.values())))
            out[method]["delta_mtl_per_seed"] = deltas
    return out


HEADLINE = (("semseg", "miou"), ("semseg", "pacc"), ("depth", "abs_err"), ("depth", "rel_err"),
            ("normals", "mean_angle"), ("normals", "within_11_25"))


def markdown_table(result: dict) -> str:
    """Main metrics and Delta_MTL (mean over seeds, per-seed Delta in brackets) as a Markdown table."""
    head = "| method | seeds | " + " | ".join(f"{t} {m}" for t, m in HEADLINE) + " | Delta_MTL % |"
    lines = [head, "|" + "---|" * (len(HEADLINE) + 3)]
    for method, row in result.items():
        if method.startswith("_") or not isinstance(row, dict):
            continue
        cells = [f"{row[t][m]:.4f}" if m in ("abs_err", "rel_err") else f"{row[t][m]:.2f}" for t, m in HEADLINE]
        per_seed = ", ".join(f"{v:+.2f}" for v in row.get("delta_mtl_per_seed", {}).values())
        seeds = len(row.get("seeds", [])) or 1
        lines.append(f"| {method} | {seeds} | " + " | ".join(cells) + f" | {row['delta_mtl']:+.2f} ({per_seed}) |")
    return "\n".join(lines)


def write_markdown() -> None:
    parts = []
    for path in sorted((REPO / "results").glob("synthetic-*.json")):
        result = json.loads(path.read_text())
        parts.append(f"### {path.stem}\n\n{markdown_table(result)}\n")
    transfer = REPO / "results" / "nyuv2-mini-transfer.json"
    if transfer.exists():
        data = json.loads(transfer.read_text())
        for setting, result in data.items():
            if not setting.startswith("_"):
                parts.append(f"### domain transfer: trained on synthetic {setting}, evaluated on the 10 real "
                             f"NYUD-v2 frames (normals derived from depth)\n\n{markdown_table(result)}\n")
    (REPO / "results" / "tables.md").write_text("\n".join(parts))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path)
    p.add_argument("--nyuv2-mini", type=Path, default=REPO.parent / "shared" / "data" / "nyuv2-mini")
    a = p.parse_args()
    collect(a.runs, a.nyuv2_mini if a.nyuv2_mini.exists() else None)
    write_markdown()
