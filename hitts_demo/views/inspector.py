"""Pixel inspector: what every model says at one pixel, read from the kept outputs (no model run).

Per task: the value there (class name, depth in metres, unit normal), its confidence (max softmax of
G'), the global-token gate M_f and, for a model with fine tokens, the fine-token score
softplus(phi_k . F') of every class / bin / centre k. Token maps are at the token-stage resolution
(h, w); pixel (x, y) of the W x H image reads cell (floor((y + 0.5) h / H), floor((x + 0.5) w / W)),
the cell whose area holds the pixel's centre.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw

from hitts_demo import plots
from hitts_demo import visualize as vis
from hitts_demo.manifest import TaskInfo
from hitts_demo.predictor import Prediction
from hitts_demo.preprocess import InputError
from hitts_demo.service import Analysis, Studio
from hitts_demo.views.common import token_labels

MARK_RADIUS = 7
MARK_COLOUR = (255, 0, 255)


@dataclass(frozen=True)
class PixelReport:
    """``tasks`` per model: task -> the JSON entry of the ``inspect`` endpoint."""

    x: int
    y: int
    models: dict[str, dict[str, dict[str, Any]]]
    marked: np.ndarray
    figure: go.Figure
    markdown: str


def check_pixel(x: Any, y: Any, size: tuple[int, int]) -> tuple[int, int]:
    """Integer (x, y) inside a (W, H) image, else ``InputError``."""
    try:
        xi, yi = int(round(float(x))), int(round(float(y)))
    except (TypeError, ValueError) as err:
        raise InputError(f"x and y must be numbers, got {x!r}, {y!r}") from err
    if not (0 <= xi < size[0] and 0 <= yi < size[1]):
        raise InputError(f"pixel ({xi}, {yi}) is outside the {size[0]}x{size[1]} image")
    return xi, yi


def token_cell(x: int, y: int, size: tuple[int, int], grid: tuple[int, ...]) -> tuple[int, int]:
    """(row, col) of the (h, w) token grid whose cell holds pixel (x, y) of a (W, H) image."""
    h, w = grid[-2:]
    return min(int((y + 0.5) * h / size[1]), h - 1), min(int((x + 0.5) * w / size[0]), w - 1)


def _value(pred: Prediction, task: TaskInfo, x: int, y: int) -> dict[str, Any]:
    v = pred.pred(task.name)[y, x]
    if task.is_classification:
        return {"value": int(v), "class_name": task.class_names[int(v)]}
    if task.kind == "depth":
        return {"value": round(float(v), 4), "unit": "m"}
    return {
        "value": [round(float(c), 4) for c in v],
        "unit": "unit normal, camera frame x right, y down, z forward",
    }


def task_at(pred: Prediction, task: TaskInfo, x: int, y: int) -> dict[str, Any]:
    """The ``inspect`` entry of one task at pixel (x, y)."""
    entry = _value(pred, task, x, y)
    entry["confidence"] = round(float(pred.confidence(task.name)[y, x]), 4)
    gate = pred.outputs.get(f"{task.name}_global_score")
    fine = pred.outputs.get(f"{task.name}_fine_scores")
    entry["global_gate"] = None
    entry["fine_token_scores"] = []
    if gate is not None:
        r, c = token_cell(x, y, pred.size, gate.shape)
        entry["global_gate"] = round(float(gate[r, c]), 4)
    if fine is not None:
        r, c = token_cell(x, y, pred.size, fine.shape)
        entry["fine_token_scores"] = [round(float(s), 4) for s in fine[:, r, c]]
    entry["labels"] = token_labels(task)
    return entry


def mark(image: np.ndarray, x: int, y: int) -> np.ndarray:
    """The image with a ring and cross hair at (x, y)."""
    im = Image.fromarray(image)
    draw = ImageDraw.Draw(im)
    r = MARK_RADIUS
    draw.ellipse((x - r, y - r, x + r, y + r), outline=MARK_COLOUR, width=2)
    draw.line((x - 2 * r, y, x - r, y), fill=MARK_COLOUR, width=2)
    draw.line((x + r, y, x + 2 * r, y), fill=MARK_COLOUR, width=2)
    draw.line((x, y - 2 * r, x, y - r), fill=MARK_COLOUR, width=2)
    draw.line((x, y + r, x, y + 2 * r), fill=MARK_COLOUR, width=2)
    return np.asarray(im)


def _line(model: str, task: str, e: dict[str, Any]) -> str:
    value = e.get("class_name") or (
        f"{e['value']:.2f} m"
        if e.get("unit") == "m"
        else "(" + ", ".join(f"{c:+.2f}" for c in e["value"]) + ")"
    )
    gate = "n/a" if e["global_gate"] is None else f"{e['global_gate']:.2f}"
    return f"| {model} | {task} | {value} | {e['confidence']:.2f} | {gate} |"


def inspect_pixel(analysis: Analysis, x: Any, y: Any, models: list[str] | None = None) -> PixelReport:
    """Every model's (or ``models``') outputs at pixel (x, y) of the analysed image."""
    xi, yi = check_pixel(x, y, analysis.image.shape[1::-1])
    names = [m for m in (models or analysis.predictions) if m in analysis.predictions]
    report = {
        m: {t.name: task_at(analysis.predictions[m], t, xi, yi) for t in analysis.predictions[m].tasks}
        for m in names
    }
    lines = [_line(m, t, e) for m, tasks in report.items() for t, e in tasks.items()]
    md = (
        f"Pixel **({xi}, {yi})**. Confidence = max softmax of G'; gate = global-token map M_f at the pixel's "
        "token cell.\n\n| model | task | value | confidence | gate |\n|---|---|---|---|---|\n"
        + "\n".join(lines)
    )
    fine = {
        t: e
        for m, tasks in report.items()
        for t, e in tasks.items()
        if e["fine_token_scores"] and m == names[0]
    }
    colours = {t.name: vis.task_palette(t) for t in analysis.predictions[names[0]].tasks} if names else {}
    figure = plots.fine_scores_figure(
        fine, colours, f"{names[0] if names else ''}: fine-token scores at ({xi}, {yi})"
    )
    return PixelReport(xi, yi, report, mark(analysis.image, xi, yi), figure, md)


def inspect_json(report: PixelReport, model: str) -> dict[str, Any]:
    """The ``inspect`` endpoint's answer for one model (labels of the scores dropped to keep it short)."""
    tasks = {t: {k: v for k, v in e.items() if k != "labels"} for t, e in report.models[model].items()}
    return {"model": model, "x": report.x, "y": report.y, "tasks": tasks}


def inspect_image(studio: Studio, source: Any, model: str | None, x: Any, y: Any) -> dict[str, Any]:
    """The ``inspect`` endpoint: run ``model`` on an upload once and report pixel (x, y), given in the
    uploaded image's (upright) pixels; a downscaled upload is read at the corresponding pixel."""
    studio.require_models()
    name = model if model in studio.manifests else studio.primary
    loaded = studio.load(source)
    upright = (round(loaded.size[0] / loaded.scale), round(loaded.size[1] / loaded.scale))
    xi, yi = check_pixel(x, y, upright)
    xs, ys = min(int(xi * loaded.scale), loaded.size[0] - 1), min(int(yi * loaded.scale), loaded.size[1] - 1)
    analysis = Analysis({name: studio.predictor(name).predict(loaded.rgb)})
    out = inspect_json(inspect_pixel(analysis, xs, ys, [name]), name)
    out.update({"x": xi, "y": yi, "image_size": list(upright), "read_at": [xs, ys]})
    return out
