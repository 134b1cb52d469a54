"""Raw outputs for download, and the per-session temporary folders they are written to.

``write_raw_zip`` packs, per model, every task's prediction in a documented encoding (see
``README_TEXT``, which goes into the zip). ``SessionFiles`` gives each browser session its own
folder under one private temporary root (the folder name is a hash of the session id: user text
never reaches a path), removes folders idle for longer than ``ttl_s`` on a timer, and removes the
whole root at exit.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import json
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from hitts_demo import postprocess as pp
from hitts_demo.predictor import Prediction
from hitts_demo.visualize import task_palette

DEFAULT_TTL_S = 15 * 60
SWEEP_EVERY_S = 60
KEEP_PER_SESSION = 6
"""Request folders kept per session (older ones go first; concurrent views need a few)."""
PALETTE_MAX_CLASSES = 256
PNG_LEVEL = 1
ZIP_LEVEL = 6
ARRAY_ZIP_LEVEL = 1

README_TEXT = """HiTTs Studio raw outputs
========================

One folder per model (e.g. hitts/, mtl/). Every map has the size of input.png (the upright
image the model saw; uploads larger than the app's limit were downscaled first).

<task>_pred.png       classification tasks: palette PNG, pixel value = class index
                      (class names and colours in <task>_classes.json)
<task>_mm.png         depth: 16-bit greyscale PNG, pixel value = depth in MILLIMETRES
                      (uint16, rounded; 0 = no value; capped at 65535 mm). metres = value / 1000
<task>_m.npy          depth: float32 (H, W) in metres
<task>.npy            normals: float32 (H, W, 3) unit vectors, camera frame of the model
<task>_rgb.png        normals: 8-bit RGB = (n + 1) / 2 * 255
<task>_label.png      argmax of the task logits G' (class / depth bin / normal centre index):
                      the pseudo label before thresholding; palette PNG (16-bit grey if > 256)
<task>_confidence.npy float32 (H, W) max softmax probability; pseudo label kept where > tau
<task>_bins.json      depth bin centres (m) or normal centres for the indices in <task>_label.png
outputs.npz           all of the above as arrays, plus the token outputs at model resolution:
                      <task>_global_score (h, w), <task>_fine_scores (C_p, h, w),
                      <task>_fine_tokens (C_p, D), affinity (T, T)
manifest.json         the export's manifest (tasks, classes, tau, input size, normalisation)
class_geometry.csv    per predicted class: share of the image, frontal area (m^2), depth
                      percentiles (m), dominant normal (single-image zip, one per model)
summary.csv           batch zip only: one row per image (size, latency, per-task summary)

Read in Python:
  import numpy as np; from PIL import Image
  depth_m = np.asarray(Image.open("hitts/depth_mm.png"), dtype=np.float32) / 1000.0
  classes = np.asarray(Image.open("hitts/semseg_pred.png"))  # class indices
"""


def _png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False, compress_level=PNG_LEVEL)
    return buf.getvalue()


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def index_png(index: np.ndarray, palette: np.ndarray) -> Image.Image:
    """Class indices -> palette PNG image (uint8 indices) or 16-bit grey when there are > 256 classes."""
    if len(palette) > PALETTE_MAX_CLASSES or int(index.max(initial=0)) >= PALETTE_MAX_CLASSES:
        return Image.fromarray(np.clip(index, 0, 65535).astype(np.uint16))
    im = Image.fromarray(np.clip(index, 0, 255).astype(np.uint8))
    flat = np.zeros((PALETTE_MAX_CLASSES, 3), np.uint8)
    flat[: len(palette)] = palette
    im.putpalette(flat.ravel().tolist())
    return im


def task_files(pred: Prediction, task: str) -> dict[str, bytes]:
    """File name -> bytes of one task's raw outputs (see ``README_TEXT``)."""
    info = pred.manifest.task(task)
    palette = task_palette(info)
    files: dict[str, bytes] = {}
    value = pred.pred(task)
    if info.is_classification:
        files[f"{task}_pred.png"] = _png_bytes(index_png(value, palette))
        classes = {"class_names": list(info.class_names), "palette": palette.tolist(), "ignore": None}
        files[f"{task}_classes.json"] = json.dumps(classes, indent=1).encode()
    elif info.kind == "depth":
        files[f"{task}_mm.png"] = _png_bytes(Image.fromarray(pp.depth_to_png16(value)))
        files[f"{task}_m.npy"] = _npy_bytes(value.astype(np.float32))
        files[f"{task}_bins.json"] = json.dumps({"bin_centres_m": list(info.bin_centres)}, indent=1).encode()
    else:
        files[f"{task}.npy"] = _npy_bytes(value.astype(np.float32))
        files[f"{task}_rgb.png"] = _png_bytes(Image.fromarray(pp.normals_to_png(value)))
        files[f"{task}_bins.json"] = json.dumps(
            {"normal_centres": [list(c) for c in info.normal_centres]}
        ).encode()
    files[f"{task}_label.png"] = _png_bytes(index_png(pred.label(task), palette))
    files[f"{task}_confidence.npy"] = _npy_bytes(pred.confidence(task).astype(np.float32))
    return files


def compact_index(index: np.ndarray) -> np.ndarray:
    """Class indices in the smallest unsigned type that holds them (uint8 for up to 256 classes)."""
    top = int(index.max(initial=0))
    return index.astype(np.uint8 if top < 256 else np.uint16 if top < 65536 else np.int64)


def prediction_arrays(pred: Prediction) -> dict[str, np.ndarray]:
    """Every output as a named array (maps at image size; token outputs at model resolution)."""
    arrays: dict[str, np.ndarray] = {"input": pred.image}
    for t in pred.tasks:
        value = pred.pred(t.name)
        arrays[f"{t.name}_pred"] = compact_index(value) if t.is_classification else value
        arrays[f"{t.name}_confidence"] = pred.confidence(t.name)
        arrays[f"{t.name}_label"] = compact_index(pred.label(t.name))
        for suffix in ("global_score", "fine_scores", "fine_tokens"):
            key = f"{t.name}_{suffix}"
            if key in pred.outputs:
                arrays[key] = pred.outputs[key]
    if pred.affinity is not None:
        arrays["affinity"] = pred.affinity
    return arrays


def _write(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    """PNGs are already compressed: store them; deflate the rest (fast level for the large arrays)."""
    if name.endswith(".png"):
        zf.writestr(name, data, compress_type=zipfile.ZIP_STORED)
    else:
        level = ARRAY_ZIP_LEVEL if name.endswith((".npy", ".npz")) else ZIP_LEVEL
        zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=level)


def add_prediction(zf: zipfile.ZipFile, prefix: str, pred: Prediction) -> None:
    """Every raw output of one prediction under ``prefix`` (e.g. ``hitts/``; see ``README_TEXT``)."""
    for t in pred.tasks:
        for name, data in task_files(pred, t.name).items():
            _write(zf, f"{prefix}{name}", data)
    buf = io.BytesIO()
    np.savez(buf, **prediction_arrays(pred))
    _write(zf, f"{prefix}outputs.npz", buf.getvalue())
    _write(zf, f"{prefix}manifest.json", (pred.manifest.export_dir / "manifest.json").read_bytes())


def add_input(zf: zipfile.ZipFile, name: str, image: np.ndarray) -> None:
    _write(zf, name, _png_bytes(Image.fromarray(image)))


def write_raw_zip(
    predictions: dict[str, Prediction], path: str | Path, extra: dict[str, bytes] | None = None
) -> Path:
    """One zip with ``README.txt``, ``input.png``, a folder of raw outputs per model and ``extra``
    files (name -> bytes, e.g. the per-class geometry CSV)."""
    path = Path(path)
    first = next(iter(predictions.values()))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL) as zf:
        _write(zf, "README.txt", README_TEXT.encode())
        add_input(zf, "input.png", first.image)
        for model, pred in predictions.items():
            add_prediction(zf, f"{model}/", pred)
        for name, data in (extra or {}).items():
            _write(zf, name, data)
    return path


