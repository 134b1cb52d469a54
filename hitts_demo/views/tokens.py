"""Confidence and tokens view: per-task confidence and global-token maps, one fine-token map, the task
affinity A, the fine tokens' self-affinity and their PCA over the session (the paper's Fig. 7)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from hitts_demo import plots
from hitts_demo import visualize as vis
from hitts_demo.service import Analysis
from hitts_demo.views.common import token_labels

MAX_OVER_CLASSES = "(max over classes)"


@dataclass(frozen=True)
class TokensView:
    """Pictures per task name (None where the model has no such map) and the token figures."""

    confidence: dict[str, np.ndarray]
    global_maps: dict[str, np.ndarray | None]
    fine: np.ndarray | None
    affinity: go.Figure
    self_affinity: go.Figure
    pca: go.Figure
    markdown: str


def _explain(analysis: Analysis, model: str, task: str, what: str) -> str:
    if not analysis.predictions[model].has_tokens:
        return f"**{model}** exports no task tokens: only confidence maps are shown."
    return (
        f"**{model}**. Confidence = max softmax of G' per pixel. Global-token map = M_f = "
        f"sigmoid(<F', theta'>). Fine-token map of **{task}** ({what}) = softplus(phi . F'), shown "
        "relative to its maximum."
    )


def tokens_view(
    analysis: Analysis, model: str | None, task: str | None, class_choice: str | None
) -> TokensView:
    """The view of one model; the fine-token map of ``task``'s class ``class_choice`` (or the max)."""
    pred = analysis.prediction(model)
    confidence, global_maps = {}, {}
    for t in pred.tasks:
        confidence[t.name] = vis.heatmap_panel(pred.confidence(t.name), 0.0, 1.0, "")[1]
        score = pred.global_score(t.name)
        global_maps[t.name] = None if score is None else vis.heatmap_panel(score, 0.0, 1.0, "")[1]
    task_name = task if task in pred.manifest.task_names else pred.tasks[0].name
    labels = token_labels(pred.manifest.task(task_name))
    index = labels.index(class_choice) if class_choice in labels else None
    fine = pred.fine_score(task_name, index)
    fine_panel = None if fine is None else vis.heatmap_panel(fine, 0.0, max(float(fine.max()), 1e-6), "")[1]
    tokens = {t.name: pred.fine_tokens(t.name) for t in pred.tasks if pred.fine_tokens(t.name) is not None}
    names = {t.name: token_labels(t) for t in pred.tasks}
    colours = {t.name: vis.task_palette(t) for t in pred.tasks}
    what = "max over classes" if index is None else f"class {class_choice!r}"
    return TokensView(
        confidence,
        global_maps,
        fine_panel,
        plots.affinity_figure(pred.affinity, pred.manifest.task_names),
        plots.token_self_affinity_figure(tokens, names),
        plots.token_pca_figure(analysis.token_history.get(pred.model, []), names, colours),
        _explain(analysis, pred.model, task_name, what),
    )
