"""Run records (``exports/runs/<run>/metrics.json`` + ``log.jsonl``) and the paper's tables.

``metrics.json``: ``{"stl"|"mtl"|"hitts"|"hitts_pseudo": {task: {metric: value}, "delta_mtl": float}}``.
``log.jsonl``: one JSON object per line, e.g. ``{"epoch": 3, "split": "val", "L_s": .., "total": ..,
"semseg/miou": ..}``. Reading is tolerant: unknown methods are kept, missing keys are skipped,
unreadable lines and files are reported in ``problems`` instead of failing the dashboard.

Units: the paper prints mIoU, pixel accuracy, angle thresholds and odsF in percent; run records may
hold fractions. ``as_percent`` converts a fraction (|v| <= 1) of those metrics to percent so both sit
on one axis.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PAPER_TABLES = Path(__file__).parent / "data" / "paper_tables.json"
METHODS = ("stl", "mtl", "hitts", "hitts_pseudo")
METHOD_LABELS = {"stl": "STL", "mtl": "MTL", "hitts": "HiTTs", "hitts_pseudo": "HiTTs + pseudo"}
DELTA_KEY = "delta_mtl"
PERCENT_METRICS = frozenset({"miou", "pacc", "within_11_25", "within_22_5", "within_30", "odsf", "max_f"})
LOWER_IS_BETTER = frozenset({"abs_err", "rel_err", "rmse", "mean_angle", "median_angle", "rmse_angle"})
"""Metric directions, as in ``trainer/tasks.py`` (not imported: the trainer may import torch)."""
MAX_LOG_LINES = 100_000


@dataclass
class RunRecord:
    """One run folder: its metrics per method, its per-epoch log lines and what could not be read."""

    name: str
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def as_percent(metric: str, value: float) -> float:
    """Fractions of percent-type metrics -> percent; everything else unchanged."""
    return value * 100.0 if metric in PERCENT_METRICS and abs(value) <= 1.0 else value


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_metrics(path: Path, problems: list[str]) -> dict[str, dict[str, Any]]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        problems.append(f"{path.name}: unreadable ({err})")
        return {}
    if not isinstance(raw, dict):
        problems.append(f"{path.name}: not a JSON object")
        return {}
    metrics: dict[str, dict[str, Any]] = {}
    for method, block in raw.items():
        if not isinstance(block, dict):
            continue
        clean: dict[str, Any] = {}
        for task, values in block.items():
            if task == DELTA_KEY and is_number(values):
                clean[DELTA_KEY] = float(values)
            elif isinstance(values, dict):
                nums = {m: float(v) for m, v in values.items() if is_number(v)}
                if nums:
                    clean[task] = nums
        metrics[method] = clean
    return metrics


def _read_log(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    bad = 0
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for i, line in enumerate(fh):
                if i >= MAX_LOG_LINES:
                    problems.append(f"{path.name}: only the first {MAX_LOG_LINES} lines are read")
                    break
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    bad += 1
                    continue
                if isinstance(obj, dict):
                    lines.append(obj)
                else:
                    bad += 1
    except OSError as err:
        problems.append(f"{path.name}: unreadable ({err})")
    if bad:
        problems.append(f"{path.name}: {bad} line(s) skipped (not JSON objects)")
    return lines


def load_runs(runs_dir: Path | None) -> list[RunRecord]:
    """Every ``<runs_dir>/<run>/`` holding a metrics.json or a log.jsonl, sorted by name."""
    if runs_dir is None or not runs_dir.is_dir():
        return []
    runs = []
    for folder in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        metrics_path, log_path = folder / "metrics.json", folder / "log.jsonl"
        if not metrics_path.is_file() and not log_path.is_file():
            continue
        rec = RunRecord(folder.name)
        if metrics_path.is_file():
            rec.metrics = _read_metrics(metrics_path, rec.problems)
        if log_path.is_file():
            rec.log = _read_log(log_path, rec.problems)
        runs.append(rec)
    return runs


def log_keys(runs: list[RunRecord]) -> list[str]:
    """Numeric keys found in the logs (losses first, then metrics), for the learning-curve picker."""
    keys: dict[str, None] = {}
    for run in runs:
        for line in run.log:
            for k, v in line.items():
                if k not in ("epoch", "split", "step") and is_number(v):
                    keys[k] = None
    losses = sorted(k for k in keys if "/" not in k)
    return losses + sorted(k for k in keys if "/" in k)


def load_paper_tables(path: Path = PAPER_TABLES) -> dict[str, Any]:
    """The paper's tables (``hitts_demo/data/paper_tables.json``), each with its source."""
    return json.loads(path.read_text(encoding="utf-8"))["tables"]
