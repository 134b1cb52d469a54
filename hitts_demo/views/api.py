"""The ``predict`` endpoint: one model on one image -> per task its main raw file and a JSON
description of the encodings (the same files as in the download zip)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hitts_demo import visualize as vis
from hitts_demo.downloads import task_files
from hitts_demo.manifest import TaskInfo
from hitts_demo.predictor import Prediction
from hitts_demo.service import Studio


def main_file_name(task: TaskInfo) -> str:
    """The raw file the ``predict`` endpoint returns for a task (names as in the download zip)."""
    if task.is_classification:
        return f"{task.name}_pred.png"
    return f"{task.name}_mm.png" if task.kind == "depth" else f"{task.name}_rgb.png"


def task_entry(pred: Prediction, task: TaskInfo) -> dict[str, Any]:
    """How a task's main file is encoded, its tau and coverage."""
    _, _, coverage = pred.pseudo(task.name)
    entry: dict[str, Any] = {
        "file": main_file_name(task),
        "tau": task.tau,
        "coverage_at_tau": round(coverage, 4),
    }
    if task.is_classification:
        entry["encoding"] = "palette PNG, pixel value = class index"
        entry["class_names"] = list(task.class_names)
    elif task.kind == "depth":
        entry["encoding"] = "16-bit PNG, depth in millimetres, 0 = no value"
        entry["range_m"] = [round(float(v), 3) for v in vis.depth_range(pred.pred(task.name))]
    else:
        entry["encoding"] = "8-bit RGB PNG of (n + 1) / 2 * 255"
    return entry


def predict_files(
    studio: Studio, source: Any, model: str | None, folder: Path
) -> tuple[list[Path | None], dict]:
    """Run one model; per task of ``studio.api_task_names()`` its main raw file (None where the model
    lacks the task) and the JSON description."""
    studio.require_models()
    name = model if model in studio.manifests else studio.primary
    loaded = studio.load(source)
    pred = studio.predictor(name).predict(loaded.rgb)
    paths: list[Path | None] = []
    info: dict[str, Any] = {
        "model": name,
        "image_size": list(loaded.size),
        "latency_ms": round(pred.latency_ms, 1),
        "notes": loaded.notes,
        "tasks": {},
    }
    for task_name in studio.api_task_names():
        if task_name not in pred.manifest.task_names:
            paths.append(None)
            continue
        task = pred.manifest.task(task_name)
        path = folder / main_file_name(task)
        path.write_bytes(task_files(pred, task_name)[path.name])
        paths.append(path)
        info["tasks"][task_name] = task_entry(pred, task)
    return paths, info
