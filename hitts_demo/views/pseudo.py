"""Pseudo-label view: per task at a tau, the kept mask, coverage and per-class retention; with ground
truth (gallery items), the accuracy of the kept pixels against coverage as tau sweeps 0..1."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from hitts_demo import plots
from hitts_demo import postprocess as pp
from hitts_demo import visualize as vis
from hitts_demo.service import Analysis
from hitts_demo.views.common import retention_text

TAU_GRID = np.round(np.arange(0.0, 1.0, 0.01), 2)
HEADER = "| task | tau | coverage | accuracy (vs GT) | retention per class (top) |\n|---|---|---|---|---|\n"


@dataclass(frozen=True)
class PseudoView:
    panels: dict[str, np.ndarray]
    markdown: str
    curve: go.Figure


def _pct(value: float) -> str:
    return "n/a (nothing kept)" if not np.isfinite(value) else f"{100 * value:.1f}%"


def pseudo_view(analysis: Analysis, model: str | None, taus: dict[str, float]) -> PseudoView:
    """Pseudo labels per task at ``taus`` (the manifest's tau where a task is missing)."""
    pred = analysis.prediction(model)
    panels, rows, curves, current = {}, [], {}, {}
    for t in pred.tasks:
        tau = float(taus.get(t.name, t.tau))
        label, kept, coverage = pred.pseudo(t.name, tau)
        panels[t.name] = vis.pseudo_panel(pred.image, label, kept, t, coverage)[1]
        line = f"| {t.name} | {tau:.2f} | {100 * coverage:.1f}% |"
        gt = analysis.ground_truth.get(t.name)
        if gt is not None:
            acc, cov = pp.accuracy_coverage(
                label, pred.confidence(t.name), pp.target_to_index(t, gt), np.append(TAU_GRID, tau)
            )
            curves[t.name] = (TAU_GRID, acc[:-1], cov[:-1])
            current[t.name] = (tau, float(np.nan_to_num(acc[-1])), float(cov[-1]))
            line += f" {_pct(acc[-1])} |"
        else:
            line += " n/a |"
        rows.append(line + f" {retention_text(label, kept, t)} |")
    note = "Pseudo label = argmax softmax(G'); kept where confidence > tau (hatched grey: rejected). " + (
        f"Ground truth: {analysis.source}." if analysis.ground_truth else "No ground truth for an upload."
    )
    return PseudoView(
        panels,
        f"**{pred.model}**. {note}\n\n" + HEADER + "\n".join(rows),
        plots.accuracy_coverage_figure(curves, current),
    )
