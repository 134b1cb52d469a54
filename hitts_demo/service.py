"""The models, the gallery and ``analyze``: what every dashboard view starts from.

No Gradio here (``hitts_demo.ui`` and ``app.py`` are the UI) and no view: each tab's view is a
function of ``hitts_demo.views``. A ``Studio`` finds the exports (``<exports>/<name>/manifest.json``),
reads their manifests at construction (cheap) and builds each ONNX Runtime session once per
precision (fp32, and fp16 where exported), on first use or in ``warm()``. ``analyze`` runs every model
once on an image and returns an ``Analysis`` (kept by the UI in ``gr.State``); every view is then
rendered from it without running a model again.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hitts_demo import postprocess as pp
from hitts_demo import provenance
from hitts_demo.gallery import GalleryItem, list_gallery, load_ground_truth
from hitts_demo.manifest import DEFAULT_VARIANT, ExportError, Manifest, load_manifest
from hitts_demo.predictor import Prediction, Predictor
from hitts_demo.preprocess import DEFAULT_LIMITS, ImageLimits, InputError, LoadedImage, load_image
from hitts_demo.records import load_paper_tables
from hitts_schema import MANIFEST_FILE

PREFERRED_ORDER = ("hitts", "mtl", "stl")
RESERVED_FOLDERS = frozenset({"gallery", "runs"})
TOKEN_HISTORY = 12
"""Images whose fine tokens are kept per session for the PCA plot."""


@dataclass
class Analysis:
    """Every model's prediction for one image, its ground truth (gallery items) and session memory.

    ``focal_px``: the focal length from the upload's EXIF (pixels of ``image``), None without one."""

    predictions: dict[str, Prediction]
    ground_truth: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = "upload"
    notes: list[str] = field(default_factory=list)
    token_history: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)
    focal_px: float | None = None
    variant: str = DEFAULT_VARIANT

    @property
    def image(self) -> np.ndarray:
        return next(iter(self.predictions.values())).image

    def prediction(self, model: str | None) -> Prediction:
        if model in self.predictions:
            return self.predictions[model]
        return next(iter(self.predictions.values()))


