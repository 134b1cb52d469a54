"""Where the shipped models fail on the real frames: depth scale, and which classes they confuse.

    python scripts/diagnose_real_frames.py [--exports exports] [--models hitts mtl]
        [--nyuv2-mini ../shared/data/nyuv2-mini] [--out results/defaults/real-frames-diagnosis.json]

Each nyuv2-mini frame goes the way of an upload (``evaluate_shipped``: ``Studio.load`` ->
``Predictor.predict`` -> the display resize to the label size). Per model it reports:

* depth: per frame, the ratio of the predicted to the true median depth (1 = right scale), and the
  mean relative error as predicted and after **per-frame median scaling** (prediction x true median /
  predicted median, the usual scale-invariant reading of monocular depth): the part of the error a
  single scale factor per image would remove;
* semseg: per class, its share of the labelled pixels, its share of the predictions, and its recall
  (pixels of the class predicted as the class).

The real frames guide design only (no model is trained or chosen on them); this script reads them,
it never changes a shipped figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluate_shipped import REAL, pred_at, real_samples  # noqa: E402

from hitts_demo.gallery import resolve_nyuv2_dir  # noqa: E402
from hitts_demo.predictor import CPU  # noqa: E402
from hitts_demo.service import Studio  # noqa: E402
from trainer.metrics import make_meter  # noqa: E402
from trainer.tasks import tasks_for  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "results" / "defaults" / "real-frames-diagnosis.json"


def median_scaled_rel(pred: np.ndarray, target: np.ndarray) -> tuple[float, float, float]:
    """(pred median / true median, mean rel error, mean rel error after per-frame median scaling)
    over the valid pixels (target > 0) of one frame. pred, target: (H, W) metres."""
    valid = target > 0
    p, t = pred[valid].astype(np.float64), target[valid].astype(np.float64)
    ratio = float(np.median(p) / np.median(t))
    rel = float(np.mean(np.abs(p - t) / t))
    scaled = p / ratio
    return ratio, rel, float(np.mean(np.abs(scaled - t) / t))


def class_table(confusion: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    """Per class: share of labelled pixels, share of predictions (percent) and recall (percent, None
    for a class with no labelled pixel). confusion: (C, C), rows = truth, columns = prediction."""
    total = max(int(confusion.sum()), 1)
    rows = []
    for c, name in enumerate(names):
        labelled = int(confusion[c].sum())
        rows.append(
            {
                "class": name,
                "labelled_percent": 100.0 * labelled / total,
                "predicted_percent": 100.0 * float(confusion[:, c].sum()) / total,
                "recall_percent": 100.0 * float(confusion[c, c]) / labelled if labelled else None,
            }
        )
    return rows


def diagnose(studio: Studio, model: str, root: Path) -> dict[str, Any]:
    """Depth scale and per-class figures of ``model`` over every nyuv2-mini frame."""
    names = list(studio.manifests[model].task("semseg").class_names)
    seg = make_meter(next(s for s in tasks_for("nyud") if s.name == "semseg"))  # its (gt, pred) confusion
    frames = []
    for frame_id, source, gt in real_samples(root):
        prediction = studio.predictor(model, "fp32").predict(studio.load(source).rgb)
        h, w = gt["semseg"].shape
        labels, depth = pred_at(prediction, "semseg", (w, h)), pred_at(prediction, "depth", (w, h))
        seg.add(np.array(labels), gt["semseg"])  # ignore (-1) pixels skipped by the meter
        ratio, rel, scaled = median_scaled_rel(depth, gt["depth"])
        frames.append(
            {"frame": frame_id, "median_ratio": ratio, "rel_err": rel, "rel_err_median_scaled": scaled}
        )
    return {
        "depth": {
            "frames": frames,
            "mean_rel_err": float(np.mean([f["rel_err"] for f in frames])),
            "mean_rel_err_median_scaled": float(np.mean([f["rel_err_median_scaled"] for f in frames])),
        },
        "semseg": class_table(seg.confusion.numpy(), names),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--exports", type=Path, default=REPO / "exports")
    p.add_argument("--models", nargs="*", default=None, help="model names (default: every export found)")
    p.add_argument("--nyuv2-mini", default=None, help="nyuv2-mini folder (default: the app's lookup)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    root = resolve_nyuv2_dir(args.nyuv2_mini, REPO)
    if root is None:
        raise SystemExit(f"no {REAL} folder found (--nyuv2-mini)")
    studio = Studio(args.exports, providers=[CPU])
    report = {m: diagnose(studio, m, root) for m in args.models or studio.model_names}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for model, r in report.items():
        d = r["depth"]
        ratios = ", ".join(f"{f['median_ratio']:.2f}" for f in d["frames"])
        print(
            f"{model}: depth rel {d['mean_rel_err']:.3f} -> {d['mean_rel_err_median_scaled']:.3f} "
            f"median-scaled; pred/true median per frame: {ratios}"
        )
        for row in sorted(r["semseg"], key=lambda x: -x["labelled_percent"])[:6]:
            print(
                f"  {row['class']:>10}: labelled {row['labelled_percent']:5.1f} %, predicted "
                f"{row['predicted_percent']:5.1f} %, recall {row['recall_percent'] or 0:5.1f} %"
            )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
