"""Metrics view: the run records (methods and metrics only; ``_meta`` is read, never plotted) against
the paper's tables, Delta_MTL on the paper's metric set, learning curves opening on the total loss.

Delta_MTL is recomputed here from each run's STL block with ``hitts_schema.delta_mtl`` on
``metric_set_for(dataset, setting)`` of the run's ``_meta``; where a run has no STL block or no
``_meta`` the value stored in ``metrics.json`` is shown instead (and said so). The mean over every
recorded metric is kept as a clearly named secondary figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from hitts_demo import plots
from hitts_demo.records import RunRecord, load_runs, log_keys
from hitts_schema import DELTA_KEY, delta_mtl, method_label, metric_set_for

REFERENCE = "stl"
PAPER_SET = "paper metric set"
ALL_SET = "all metrics (secondary)"


@dataclass(frozen=True)
class RunDeltas:
    """Delta_MTL per method of one run: on the paper's metric set, over every metric, and how."""

    paper: dict[str, float]
    all_metrics: dict[str, float]
    how: str


@dataclass(frozen=True)
class MetricsView:
    runs: go.Figure
    delta: go.Figure
    delta_all: go.Figure
    paper: go.Figure
    curves: go.Figure
    keys: tuple[str, ...]
    key: str | None
    table: pd.DataFrame
    markdown: str


def run_deltas(run: RunRecord) -> RunDeltas:
    """Delta_MTL of every non-reference method of ``run`` against its STL block."""
    ref = run.metrics.get(REFERENCE)
    stored = {m: b[DELTA_KEY] for m, b in run.metrics.items() if DELTA_KEY in b}
    dataset, setting = run.meta.get("dataset"), run.meta.get("setting")
    if ref is None or not dataset or not setting:
        return RunDeltas(stored, {}, "stored in metrics.json (no STL block or no _meta data set / setting)")
    try:
        metric_set = metric_set_for(str(dataset), str(setting))
    except KeyError:
        return RunDeltas(stored, {}, f"stored in metrics.json (no paper metric set for {dataset} {setting})")
    paper, every = {}, {}
    for method, block in run.metrics.items():
        try:
            paper[method] = delta_mtl(block, ref, metric_set)
        except ValueError:
            if method in stored:
                paper[method] = stored[method]
        try:
            every[method] = delta_mtl(block, ref)
        except ValueError:
            pass
    names = ", ".join(f"{t} {m}" for t, m in metric_set)
    return RunDeltas(paper, every, f"recomputed vs STL on the paper's set for {dataset} {setting}: {names}")


def delta_table(runs: list[RunRecord], deltas: dict[str, RunDeltas]) -> pd.DataFrame:
    """One row per (run, method): Delta_MTL on the paper's set and over every metric."""
    rows = []
    for run in runs:
        d = deltas[run.name]
        for method in plots.ordered_methods(run.metrics):
            rows.append(
                {
                    "run": run.name,
                    "method": method_label(method),
                    f"Delta_MTL % ({PAPER_SET})": round(d.paper.get(method, float("nan")), 2),
                    f"Delta_MTL % ({ALL_SET})": round(d.all_metrics.get(method, float("nan")), 2),
                }
            )
    return pd.DataFrame(rows)


def metrics_view(
    runs_dir: Path, paper_tables: dict[str, Any], curve_key: str | None, table_key: str | None
) -> MetricsView:
    """Run comparisons, Delta_MTL, one paper table and learning curves (run records re-read each call)."""
    runs = load_runs(runs_dir)
    keys = log_keys(runs)
    key = curve_key if curve_key in keys else (keys[0] if keys else None)
    table_key = table_key if table_key in paper_tables else next(iter(paper_tables))
    src = paper_tables[table_key]["source"]
    deltas = {r.name: run_deltas(r) for r in runs}
    problems = [f"{r.name}: {p}" for r in runs for p in r.problems]
    md = (
        f"{len(runs)} run record(s) in `exports/runs/`. "
        if runs
        else "No run records in `exports/runs/` yet. "
    )
    md += f"Paper table: *{src['paper']}* ({src['authors']}), Table {src['table']}: {src['caption']}."
    md += "".join(f"\n\n**{name}**: Delta_MTL {d.how}." for name, d in deltas.items())
    if problems:
        md += "\n\nSkipped while reading: " + "; ".join(problems)
    return MetricsView(
        runs=plots.runs_figure(runs, paper_tables),
        delta=plots.delta_figure(
            {n: d.paper for n, d in deltas.items()},
            paper_tables,
            f"Delta_MTL on the paper's metric set ({PAPER_SET})",
        ),
        delta_all=plots.delta_figure(
            {n: d.all_metrics for n, d in deltas.items()},
            {},
            f"Secondary: Delta_MTL over every recorded metric ({ALL_SET})",
        ),
        paper=plots.paper_table_figure(paper_tables[table_key]),
        curves=plots.learning_curves_figure(runs, key),
        keys=tuple(keys),
        key=key,
        table=delta_table(runs, deltas),
        markdown=md,
    )


def table_choices(paper_tables: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, key) of each paper table for a dropdown."""
    return [(f"Table {t['source']['table']}: {t['source']['caption']}", k) for k, t in paper_tables.items()]