class Studio:
    """The exports, gallery and paper tables behind the dashboard."""

    def __init__(
        self,
        exports_dir: str | Path,
        nyuv2_dir: Path | None = None,
        limits: ImageLimits = DEFAULT_LIMITS,
        providers: list[str] | None = None,
    ) -> None:
        self.exports_dir = Path(exports_dir).resolve()
        self.limits = limits
        self.providers = providers
        self.manifests: dict[str, Manifest] = {}
        self.export_errors: dict[str, str] = {}
        self._predictors: dict[tuple[str, str], Predictor] = {}
        self._lock = threading.Lock()
        self._discover()
        self.gallery: list[GalleryItem] = list_gallery(self.exports_dir / "gallery", nyuv2_dir)
        self.paper_tables = load_paper_tables()

    @property
    def runs_dir(self) -> Path:
        return self.exports_dir / "runs"

    # --- models -------------------------------------------------------------------------------
    def _discover(self) -> None:
        folders = [self.exports_dir] if (self.exports_dir / MANIFEST_FILE).is_file() else []
        if self.exports_dir.is_dir() and not folders:
            folders = [
                p for p in sorted(self.exports_dir.iterdir()) if p.is_dir() and p.name not in RESERVED_FOLDERS
            ]
        found: dict[str, Manifest] = {}
        for folder in folders:
            if not (folder / MANIFEST_FILE).is_file():
                continue
            try:
                manifest = load_manifest(folder)
            except ExportError as err:
                self.export_errors[folder.name] = str(err)
                continue
            found[manifest.name if manifest.name not in found else folder.name] = manifest
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

    @property
    def variants(self) -> list[str]:
        """Precisions offered by the picker: fp32, plus each variant some model has exported (a model
        without the chosen variant runs in fp32, and the summary says so)."""
        names = {v for m in self.manifests.values() for v in m.variant_names}
        return [DEFAULT_VARIANT, *sorted(names - {DEFAULT_VARIANT})]

    def variant_of(self, name: str, variant: str | None) -> str:
        """``variant`` where model ``name`` has it, else fp32."""
        return variant if variant in self.manifests[name].variant_names else DEFAULT_VARIANT

    def predictor(self, name: str, variant: str | None = None) -> Predictor:
        """The model's predictor at a precision, built (session created and validated) on first use."""
        key = (name, variant or DEFAULT_VARIANT)
        with self._lock:
            if key not in self._predictors:
                if name not in self.manifests:
                    raise ExportError(f"no model named {name!r}; available: {self.model_names}")
                self._predictors[key] = Predictor(
                    self.manifests[name].export_dir, providers=self.providers, variant=key[1]
                )
            return self._predictors[key]

    def warm(self) -> dict[str, float]:
        """Build every fp32 predictor now; a model that fails moves to ``export_errors``. Seconds per model."""
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
        return timings

    def status_markdown(self) -> str:
        """Which models are served, what each was trained on and how well it does (one line each,
        ``hitts_demo.provenance``), and what failed to load."""
        lines = []
        if not self.manifests:
            lines.append(
                f"**No model export found in `{self.exports_dir}`.** Put the trainer's exports in "
                "`exports/hitts/` and `exports/mtl/` (`model.onnx` + `manifest.json`)."
            )
        for name, m in self.manifests.items():
            tokens = "with tokens" if m.has_tokens else "no tokens"
            lines.append(
                f"**{name}**: {m.arch}, {m.backbone}, input {m.input.width}x{m.input.height}, "
                f"tasks {', '.join(m.task_names)}, {tokens}, {'/'.join(m.variant_names)}"
            )
            lines.append("↳ " + provenance.model_line(m, provenance.current_digest(m), with_name=False))
        for (name, variant), pred in self._predictors.items():
            if pred.checker_note:
                lines.append(
                    f"{name} {variant}: onnx.checker objects ({pred.checker_note}); onnxruntime runs it"
                )
        for name, err in self.export_errors.items():
            lines.append(f"**{name} not loaded**: {' '.join(s.strip() for s in err.splitlines())}")
        return "  \n".join(lines)

    def require_models(self) -> None:
        if not self.manifests:
            raise ExportError(self.status_markdown().replace("**", ""))

    # --- gallery ------------------------------------------------------------------------------
    def gallery_item(self, name: str) -> GalleryItem:
        for item in self.gallery:
            if item.name == name:
                return item
        raise InputError(f"unknown gallery item {name!r}")

    # --- analysis -----------------------------------------------------------------------------
    def load(self, source: Any) -> LoadedImage:
        """Decode an upload with this studio's limits (``InputError`` with a message for the user)."""
        return load_image(source, self.limits)

    def analyze(
        self,
        source: Any,
        gallery_name: str | None = None,
        previous: Analysis | None = None,
        variant: str | None = None,
    ) -> Analysis:
        """Decode the upload (or the gallery item) and run every model once on it."""
        self.require_models()
        item = self.gallery_item(gallery_name) if gallery_name else None
        if source is None and item is None:
            raise InputError("upload an image (or pick a gallery item) first")
        variant = variant if variant in self.variants else DEFAULT_VARIANT
        loaded = self.load(source if source is not None else item.rgb)
        predictors = {n: self.predictor(n, self.variant_of(n, variant)) for n in self.manifests}
        # the models run side by side, one ONNX Runtime thread each (it releases the GIL): on 2 cores,
        # HiTTs + MTL at 288x384 take the longer one's time (about 160 ms) instead of the sum (315 ms)
        with ThreadPoolExecutor(max_workers=len(predictors)) as pool:
            running = {n: pool.submit(p.predict, loaded.rgb) for n, p in predictors.items()}
            predictions = {n: job.result() for n, job in running.items()}
        ground_truth = _fit_ground_truth(load_ground_truth(item), loaded.size) if item is not None else {}
        history = {k: list(v) for k, v in (previous.token_history if previous else {}).items()}
        for name, pred in predictions.items():
            tokens = {
                t.name: pred.fine_tokens(t.name) for t in pred.tasks if pred.fine_tokens(t.name) is not None
            }
            if tokens:
                history[name] = (history.get(name, []) + [tokens])[-TOKEN_HISTORY:]
        return Analysis(
            predictions,
            ground_truth,
            item.label if item else "upload",
            loaded.notes,
            history,
            loaded.focal_px,
            variant,
        )

    def api_task_names(self) -> list[str]:
        """Union of the models' task names, in order: one output of the ``predict`` endpoint each."""
        names: dict[str, None] = {}
        for m in self.manifests.values():
            for t in m.task_names:
                names[t] = None
        return list(names)


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
