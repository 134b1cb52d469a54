"""Batch: up to ``MAX_BATCH`` images through one model -> one zip with every raw output per image (the
encodings of the single-image zip, one folder per image) and ``summary.csv`` (one row per image).

An image that cannot be used gets a row with its error and no folder; the others are still written.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hitts_demo.downloads import README_TEXT, ZIP_LEVEL, add_input, add_prediction
from hitts_demo.predictor import Prediction
from hitts_demo.preprocess import InputError
from hitts_demo.service import Studio

MAX_BATCH = 32
SUMMARY_FILE = "summary.csv"


@dataclass(frozen=True)
class BatchResult:
    zip_path: Path
    summary: pd.DataFrame
    markdown: str


def _stem(source: Any, index: int) -> str:
    """A safe folder name: the index and the upload's file stem reduced to [A-Za-z0-9_-]."""
    raw = Path(str(source)).stem if isinstance(source, (str, Path)) else "image"
    clean = "".join(c if c.isalnum() or c in "-_" else "_" for c in raw)[:40] or "image"
    return f"{index:02d}_{clean}"


def summary_row(pred: Prediction) -> dict[str, Any]:
    """Per task: coverage at the manifest's tau, and the dominant class / depth median / mean normal."""
    row: dict[str, Any] = {
        "width": pred.size[0],
        "height": pred.size[1],
        "latency_ms": round(pred.latency_ms, 1),
    }
    for t in pred.tasks:
        _, _, coverage = pred.pseudo(t.name)
        row[f"{t.name} coverage@tau"] = round(coverage, 4)
        value = pred.pred(t.name)
        if t.is_classification:
            row[f"{t.name} dominant class"] = t.class_names[int(np.bincount(value.ravel()).argmax())]
        elif t.kind == "depth":
            row[f"{t.name} median m"] = round(float(np.median(value)), 3)
        else:
            mean = value.reshape(-1, 3).mean(0)
            row[f"{t.name} mean normal"] = " ".join(
                f"{c:+.3f}" for c in mean / max(np.linalg.norm(mean), 1e-12)
            )
    return row


def check_batch(sources: Sequence[Any] | None) -> list[Any]:
    items = [s for s in (sources or []) if s is not None]
    if not items:
        raise InputError("add at least one image to the batch")
    if len(items) > MAX_BATCH:
        raise InputError(f"{len(items)} images: a batch holds at most {MAX_BATCH}; split it and run it twice")
    return items


def predict_batch(
    studio: Studio,
    sources: Sequence[Any] | None,
    model: str | None,
    folder: Path,
    progress: Callable[[float, str], None] | None = None,
) -> BatchResult:
    """Run ``model`` on every image; ``progress(fraction, text)`` is called before each image."""
    items = check_batch(sources)
    studio.require_models()
    name = model if model in studio.manifests else studio.primary
    predictor = studio.predictor(name)
    rows, path = [], folder / "hitts_studio_batch.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL) as zf:
        zf.writestr("README.txt", README_TEXT)
        for i, source in enumerate(items):
            if progress:
                progress(i / len(items), f"image {i + 1} of {len(items)}")
            stem = _stem(source, i)
            try:
                pred = predictor.predict(studio.load(source).rgb)
            except InputError as err:
                rows.append({"image": stem, "model": name, "error": str(err)})
                continue
            add_input(zf, f"{stem}/input.png", pred.image)
            add_prediction(zf, f"{stem}/{name}/", pred)
            rows.append({"image": stem, "model": name, "error": "", **summary_row(pred)})
        summary = pd.DataFrame(rows)
        buf = io.StringIO()
        summary.to_csv(buf, index=False)
        zf.writestr(SUMMARY_FILE, buf.getvalue())
    failed = int((summary["error"] != "").sum())
    md = f"{len(items) - failed} of {len(items)} image(s) through **{name}**" + (
        f"; {failed} refused (see the error column)." if failed else "."
    )
    return BatchResult(path, summary, md)
