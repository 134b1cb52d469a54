"""What the dashboard's views call: models, analyses and the pictures / figures / files of each view.

No Gradio here (``app.py`` is the UI). A ``Studio`` finds the exports (``<exports>/<name>/manifest.json``),
reads their manifests at construction (cheap) and builds each ONNX Runtime session once, on first use
or in ``warm()``. ``analyze`` runs every model once on an image and returns an ``Analysis`` (kept by
the UI in ``gr.State``); every view is then rendered from it without running a model again.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hitts_demo import plots
from hitts_demo import postprocess as pp
from hitts_demo import visualize as vis
from hitts_demo.downloads import task_files, write_raw_zip
from hitts_demo.gallery import GalleryItem, list_gallery, load_ground_truth
from hitts_demo.manifest import ExportError, Manifest, TaskInfo, load_manifest
from hitts_demo.pointcloud import back_project, default_focal, write_glb, write_ply
from hitts_demo.predictor import Prediction, Predictor
from hitts_demo.preprocess import DEFAULT_LIMITS, ImageLimits, InputError, load_image
from hitts_demo.records import load_paper_tables, load_runs, log_keys

PREFERRED_ORDER = ("hitts", "mtl", "stl")
RESERVED_FOLDERS = frozenset({"gallery", "runs"})
TOKEN_HISTORY = 12
"""Images whose fine tokens are kept per session for the PCA plot."""
TAU_GRID = np.round(np.arange(0.0, 1.0, 0.01), 2)
INPUT_VIEW = "input"
SEP = " · "
MAX_RETENTION_ROWS = 8
COLOUR_BY = ("class", "rgb")


@dataclass
class Analysis:
    """Every model's prediction for one image, its ground truth (gallery items) and session memory."""

    predictions: dict[str, Prediction]
    ground_truth: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = "upload"
    notes: list[str] = field(default_factory=list)
    token_history: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)

    @property
    def image(self) -> np.ndarray:
        return next(iter(self.predictions.values())).image

    def prediction(self, model: str | None) -> Prediction:
        if model in self.predictions:
            return self.predictions[model]
        return next(iter(self.predictions.values()))


@dataclass(frozen=True)
class SliderView:
    """One choice of the image slider: what to draw, of which model and task."""

    kind: str  # input | overlay | depth | normals | confidence | global | fine | pseudo
    model: str | None = None
    task: str | None = None


