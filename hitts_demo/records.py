"""Run records (``exports/runs/<run>/metrics.json`` + ``log.jsonl``) and the paper's tables.

``metrics.json``: ``{method: {task: {metric: value}, "delta_mtl": float}, "_meta": {...}}``; keys starting
with ``_`` are not methods (``_meta`` holds the data set, setting, seed, wall times and config).
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

from hitts_schema import DELTA_ALL_KEY, DELTA_KEY, HIGHER_IS_BETTER

PAPER_TABLES = Path(__file__).parent / "data" / "paper_tables.json"
PERCENT_METRICS = frozenset({"miou", "pacc", "within_11_25", "within_22_5", "within_30", "odsf", "max_f"})
META_PREFIX = "_"
TOTAL_LOSS = "total"
MAX_LOG_LINES = 100_000


@dataclass
class RunRecord:
    """One run folder: its metrics per method, its per-epoch log lines and what could not be read."""

    name: str
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def as_percent(metric: str, value: float) -> float:
    """Fractions of percent-type metrics -> percent; everything else unchanged."""
    return value * 100.0 if metric in PERCENT_METRICS and abs(value) <= 1.0 else value


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_metrics(path: Path, problems: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(methods, meta): per method {task: {metric: value}} of known metrics plus the stored Delta_MTL
    figures; ``meta`` is the ``_meta`` block (keys starting with ``_`` are never methods)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        problems.append(f"{path.name}: unreadable ({err})")
        return {}, {}
    if not isinstance(raw, dict):
        problems.append(f"{path.name}: not a JSON object")
        return {}, {}
    metrics: dict[str, dict[str, Any]] = {}
    for method, block in raw.items():
        if method.startswith(META_PREFIX) or not isinstance(block, dict):
            continue
        clean: dict[str, Any] = {}
        for task, values in block.items():
            if task in (DELTA_KEY, DELTA_ALL_KEY) and is_number(values):
                clean[task] = float(values)
            elif isinstance(values, dict):
                nums = {m: float(v) for m, v in values.items() if m in HIGHER_IS_BETTER and is_number(v)}
                if nums:
                    clean[task] = nums
        metrics[method] = clean
    meta = raw.get("_meta")
    return metrics, meta if isinstance(meta, dict) else {}


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
            rec.metrics, rec.meta = _read_metrics(metrics_path, rec.problems)
        if log_path.is_file():
            rec.log = _read_log(log_path, rec.problems)
        runs.append(rec)
    return runs


def log_keys(runs: list[RunRecord]) -> list[str]:
    """Numeric keys found in the logs for the learning-curve picker: the total losses first (the
    picker opens on the first), then the other losses, then metrics and the rest (learning rates last)."""
    keys: dict[str, None] = {}
    for run in runs:
        for line in run.log:
            for k, v in line.items():
                if k not in ("epoch", "split", "step") and is_number(v):
                    keys[k] = None

    def rank(key: str) -> tuple[int, str]:
        last = key.rsplit("/", 1)[-1]
        if last == TOTAL_LOSS:
            return 0, key
        if last.startswith("L_") or "/L_" in key:
            return 1, key
        return (3 if last in ("lr", "steps") else 2), key

    return sorted(keys, key=rank)


def load_paper_tables(path: Path = PAPER_TABLES) -> dict[str, Any]:
    """The paper's tables (``hitts_demo/data/paper_tables.json``), each with its source."""
    return json.loads(path.read_text(encoding="utf-8"))["tables"]
