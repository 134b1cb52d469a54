"""Evaluate the shipped exports through the dashboard's own runtime, on real and fresh synthetic images.

    python scripts/evaluate_shipped.py [--exports exports] [--models hitts mtl] [--variant fp32]
        [--nyuv2-mini ../shared/data/nyuv2-mini] [--seed 2024] [--num 20] [--profile nyu]
        [--reference mtl] [--out results/shipped_eval.json] [--update-manifest]

Every image goes the way of an upload in the app: ``Studio.load`` (``hitts_demo.preprocess``: decode,
EXIF, caps) -> ``Predictor.predict`` (resize to the model input, normalise, one ONNX Runtime run) ->
``Prediction.pred`` (the display resize back to the image's size: labels nearest, depth bilinear,
normals bilinear then renormalised). The image *is* the label's size, so the figures are measured at
the label resolution (an image the app downscales is resized back with the same functions). The
metrics are the trainer's (``trainer.metrics`` meters: pixel-pooled over a source, the definitions of
training and the paper).

Sources: (a) the real NYUD-v2 frames of nyuv2-mini (640x480; 13-class labels and depth, no normals:
normals are "not measured" there, never derived); (b) ``--num`` synthetic test-split scenes rendered
now by ``trainer.data.synthetic.generate_scene(seed, "test", i)`` (the generator's ``profile`` is
passed where the generator has one). Output: one JSON (per model, per source) and a printed table,
plus each model's mean relative gain over ``--reference`` (``hitts_schema.delta_mtl`` over mIoU,
pAcc, depth abs and rel error, normals mean angle: those measured on the source). With
``--update-manifest`` each export's ``manifest.json`` gets ``evaluations[source]`` (what the
dashboard header shows), stamped with the SHA-256 of the model files measured.
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from hitts_demo import postprocess as pp
from hitts_demo.gallery import resolve_nyuv2_dir
from hitts_demo.manifest import DEFAULT_VARIANT, model_digest
from hitts_demo.predictor import CPU, Prediction
from hitts_demo.service import Studio
from hitts_schema import MANIFEST_FILE, gain_over
from trainer.data.nyuv2_mini import list_frames, load_frame
from trainer.data.synthetic import DEFAULT_HEIGHT, DEFAULT_WIDTH, generate_scene
from trainer.metrics import make_meter
from trainer.tasks import tasks_for

REPO = Path(__file__).resolve().parents[1]
REAL = "nyuv2-mini"
SYNTHETIC = "synthetic"
DEFAULT_SEED = 2024
"""Seed of the fresh synthetic scenes (test split; the shipped models were trained on seed 0's train split)."""
DEFAULT_NUM = 20
DEFAULT_REFERENCE = "mtl"
DEFAULT_OUT = REPO / "results" / "shipped_eval.json"
GAIN_METRICS = (
    ("semseg", "miou"),
    ("semseg", "pacc"),
    ("depth", "abs_err"),
    ("depth", "rel_err"),
    ("normals", "mean_angle"),
)
"""The metrics the gain over the reference averages (those measured on a source)."""
RESIZE_NOTE = (
    "predictions at the label resolution with the app's display resize (hitts_demo.postprocess): "
    "labels nearest, depth bilinear, normals bilinear then renormalised"
)
TABLE_METRICS = (("semseg", "pacc"), ("semseg", "miou"), ("depth", "abs_err"), ("depth", "rel_err"))
TABLE_METRICS += (("depth", "rmse"), ("normals", "mean_angle"))
PIXEL_MAX = 255.0

Sample = tuple[str, Any, dict[str, np.ndarray]]
"""(name, image source as the app receives it (path or PNG bytes), ground truth by task at label size)."""


def real_samples(root: Path) -> Iterator[Sample]:
    """The nyuv2-mini frames: the rgb file as an upload; labels (-1 = ignore) and depth (0 = missing)."""
    for frame_id in list_frames(root):
        gt = load_frame(root, frame_id, ("semseg", "depth"))
        yield frame_id, root / f"rgb_{frame_id}.png", gt


def render_scene(seed: int, index: int, height: int, width: int, profile: str | None) -> dict:
    """One synthetic test-split scene; ``profile`` only where the generator takes one."""
    kwargs: dict[str, Any] = {}
    if profile is not None:
        if "profile" not in inspect.signature(generate_scene).parameters:
            raise SystemExit("--profile: this generator (trainer.data.synthetic) has no profile argument")
        kwargs["profile"] = profile
    return generate_scene(seed, "test", index, height, width, **kwargs)


def synthetic_samples(seed: int, num: int, height: int, width: int, profile: str | None) -> Iterator[Sample]:
    """Fresh scenes, each image encoded as an 8-bit PNG (what an upload of it would be)."""
    for i in range(num):
        scene = render_scene(seed, i, height, width, profile)
        buf = io.BytesIO()
        Image.fromarray((scene["image"] * PIXEL_MAX).round().astype(np.uint8)).save(buf, format="PNG")
        gt = {
            "semseg": scene["label"].astype(np.int64),
            "depth": scene["depth"][..., 0],
            "normals": scene["normal"],
        }
        yield f"{SYNTHETIC}-{seed}-{i:04d}", buf.getvalue(), gt


def pred_at(prediction: Prediction, task: str, size: tuple[int, int]) -> np.ndarray:
    """The app's displayed prediction of ``task`` at ``size`` (W, H): ``Prediction.pred`` when the image
    is the label's size, else the same resize functions applied to the raw output."""
    if prediction.size == size:
        return prediction.pred(task)
    raw = prediction.outputs[f"{task}_pred"]
    kind = prediction.manifest.task(task).kind
    if kind == "depth":
        return pp.resize_bilinear(raw[0], size)
    if kind == "normals":
        return pp.resize_normals(raw, size)
    return pp.resize_nearest(raw, size)


def add_to_meter(meter: Any, kind: str, pred: np.ndarray, target: np.ndarray) -> None:
    """Channel-last normals (the app's layout) -> channel-first (the meters' layout)."""
    pred = np.array(pred)  # a writable copy: the app's cached maps are read-only
    if kind == "normals":
        meter.add(pred.transpose(2, 0, 1), target.transpose(2, 0, 1))
    else:
        meter.add(pred, target)


def evaluate_source(studio: Studio, models: list[str], variant: str, samples: Iterator[Sample]) -> dict:
    """{model: {num_images, label_size, metrics, not_measured, resize}} over every sample of a source."""
    specs = {s.name: s for s in tasks_for("nyud")}
    meters: dict[str, dict[str, Any]] = {}
    count, label_size, missing = 0, None, set()
    for _, source, gt in samples:
        loaded = studio.load(source)
        h, w = next(iter(gt.values())).shape[:2]
        label_size = [h, w]
        for name in models:
            prediction = studio.predictor(name, studio.variant_of(name, variant)).predict(loaded.rgb)
            per_task = meters.setdefault(name, {})
            for task in prediction.manifest.task_names:
                if task not in gt:
                    missing.add(task)
                    continue
                meter = per_task.setdefault(task, make_meter(specs[task]))
                add_to_meter(meter, specs[task].kind, pred_at(prediction, task, (w, h)), gt[task])
        count += 1
    return {
        name: {
            "num_images": count,
            "label_size": label_size,
            "metrics": {task: meter.compute() for task, meter in per_task.items()},
            "not_measured": {task: "no ground truth" for task in sorted(missing)},
            "resize": RESIZE_NOTE,
        }
        for name, per_task in meters.items()
    }


def gains(results: dict[str, dict], reference: str) -> dict[str, dict]:
    """{source: {model: gain over the reference}} for every model other than the reference."""
    out: dict[str, dict] = {}
    for source, per_model in results.items():
        if reference not in per_model:
            continue
        ref = per_model[reference]["metrics"]
        out[source] = {
            name: gain_over(entry["metrics"], ref, GAIN_METRICS)
            for name, entry in per_model.items()
            if name != reference
        }
    return out


def stamp(studio: Studio, models: list[str], variant: str) -> dict[str, dict]:
    """Per model: the variant measured, its files' SHA-256, the time and the command."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    command = "python scripts/evaluate_shipped.py " + shlex.join(sys.argv[1:])
    out = {}
    for name in models:
        used = studio.variant_of(name, variant)
        path = studio.manifests[name].variant_path(used)
        out[name] = {
            "variant": used,
            "model_sha256": model_digest(path),
            "measured_at": now,
            "command": command,
        }
    return out


def update_manifests(studio: Studio, results: dict[str, dict], stamps: dict[str, dict]) -> list[Path]:
    """Write ``evaluations[source]`` into each model's manifest (other keys untouched)."""
    written = []
    for name, info in stamps.items():
        path = studio.manifests[name].export_dir / MANIFEST_FILE
        raw = json.loads(path.read_text(encoding="utf-8"))
        evaluations = raw.get("evaluations") if isinstance(raw.get("evaluations"), dict) else {}
        for source, per_model in results.items():
            if name in per_model:
                evaluations[source] = {**per_model[name], **info}
        raw["evaluations"] = evaluations
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(raw, indent=2), encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written


def table(results: dict[str, dict], gain_table: dict[str, dict], reference: str) -> str:
    """One row per (source, model): the headline metrics and the gain over the reference."""
    head = ["source", "model", "n"] + [f"{t}/{m}" for t, m in TABLE_METRICS] + [f"gain vs {reference} %"]
    rows = [head]
    for source, per_model in results.items():
        for name, entry in per_model.items():
            cells = [source, name, str(entry["num_images"])]
            for t, m in TABLE_METRICS:
                value = entry["metrics"].get(t, {}).get(m)
                cells.append("-" if value is None else f"{value:.3f}")
            gain = gain_table.get(source, {}).get(name, {}).get("gain_percent")
            cells.append("ref" if name == reference else "-" if gain is None else f"{gain:+.2f}")
            rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(wd) for c, wd in zip(r, widths)) for r in rows)


