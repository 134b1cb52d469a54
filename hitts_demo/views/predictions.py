"""Predictions view: every task of every model side by side, and the two-sided image slider.

The slider's choices (``slider_choices``) are built once from the manifests; ``slider_image`` draws
one choice at the image's size without a legend; ``task_panel`` is a task's main picture with its
legend (seg overlay, depth in metres, normals).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hitts_demo import visualize as vis
from hitts_demo.manifest import Manifest, TaskInfo
from hitts_demo.predictor import Prediction
from hitts_demo.service import Analysis

INPUT_VIEW = "input"
SEP = " · "


@dataclass(frozen=True)
class SliderView:
    """One choice of the image slider: what to draw, of which model and task."""

    kind: str  # input | overlay | depth | normals | confidence | global | fine | pseudo
    model: str | None = None
    task: str | None = None


@dataclass(frozen=True)
class PredictionsView:
    """``panels``: (model, task) -> picture with legend, None where the model lacks the task."""

    summary: str
    left: np.ndarray
    right: np.ndarray
    panels: dict[tuple[str, str], np.ndarray | None]


def _model_choices(name: str, m: Manifest, prefix: str) -> dict[str, SliderView]:
    views = {}
    for t in m.tasks:
        main = f"{t.name} overlay" if t.is_classification else t.name
        views[prefix + main] = SliderView(
            {"depth": "depth", "normals": "normals"}.get(t.kind, "overlay"), name, t.name
        )
    for t in m.tasks:
        views[f"{prefix}confidence {t.name}"] = SliderView("confidence", name, t.name)
    for kind, label, output in (
        ("global", "global-token map", "global_score"),
        ("fine", "fine-token map", "fine_scores"),
    ):
        for t in m.tasks:
            if m.has_tokens and m.has_output(f"{t.name}_{output}"):
                views[f"{prefix}{label} {t.name}"] = SliderView(kind, name, t.name)
    for t in m.tasks:
        views[f"{prefix}pseudo label {t.name}"] = SliderView("pseudo", name, t.name)
    return views


def slider_choices(manifests: dict[str, Manifest]) -> dict[str, SliderView]:
    """Label -> what it draws; model names prefix the labels when there is more than one model."""
    views = {INPUT_VIEW: SliderView("input")}
    for name, m in manifests.items():
        views.update(_model_choices(name, m, f"{name}{SEP}" if len(manifests) > 1 else ""))
    return views


def default_pair(choices: dict[str, SliderView]) -> tuple[str, str]:
    labels = list(choices)
    return INPUT_VIEW, (labels[1] if len(labels) > 1 else INPUT_VIEW)


def slider_image(analysis: Analysis, choices: dict[str, SliderView], choice: str) -> np.ndarray:
    """The bare (legend-free) picture of one slider choice, at the image's size."""
    view = choices.get(choice, SliderView("input"))
    if view.kind == "input" or view.model not in analysis.predictions:
        return analysis.image
    pred = analysis.predictions[view.model]
    task = pred.manifest.task(view.task)
    value = pred.pred(task.name) if view.kind in ("overlay", "depth", "normals") else None
    if view.kind == "overlay":
        return vis.segmentation_overlay(pred.image, value, task)
    if view.kind == "depth":
        return vis.depth_to_rgb(value)
    if view.kind == "normals":
        return vis.normals_to_rgb(value)
    if view.kind == "confidence":
        return vis.heatmap(pred.confidence(task.name))
    if view.kind == "global":
        return vis.heatmap(pred.global_score(task.name))
    if view.kind == "fine":
        score = pred.fine_score(task.name)
        return vis.heatmap(score, 0.0, max(float(score.max()), 1e-6))
    label, kept, _ = pred.pseudo(task.name)
    return vis.hatch_rejected(vis.label_colours(label, task), kept)


def task_panel(pred: Prediction, task: TaskInfo) -> np.ndarray:
    """The main picture of a task with its legend: seg overlay, depth in metres, normals."""
    value = pred.pred(task.name)
    if task.is_classification:
        return vis.segmentation_panel(pred.image, value, task)[1]
    if task.kind == "depth":
        return vis.depth_panel(value)[1]
    return vis.normals_panel(value)[1]


def summary_markdown(analysis: Analysis, providers: dict[str, list[str]]) -> str:
    h, w = analysis.image.shape[:2]
    parts = [f"Image {w}x{h} ({analysis.source})."]
    parts += [f"{n}." for n in analysis.notes]
    for name, pred in analysis.predictions.items():
        parts.append(
            f"**{name}** ({pred.variant}): {pred.latency_ms:.0f} ms ({', '.join(providers.get(name, []))})."
        )
    return " ".join(parts)


def predictions_view(
    analysis: Analysis,
    choices: dict[str, SliderView],
    left: str,
    right: str,
    task_slots: list[str],
    providers: dict[str, list[str]],
) -> PredictionsView:
    """Every model x task panel (``task_slots``: the union of the models' tasks) and the slider pair."""
    panels = {}
    for name, pred in analysis.predictions.items():
        for task in task_slots:
            has = task in pred.manifest.task_names
            panels[(name, task)] = task_panel(pred, pred.manifest.task(task)) if has else None
    return PredictionsView(
        summary_markdown(analysis, providers),
        slider_image(analysis, choices, left),
        slider_image(analysis, choices, right),
        panels,
    )
