"""One honest line per model for the dashboard header: what it was trained on and how well it does.

Built from the manifest alone (``trainer/export.py`` writes the training description and the run's
figures; ``scripts/evaluate_shipped.py --update-manifest`` adds ``evaluations``: figures measured on
the exported model through this package's runtime). Whatever a manifest does not hold is said to be
"not measured", never guessed; figures measured on other model files than the ones served (a
re-export without a new evaluation) are flagged as such.

Units: the trainer's mIoU and pixel accuracy are percentages; depth errors in metres (relative error
unitless); normal angles in degrees.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hitts_demo.manifest import Manifest, model_digest
from hitts_schema.methods import METHODS

NOT_MEASURED = "not measured"
SEPARATOR = " · "
FIGURES: tuple[tuple[str, str, str, str], ...] = (
    ("semseg", "pacc", "pixel acc", "{:.1f} %"),
    ("semseg", "miou", "mIoU", "{:.1f} %"),
    ("depth", "abs_err", "depth abs", "{:.2f} m"),
    ("depth", "rel_err", "depth rel", "{:.2f}"),
    ("normals", "mean_angle", "normals mean", "{:.1f}°"),
)
"""(task, metric, label, format) of the figures a header line shows, in order."""
REAL_SOURCE = "nyuv2-mini"
SYNTHETIC_SOURCE = "synthetic"
SOURCE_LABELS = {REAL_SOURCE: "real NYUD-v2 frames", SYNTHETIC_SOURCE: "fresh synthetic test scenes"}
SPLIT_LABELS = {"val": "held-out validation scenes", "test": "synthetic test split"}


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    return float(value) if ok else None


def figures_text(
    metrics: Mapping[str, Any], tasks: tuple[str, ...], reasons: Mapping[str, Any] | None = None
) -> str:
    """``pixel acc 43.0 %, depth rel 0.44, normals not measured (no ground truth)``: each shown figure
    the dict holds; a task of the model with none of its figures is "not measured" (with its reason)."""
    reasons = reasons if isinstance(reasons, Mapping) else {}
    parts, seen = [], set()
    for task, metric, label, fmt in FIGURES:
        values = metrics.get(task)
        value = _number(values.get(metric)) if isinstance(values, Mapping) else None
        if value is not None:
            parts.append(f"{label} {fmt.format(value)}")
            seen.add(task)
    shown_tasks = {task for task, *_ in FIGURES}
    parts += [
        f"{t} {NOT_MEASURED}" + (f" ({reasons[t]})" if t in reasons else "")
        for t in tasks
        if t in shown_tasks and t not in seen
    ]
    return ", ".join(parts) if seen else NOT_MEASURED


STAGED_ARCHS = frozenset(m.arch for m in METHODS.values() if m.stage > 1)
"""The architectures with a stage 2 in ``hitts_schema.methods`` (HiTTs): the baselines' manifests carry
``stage: 1`` too, which the header does not repeat for them."""


def training_text(m: Manifest) -> str:
    """``trained on synthetic scenes only (795 scenes, generator seed 0; 288x384, 40 epochs, stage 2, one-label)``,
    then the manifest's ``history`` where it has one (where and on what each part of the schedule ran,
    e.g. a pair trained on one generator profile and tailed on another)."""
    t = m.trained_on
    if not t:
        return f"training data {NOT_MEASURED.replace('measured', 'recorded')}"
    dataset = t.get("dataset", "?")
    what = "synthetic scenes only" if dataset == "synthetic" else str(dataset)
    details = []
    if "num_train" in t:
        held = t.get("validation_images") or 0
        details.append(f"{t['num_train'] - held} scenes" + (f" + {held} held out" if held else ""))
    gen = t.get("synthetic") if isinstance(t.get("synthetic"), Mapping) else {}
    details += [f"{k} {gen[k]}" for k in ("profile", "seed") if gen.get(k) is not None]
    size = t.get("input_size")
    shape = [f"{size[0]}x{size[1]}" if isinstance(size, list) and len(size) == 2 else ""]
    epochs = f"{t['epochs']} epochs" if "epochs" in t else ""
    if epochs and t.get("epochs_scheduled"):
        epochs = f"{t['epochs']} of {t['epochs_scheduled']} scheduled epochs (stopped early)"
    shape += [epochs, f"stage {m.stage}" if m.stage and m.arch in STAGED_ARCHS else ""]
    shape.append(str(t.get("setting", "")))
    inner = ", ".join(details) + "; " + ", ".join(s for s in shape if s)
    history = t.get("history")
    how = f": {history}" if isinstance(history, str) and history.strip() else ""
    return f"trained on {what} ({inner.strip('; ')}){how}"


def validation_text(m: Manifest) -> str:
    """The run's own figures: the held-out validation scenes, else ``metrics`` with its split."""
    tasks = m.task_names
    if m.val_metrics:
        held = m.trained_on.get("validation_images")
        count = f" ({held})" if held else ""
        return f"validation, {SPLIT_LABELS['val']}{count}: {figures_text(m.val_metrics, tasks)}"
    if any(isinstance(v, Mapping) for v in m.metrics.values()):
        split = SPLIT_LABELS.get(m.eval_split, "synthetic evaluation, split not recorded")
        return f"{split}: {figures_text(m.metrics, tasks)}"
    return f"validation: {NOT_MEASURED}"


@functools.lru_cache(maxsize=16)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    return model_digest(path)


def current_digest(m: Manifest) -> str | None:
    """SHA-256 of the fp32 model files being served (cached per file version), None if unreadable."""
    try:
        stat = Path(m.onnx_path).stat()
        return _digest(str(m.onnx_path), stat.st_mtime_ns, stat.st_size)
    except OSError:
        return None


def evaluation_text(m: Manifest, source: str, digest: str | None = None) -> str:
    """``real NYUD-v2 frames (10): pixel acc 43.0 %, ...`` from ``evaluations[source]``, or not measured."""
    label = SOURCE_LABELS.get(source, source)
    entry = m.evaluations.get(source)
    if not isinstance(entry, Mapping) or not isinstance(entry.get("metrics"), Mapping):
        return f"{label}: {NOT_MEASURED}"
    count = entry.get("num_images")
    seed = f", seed {entry['seed']}" if entry.get("seed") is not None else ""
    seed += f", profile {entry['profile']}" if entry.get("profile") else ""
    figures = figures_text(entry["metrics"], m.task_names, entry.get("not_measured"))
    text = f"{label} ({count}{seed}): {figures}"
    measured_on = entry.get("model_sha256")
    if measured_on and digest and measured_on != digest:
        text += " (measured on other model files: re-run scripts/evaluate_shipped.py)"
    return text


def model_line(m: Manifest, digest: str | None = None, with_name: bool = True) -> str:
    """The header line of one model (``digest``: ``current_digest(m)``, to flag stale evaluations)."""
    parts = [
        (f"**{m.name}** " if with_name else "") + training_text(m),
        validation_text(m),
        evaluation_text(m, REAL_SOURCE, digest),
    ]
    if SYNTHETIC_SOURCE in m.evaluations:
        parts.append(evaluation_text(m, SYNTHETIC_SOURCE, digest))
    return SEPARATOR.join(parts)