class Studio:
    """The exports, gallery and run records behind the dashboard."""

    def __init__(self, exports_dir: str | Path, nyuv2_dir: Path | None = None,
                 limits: ImageLimits = DEFAULT_LIMITS, providers: list[str] | None = None) -> None:  # fmt: skip
        self.exports_dir = Path(exports_dir).resolve()
        self.limits = limits
        self.providers = providers
        self.manifests: dict[str, Manifest] = {}
        self.export_errors: dict[str, str] = {}
        self._predictors: dict[str, Predictor] = {}
        self._lock = threading.Lock()
        self._discover()
        self.gallery: list[GalleryItem] = list_gallery(self.exports_dir / "gallery", nyuv2_dir)
        self.paper_tables = load_paper_tables()
        self.slider_views = self._slider_views()

    # --- models -------------------------------------------------------------------------------
    def _discover(self) -> None:
        folders = [self.exports_dir] if (self.exports_dir / "manifest.json").is_file() else []
        if self.exports_dir.is_dir() and not folders:
            folders = [
                p for p in sorted(self.exports_dir.iterdir()) if p.is_dir() and p.name not in RESERVED_FOLDERS
            ]
        found: dict[str, Manifest] = {}
        for folder in folders:
            if not (folder / "manifest.json").is_file():
                continue
            try:
                manifest = load_manifest(folder)
            except ExportError as err:
                self.export_errors[folder.name] = str(err)
                continue
            key = manifest.name if manifest.name not in found else folder.name
            found[key] = manifest
        rank = {n: i for i, n in enumerate(PREFERRED_ORDER)}
        for key in sorted(found, key=lambda k: (rank.get(k, len(rank)), k)):
            self.manifests[key] = found[key]

    @property
    def model_names(self) -> list[str]:
        return list(self.manifests)

    @property
    def primary(self) -> str | None:
        """The model the token / pseudo-label / 3D views open on: the first with tokens."""
        with_tokens = [n for n, m in self.manifests.items() if m.has_tokens]
        return (with_tokens or self.model_names or [None])[0]

    def predictor(self, name: str) -> Predictor:
        """The model's predictor, built (session created and validated) on first use."""
        with self._lock:
            if name not in self._predictors:
                if name not in self.manifests:
                    raise ExportError(f"no model named {name!r}; available: {self.model_names}")
                self._predictors[name] = Predictor(self.manifests[name].export_dir, providers=self.providers)
            return self._predictors[name]

    def warm(self) -> dict[str, float]:
        """Build every predictor now; a model that fails moves to ``export_errors``. Returns seconds per model."""
        timings = {}
        for name in list(self.manifests):
            start = time.perf_counter()
            try:
                self.predictor(name)
            except ExportError as err:
                self.export_errors[name] = str(err)
                del self.manifests[name]
                continue
            timings[name] = time.perf_counter() - start
        self.slider_views = self._slider_views()
        return timings

    def status_markdown(self) -> str:
        """Which models are served, from where, and what failed to load."""
        lines = []
        if not self.manifests:
            lines.append(f"**No model export found in `{self.exports_dir}`.** Put the trainer's exports in "
                         "`exports/hitts/` and `exports/mtl/` (`model.onnx` + `manifest.json`).")  # fmt: skip
        for name, m in self.manifests.items():
            trained = m.trained_on
            tokens = "with tokens" if m.has_tokens else "no tokens"
            where = (
                f"; trained on {trained['dataset']} ({trained.get('setting', '?')})"
                if "dataset" in trained
                else ""
            )
            lines.append(f"**{name}**: {m.arch}, {m.backbone}, input {m.input.width}x{m.input.height}, "
                         f"tasks {', '.join(m.task_names)}, {tokens}{where}")  # fmt: skip
        for name, err in self.export_errors.items():
            first = err.splitlines()
            lines.append(f"**{name} not loaded**: {' '.join(s.strip() for s in first)}")
        return "  \n".join(lines)

    # --- gallery ------------------------------------------------------------------------------
    def gallery_item(self, name: str) -> GalleryItem:
        for item in self.gallery:
            if item.name == name:
                return item
        raise InputError(f"unknown gallery item {name!r}")

    # --- analysis -----------------------------------------------------------------------------
    def analyze(
        self, source: Any, gallery_name: str | None = None, previous: Analysis | None = None
    ) -> Analysis:
        """Decode the upload (or the gallery item) and run every model once on it."""
        if not self.manifests:
            raise ExportError(self.status_markdown().replace("**", ""))
        item = self.gallery_item(gallery_name) if gallery_name else None
        if source is None and item is None:
            raise InputError("upload an image (or pick a gallery item) first")
        loaded = load_image(source if source is not None else item.rgb, self.limits)
        predictions = {name: self.predictor(name).predict(loaded.rgb) for name in self.manifests}
        ground_truth: dict[str, np.ndarray] = {}
        if item is not None:
            ground_truth = _fit_ground_truth(load_ground_truth(item), loaded.size)
        history = {k: list(v) for k, v in (previous.token_history if previous else {}).items()}
        for name, pred in predictions.items():
            tokens = {
                t.name: pred.fine_tokens(t.name) for t in pred.tasks if pred.fine_tokens(t.name) is not None
            }
            if tokens:
                history[name] = (history.get(name, []) + [tokens])[-TOKEN_HISTORY:]
        return Analysis(predictions, ground_truth, item.label if item else "upload", loaded.notes, history)

    # --- Predictions view ---------------------------------------------------------------------
    def task_panel(self, pred: Prediction, task: TaskInfo) -> np.ndarray:
        """The main picture of a task with its legend: seg overlay, depth in metres, normals."""
        value = pred.pred(task.name)
        if task.is_classification:
            return vis.segmentation_panel(pred.image, value, task)[1]
        if task.kind == "depth":
            return vis.depth_panel(value)[1]
        return vis.normals_panel(value)[1]

    def summary_markdown(self, analysis: Analysis) -> str:
        h, w = analysis.image.shape[:2]
        parts = [f"Image {w}x{h} ({analysis.source})."]
        parts += [f"{n}." for n in analysis.notes]
        for name, pred in analysis.predictions.items():
            providers = ", ".join(self.predictor(name).providers)
            parts.append(f"**{name}**: {pred.latency_ms:.0f} ms ({providers}).")
        return " ".join(parts)

    def _slider_views(self) -> dict[str, SliderView]:
        views = {INPUT_VIEW: SliderView("input")}
        many = len(self.manifests) > 1
        for name, m in self.manifests.items():
            prefix = f"{name}{SEP}" if many else ""
            for t in m.tasks:
                main = f"{t.name} overlay" if t.is_classification else t.name
                views[prefix + main] = SliderView(
                    {"depth": "depth", "normals": "normals"}.get(t.kind, "overlay"), name, t.name
                )
            for t in m.tasks:
                views[f"{prefix}confidence {t.name}"] = SliderView("confidence", name, t.name)
            if m.has_tokens:
                for t in m.tasks:
                    if m.has_output(f"{t.name}_global_score"):
                        views[f"{prefix}global-token map {t.name}"] = SliderView("global", name, t.name)
                for t in m.tasks:
                    if m.has_output(f"{t.name}_fine_scores"):
                        views[f"{prefix}fine-token map {t.name}"] = SliderView("fine", name, t.name)
            for t in m.tasks:
                views[f"{prefix}pseudo label {t.name}"] = SliderView("pseudo", name, t.name)
        return views

    def default_slider_pair(self) -> tuple[str, str]:
        choices = list(self.slider_views)
        return INPUT_VIEW, (choices[1] if len(choices) > 1 else INPUT_VIEW)

    def slider_image(self, analysis: Analysis, choice: str) -> np.ndarray:
        """The bare (legend-free) picture of one slider choice, at the image's size."""
        view = self.slider_views.get(choice, SliderView("input"))
        if view.kind == "input" or view.model not in analysis.predictions:
            return analysis.image
        pred = analysis.predictions[view.model]
        task = pred.manifest.task(view.task)
        if view.kind == "overlay":
            return vis.segmentation_panel(pred.image, pred.pred(task.name), task)[0]
        if view.kind == "depth":
            return vis.depth_to_rgb(pred.pred(task.name))
        if view.kind == "normals":
            return vis.normals_to_rgb(pred.pred(task.name))
        if view.kind == "confidence":
            return vis.heatmap(pred.confidence(task.name))
        if view.kind == "global":
            return vis.heatmap(pred.global_score(task.name))
        if view.kind == "fine":
            score = pred.fine_score(task.name)
            return vis.heatmap(score, 0.0, max(float(score.max()), 1e-6))
        label, kept, _ = pred.pseudo(task.name)
        return vis.hatch_rejected(vis.label_colours(label, task), kept)

    def raw_zip(self, analysis: Analysis, folder: Path) -> Path:
        return write_raw_zip(analysis.predictions, folder / "hitts_studio_outputs.zip")

    # --- Confidence and tokens view -----------------------------------------------------------
    def class_choices(self, model: str | None, task: str | None) -> list[str]:
        """Names for the fine-token class picker: class names, depth bins in metres, normal centres."""
        if model not in self.manifests:
            return []
        m = self.manifests[model]
        if task not in m.task_names:
            return []
        return token_labels(m.task(task))

    def tokens_view(
        self, analysis: Analysis, model: str | None, task: str | None, class_choice: str | None
    ) -> dict[str, Any]:
        """Confidence and global-token panels per task, one fine-token map, and the token figures."""
        pred = analysis.prediction(model)
        out: dict[str, Any] = {"confidence": {}, "global": {}, "fine": None}
        for t in pred.tasks:
            out["confidence"][t.name] = vis.heatmap_panel(pred.confidence(t.name), 0.0, 1.0, "")[1]
            score = pred.global_score(t.name)
            out["global"][t.name] = None if score is None else vis.heatmap_panel(score, 0.0, 1.0, "")[1]
        task_name = task if task in pred.manifest.task_names else pred.tasks[0].name
        labels = token_labels(pred.manifest.task(task_name))
        index = labels.index(class_choice) if class_choice in labels else None
        fine = pred.fine_score(task_name, index)
        if fine is not None:
            top = max(float(fine.max()), 1e-6)
            out["fine"] = vis.heatmap_panel(fine, 0.0, top, "")[1]
        tokens = {
            t.name: pred.fine_tokens(t.name) for t in pred.tasks if pred.fine_tokens(t.name) is not None
        }
        names = {t.name: token_labels(t) for t in pred.tasks}
        colours = {t.name: vis.task_palette(t) for t in pred.tasks}
        out["affinity"] = plots.affinity_figure(pred.affinity, pred.manifest.task_names)
        out["self_affinity"] = plots.token_self_affinity_figure(tokens, names)
        out["pca"] = plots.token_pca_figure(analysis.token_history.get(pred.model, []), names, colours)
        what = "max over classes" if index is None else f"class {class_choice!r}"
        out["markdown"] = (
            f"**{pred.model}**. Confidence = max softmax of G' per pixel. Global-token map = "
            f"M_f = sigmoid(<F', theta'>). Fine-token map of **{task_name}** ({what}) = softplus(phi . F'), "
            f"shown relative to its maximum."
            if pred.has_tokens
            else f"**{pred.model}** exports no task tokens: only confidence maps are shown."
        )
        return out

    # --- Pseudo labels view -------------------------------------------------------------------
    def pseudo_view(self, analysis: Analysis, model: str | None, taus: dict[str, float]) -> dict[str, Any]:
        """Pseudo labels per task at the given tau (kept mask, coverage, per-class retention) and,
        with ground truth, the accuracy / coverage curve over tau."""
        pred = analysis.prediction(model)
        panels, rows, curves, current = {}, [], {}, {}
        for t in pred.tasks:
            tau = float(taus.get(t.name, t.tau))
            label, kept, coverage = pred.pseudo(t.name, tau)
            panels[t.name] = vis.pseudo_panel(pred.image, label, kept, t, coverage)[1]
            line = f"| {t.name} | {tau:.2f} | {100 * coverage:.1f}% |"
            gt = analysis.ground_truth.get(t.name)
            if gt is not None:
                gt_index = pp.target_to_index(t, gt)
                acc, cov = pp.accuracy_coverage(
                    label, pred.confidence(t.name), gt_index, np.append(TAU_GRID, tau)
                )
                curves[t.name] = (TAU_GRID, acc[:-1], cov[:-1])
                current[t.name] = (tau, float(np.nan_to_num(acc[-1])), float(cov[-1]))
                line += f" {_pct(acc[-1])} |"
            else:
                line += " n/a |"
            line += f" {retention_text(label, kept, t)} |"
            rows.append(line)
        header = "| task | tau | coverage | accuracy (vs GT) | retention per class (top) |\n|---|---|---|---|---|\n"
        note = "Pseudo label = argmax softmax(G'); kept where confidence > tau (hatched grey: rejected). " + (
            "Ground truth: " + analysis.source + "."
            if analysis.ground_truth
            else "No ground truth for an upload."
        )
        return {
            "panels": panels,
            "markdown": f"**{pred.model}**. {note}\n\n" + header + "\n".join(rows),
            "curve": plots.accuracy_coverage_figure(curves, current),
        }

    # --- 3D view ------------------------------------------------------------------------------
    def point_cloud(self, analysis: Analysis, model: str | None, focal_px: float | None, colour_by: str,
                    folder: Path) -> tuple[Path, Path, str]:  # fmt: skip
        """GLB (for gr.Model3D) and PLY files of the predicted depth, back-projected with ``focal_px``."""
        pred = analysis.prediction(model)
        depth_task = next((t for t in pred.tasks if t.kind == "depth"), None)
        if depth_task is None:
            raise InputError(f"model {pred.model!r} predicts no depth")
        seg_task = next((t for t in pred.tasks if t.is_classification), None)
        width = pred.image.shape[1]
        focal = float(focal_px) if focal_px and focal_px > 0 else default_focal(width)
        labels = pred.pred(seg_task.name) if seg_task else None
        if colour_by == "class" and seg_task is not None:
            colours = vis.colorize_labels(labels, vis.task_palette(seg_task))
        else:
            colours = pred.image
        cloud = back_project(pred.pred(depth_task.name), colours, focal, labels)
        comment = (
            f"HiTTs Studio point cloud, model {pred.model}, focal {focal:.2f} px, OpenCV camera frame, metres"
        )
        glb = write_glb(cloud, folder / f"{pred.model}_points.glb")
        ply = write_ply(cloud, folder / f"{pred.model}_points.ply", comment)
        md = (f"{len(cloud):,} points from **{pred.model}** depth, focal length {focal:.1f} px "
              f"(NYU default for this width: {default_focal(width):.1f} px), coloured by {colour_by}. "
              "PLY: x right, y down, z forward (metres).")  # fmt: skip
        return glb, ply, md

    # --- predict API --------------------------------------------------------------------------
    def api_task_names(self) -> list[str]:
        """Union of the models' task names, in order: one output of the ``predict`` endpoint each."""
        names: dict[str, None] = {}
        for m in self.manifests.values():
            for t in m.task_names:
                names[t] = None
        return list(names)

    def predict_files(self, source: Any, model: str | None, folder: Path) -> tuple[list[Path | None], dict]:
        """Run one model; per task the main raw file (label palette PNG / depth mm PNG / normals PNG)
        and a JSON-able description of the encodings."""
        if not self.manifests:
            raise ExportError(self.status_markdown().replace("**", ""))
        name = model if model in self.manifests else self.primary
        loaded = load_image(source, self.limits)
        pred = self.predictor(name).predict(loaded.rgb)
        paths: list[Path | None] = []
        info: dict[str, Any] = {"model": name, "image_size": list(loaded.size), "latency_ms": round(pred.latency_ms, 1),
                                "notes": loaded.notes, "tasks": {}}  # fmt: skip
        for task_name in self.api_task_names():
            if task_name not in pred.manifest.task_names:
                paths.append(None)
                continue
            t = pred.manifest.task(task_name)
            files = task_files(pred, task_name)
            main = main_file_name(t)
            path = folder / main
            path.write_bytes(files[main])
            paths.append(path)
            _, _, coverage = pred.pseudo(task_name)
            entry: dict[str, Any] = {"file": main, "tau": t.tau, "coverage_at_tau": round(coverage, 4)}
            if t.is_classification:
                entry["encoding"] = "palette PNG, pixel value = class index"
                entry["class_names"] = list(t.class_names)
            elif t.kind == "depth":
                entry["encoding"] = "16-bit PNG, depth in millimetres, 0 = no value"
                entry["range_m"] = [round(float(v), 3) for v in vis.depth_range(pred.pred(task_name))]
            else:
                entry["encoding"] = "8-bit RGB PNG of (n + 1) / 2 * 255"
            info["tasks"][task_name] = entry
        return paths, info

    # --- Metrics view -------------------------------------------------------------------------
    def metrics_view(self, curve_key: str | None, table_key: str | None) -> dict[str, Any]:
        """Run comparisons, Delta_MTL, one paper table and learning curves (run records re-read each call)."""
        runs = load_runs(self.exports_dir / "runs")
        keys = log_keys(runs)
        key = curve_key if curve_key in keys else (keys[0] if keys else None)
        tables = self.paper_tables
        table_key = table_key if table_key in tables else next(iter(tables))
        src = tables[table_key]["source"]
        problems = [f"{r.name}: {p}" for r in runs for p in r.problems]
        md = (
            f"{len(runs)} run record(s) in `exports/runs/`. "
            if runs
            else "No run records in `exports/runs/` yet. "
        )
        md += f"Paper table: *{src['paper']}* ({src['authors']}), Table {src['table']}: {src['caption']}."
        if problems:
            md += "\n\nSkipped while reading: " + "; ".join(problems)
        return {
            "runs": plots.runs_figure(runs, tables),
            "delta": plots.delta_figure(runs, tables),
            "paper": plots.paper_table_figure(tables[table_key]),
            "curves": plots.learning_curves_figure(runs, key),
            "keys": keys,
            "key": key,
            "markdown": md,
        }

    def log_keys(self) -> list[str]:
        """Numeric keys of the run logs now (the learning-curve picker's first choices)."""
        return log_keys(load_runs(self.exports_dir / "runs"))

    def table_choices(self) -> list[tuple[str, str]]:
        """(label, key) of each paper table for a dropdown."""
        return [
            (f"Table {t['source']['table']}: {t['source']['caption']}", k)
            for k, t in self.paper_tables.items()
        ]