def display_path(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--exports", type=Path, default=REPO / "exports", help="exports folder (default: exports/)"
    )
    p.add_argument("--models", nargs="*", default=None, help="model names (default: every export found)")
    p.add_argument("--variant", default=DEFAULT_VARIANT, help="precision to evaluate (default fp32)")
    p.add_argument("--nyuv2-mini", default=None, help="nyuv2-mini folder (default: the app's lookup)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the fresh synthetic scenes")
    p.add_argument("--num", type=int, default=DEFAULT_NUM, help="fresh synthetic scenes (0: none)")
    p.add_argument("--profile", default=None, help="generator profile (where the generator has one)")
    p.add_argument("--height", type=int, default=DEFAULT_HEIGHT, help="synthetic label height")
    p.add_argument("--width", type=int, default=DEFAULT_WIDTH, help="synthetic label width")
    p.add_argument("--reference", default=DEFAULT_REFERENCE, help="the model gains are measured against")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report (default %(default)s)")
    p.add_argument("--update-manifest", action="store_true", help="write the figures into each manifest")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate, write the JSON (and the manifests); returns the report."""
    studio = Studio(args.exports, providers=[CPU])
    models = args.models or studio.model_names
    unknown = [m for m in models if m not in studio.manifests]
    if unknown:
        raise SystemExit(
            f"unknown model(s) {unknown}; exports found: {studio.model_names} {studio.export_errors}"
        )
    results: dict[str, dict] = {}
    nyuv2 = resolve_nyuv2_dir(args.nyuv2_mini, REPO)
    if nyuv2 is not None:
        results[REAL] = evaluate_source(studio, models, args.variant, real_samples(nyuv2))
    else:
        print("no nyuv2-mini folder found: the real frames are not evaluated", file=sys.stderr)
    if args.num > 0:
        samples = synthetic_samples(args.seed, args.num, args.height, args.width, args.profile)
        results[SYNTHETIC] = evaluate_source(studio, models, args.variant, samples)
        for entry in results[SYNTHETIC].values():
            entry.update(seed=args.seed, split="test", profile=args.profile)
    stamps = stamp(studio, models, args.variant)
    report = {
        "exports": display_path(args.exports),
        "models": stamps,
        "results": results,
        "reference": args.reference,
        "gain_over_reference": gains(results, args.reference),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(table(results, report["gain_over_reference"], args.reference))
    print(f"wrote {args.out}")
    if args.update_manifest:
        for path in update_manifests(studio, results, stamps):
            print(f"updated {path}")
    return report


def main(argv: list[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