class SessionFiles:
    """Per-session temporary folders under one private root, swept on a timer."""

    def __init__(
        self,
        root: str | Path | None = None,
        ttl_s: float = DEFAULT_TTL_S,
        sweep_every_s: float = SWEEP_EVERY_S,
    ) -> None:
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="hitts_studio_"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.ttl_s = ttl_s
        self.sweep_every_s = sweep_every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        atexit.register(self.close)

    @staticmethod
    def _key(session_id: str | None) -> str:
        return hashlib.sha256((session_id or "anonymous").encode("utf-8", "replace")).hexdigest()[:24]

    def session_dir(self, session_id: str | None) -> Path:
        return self.root / self._key(session_id)

    def new_dir(self, session_id: str | None) -> Path:
        """A fresh folder for one request of this session (older request folders beyond a few are removed)."""
        base = self.session_dir(session_id)
        with self._lock:
            base.mkdir(parents=True, exist_ok=True)
            base.touch()
            olds = sorted((p for p in base.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
            for old in olds[: max(0, len(olds) - KEEP_PER_SESSION + 1)]:
                shutil.rmtree(old, ignore_errors=True)
            out = base / uuid.uuid4().hex[:12]
            out.mkdir()
        return out

    def drop(self, session_id: str | None) -> None:
        """Remove a session's folder (e.g. when its browser tab closes)."""
        shutil.rmtree(self.session_dir(session_id), ignore_errors=True)

    def sweep(self, now: float | None = None) -> int:
        """Remove session folders idle for longer than ``ttl_s``; returns how many were removed."""
        now = time.time() if now is None else now
        removed = 0
        with self._lock:
            for folder in list(self.root.iterdir()) if self.root.exists() else []:
                try:
                    newest = max([folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.iterdir()])
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if now - newest > self.ttl_s:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed += 1
        return removed

    def start(self) -> SessionFiles:
        """Start the background sweeper (a daemon thread)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="hitts-session-sweeper", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.sweep_every_s):
            self.sweep()

    def close(self) -> None:
        """Stop the sweeper and remove the root folder."""
        self._stop.set()
        shutil.rmtree(self.root, ignore_errors=True)