def main_file_name(task: TaskInfo) -> str:
    """The raw file the ``predict`` endpoint returns for a task (names as in the download zip)."""
    if task.is_classification:
        return f"{task.name}_pred.png"
    return f"{task.name}_mm.png" if task.kind == "depth" else f"{task.name}_rgb.png"


def token_labels(task: TaskInfo) -> list[str]:
    """Human names of a task's C_p outputs (classes, depth bins in metres, normal centres)."""
    if task.is_classification:
        return list(task.class_names)
    if task.kind == "depth" and task.bin_centres:
        return [f"bin {i}: {c:.2f} m" for i, c in enumerate(task.bin_centres)]
    if task.normal_centres:
        return [
            f"centre {i}: ({x:+.2f}, {y:+.2f}, {z:+.2f})" for i, (x, y, z) in enumerate(task.normal_centres)
        ]
    return [f"{task.name} {i}" for i in range(task.num_outputs)]


def retention_text(label: np.ndarray, kept: np.ndarray, task: TaskInfo) -> str:
    """Share of each predicted class's pixels that survive the threshold (largest classes first)."""
    counts = np.bincount(label.ravel(), minlength=task.num_outputs)
    kept_counts = np.bincount(label[kept].ravel(), minlength=task.num_outputs)
    names = token_labels(task)
    order = [int(i) for i in np.argsort(-counts) if counts[i] > 0][:MAX_RETENTION_ROWS]
    return ", ".join(f"{names[i].split(':')[0]} {100 * kept_counts[i] / counts[i]:.0f}%" for i in order)


def _pct(value: float) -> str:
    return "n/a (nothing kept)" if not np.isfinite(value) else f"{100 * value:.1f}%"


def _fit_ground_truth(gt: dict[str, np.ndarray], size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Resize ground truth to the analysed image's size (nearest) when the image was downscaled."""
    out = {}
    for key, value in gt.items():
        if value.shape[1::-1] == size:
            out[key] = value
        elif value.ndim == 2 and value.dtype.kind in "iu":
            out[key] = pp.resize_nearest(value, size)
        elif value.ndim == 2:
            out[key] = _nearest_float(value, size)
        else:
            out[key] = np.stack([_nearest_float(value[..., c], size) for c in range(value.shape[2])], -1)
    return out


def _nearest_float(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = values.shape
    ys = np.minimum((np.arange(size[1]) + 0.5) * h / size[1], h - 1).astype(int)
    xs = np.minimum((np.arange(size[0]) + 0.5) * w / size[0], w - 1).astype(int)
    return values[np.ix_(ys, xs)]
