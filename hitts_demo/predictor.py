"""ONNX Runtime predictor: one session per export, built once; one ``run`` computes every output.

``Predictor(export_dir).predict(rgb)`` resizes the image to the model input (bilinear, antialiased
when shrinking), normalises it with the manifest's mean/std, runs the session once and returns a
``Prediction``: the raw outputs at model resolution plus accessors that resize each map to the
image's size on first use (and cache it), so a view that shows one map never pays for the others.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from hitts_demo import postprocess as pp
from hitts_demo.manifest import (
    AFFINITY_OUTPUT,
    DEFAULT_VARIANT,
    ExportError,
    Manifest,
    TaskInfo,
    check_onnx,
    check_session,
    load_manifest,
    shape_matches,
)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
ORT_LOG_ERRORS_ONLY = 3
NVIDIA_DEVICE = Path("/dev/nvidiactl")
CACHE_BYTES = 64 * 1024 * 1024
"""Resized maps kept per prediction (a session keeps its last analysis in gr.State)."""


def default_providers() -> list[str]:
    """CUDA then CPU when the CUDA provider is built in and an NVIDIA device is present, else CPU."""
    if CUDA in ort.get_available_providers() and NVIDIA_DEVICE.exists():
        return [CUDA, CPU]
    return [CPU]


def cpu_cores() -> int:
    """Cores this process may use (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_intra_op_threads() -> int:
    """``HITTS_ORT_THREADS`` if set, else 1: the shipped 96x128 model ran in 11.9 ms with one thread and
    15.7 ms with two on the 2-core machine, a 288x384 HiTTs export in 353 ms with one and 342 ms with
    two (175 / 181 ms CPU; benchmarks/bench_inference.py, on a loaded machine), and the app's queue
    runs two requests at once, each calling two models."""
    value = os.environ.get("HITTS_ORT_THREADS", "")
    return min(int(value), cpu_cores()) if value.isdigit() and int(value) > 0 else 1


def session_options(intra_op_threads: int | None = None) -> ort.SessionOptions:
    """Graph optimisation level ALL (at load: the NCHWc layout it picks depends on the CPU, so no
    pre-optimised model is shipped), sequential execution, intra-op threads (see
    ``default_intra_op_threads``). With more than one thread the pool's threads sleep between
    operators instead of spinning: on a 2-core machine shared with the app's other requests and
    models, spinning threads take the cores the running ones need."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = intra_op_threads or default_intra_op_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = ORT_LOG_ERRORS_ONLY
    if opts.intra_op_num_threads > 1:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


@dataclass
class Prediction:
    """Every output of one image through one model.

    ``image``: the upright RGB uint8 (H, W, 3) the model saw (before resizing to its input).
    ``outputs``: ONNX output name -> array with the leading batch dimension removed.
    Accessors return maps at the image's size (``size`` = (W, H)).
    """

    manifest: Manifest
    image: np.ndarray
    outputs: dict[str, np.ndarray]
    latency_ms: float
    variant: str = DEFAULT_VARIANT
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)

    @property
    def model(self) -> str:
        return self.manifest.name

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]

    @property
    def tasks(self) -> tuple[TaskInfo, ...]:
        return self.manifest.tasks

    def _cached(self, key: tuple, make):
        """Maps resized to the image, least recently used first out beyond ``CACHE_BYTES``."""
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = make()
        self._cache[key] = value
        while len(self._cache) > 1 and sum(v.nbytes for v in self._cache.values()) > CACHE_BYTES:
            self._cache.popitem(last=False)
        return value

    def pred(self, task: str) -> np.ndarray:
        """Classification: (H, W) int64 classes; depth: (H, W) float32 metres; normals: (H, W, 3)."""
        kind = self.manifest.task(task).kind
        raw = self.outputs[f"{task}_pred"]
        if kind == "depth":
            return self._cached(("pred", task), lambda: pp.resize_bilinear(raw[0], self.size))
        if kind == "normals":
            return self._cached(("pred", task), lambda: pp.resize_normals(raw, self.size))
        return self._cached(("pred", task), lambda: pp.resize_nearest(raw, self.size))

    def confidence(self, task: str) -> np.ndarray:
        """(H, W) float32 max softmax of the task logits G'."""
        return self._cached(
            ("conf", task), lambda: pp.resize_bilinear(self.outputs[f"{task}_confidence"], self.size)
        )

    def label(self, task: str) -> np.ndarray:
        """(H, W) int64 argmax of G' (the pseudo label before thresholding)."""
        return self._cached(
            ("label", task), lambda: pp.resize_nearest(self.outputs[f"{task}_label"], self.size)
        )

    def pseudo(self, task: str, tau: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        """(label, kept mask ``confidence > tau``, coverage); tau defaults to the manifest's."""
        tau = self.manifest.task(task).tau if tau is None else tau
        mask, coverage = pp.pseudo_label(self.label(task), self.confidence(task), tau)
        return self.label(task), mask, coverage

    @property
    def has_tokens(self) -> bool:
        return self.manifest.has_tokens

    def global_score(self, task: str) -> np.ndarray | None:
        """(H, W) M_f = sigmoid(<F'_i, theta'_i>), or None for a model without tokens."""
        key = f"{task}_global_score"
        if key not in self.outputs:
            return None
        return self._cached(("global", task), lambda: pp.resize_bilinear(self.outputs[key], self.size))

    def fine_score(self, task: str, index: int | None = None) -> np.ndarray | None:
        """(H, W) fine-token score of class ``index``; with ``index`` None, the max over classes."""
        key = f"{task}_fine_scores"
        if key not in self.outputs:
            return None
        scores = self.outputs[key]  # (C_p, h, w)
        if index is None:
            return self._cached(
                ("fine", task, None), lambda: pp.resize_bilinear(scores.max(axis=0), self.size)
            )
        return self._cached(("fine", task, index), lambda: pp.resize_bilinear(scores[index], self.size))

    def fine_tokens(self, task: str) -> np.ndarray | None:
        """(C_p, D) fine-grained task tokens phi_i of this image, or None."""
        return self.outputs.get(f"{task}_fine_tokens")

    @property
    def affinity(self) -> np.ndarray | None:
        """(T, T) task affinity A (rows sum to 1), or None."""
        return self.outputs.get(AFFINITY_OUTPUT)


class Predictor:
    """One validated export and its onnxruntime session (created once, thread-safe to ``run``)."""

    def __init__(
        self,
        export_dir: str | Path,
        providers: list[str] | None = None,
        intra_op_threads: int | None = None,
        variant: str | None = None,
    ) -> None:
        self.manifest = load_manifest(export_dir)
        self.variant = variant or DEFAULT_VARIANT
        self.onnx_path = self.manifest.variant_path(self.variant)
        opset, self.checker_note = check_onnx(self.onnx_path)
        if opset != self.manifest.opset:
            raise ExportError(
                f"export {self.manifest.export_dir}: the manifest says opset {self.manifest.opset}, "
                f"{self.onnx_path.name} declares opset {opset}"
            )
        self.session = self._create_session(providers or default_providers(), intra_op_threads, opset)
        check_session(self.manifest, self.session)
        self.providers = self.session.get_providers()
        self._output_names = [o.name for o in self.session.get_outputs()]
        self._dry_run()

    def _create_session(self, providers: list[str], threads: int | None, opset: int) -> ort.InferenceSession:
        try:
            return ort.InferenceSession(
                str(self.onnx_path), sess_options=session_options(threads), providers=providers
            )
        except Exception as err:  # noqa: BLE001 - onnxruntime raises several unrelated types here
            text = str(err)
            if "opset" in text.lower():
                raise ExportError(
                    f"export {self.manifest.export_dir}: {self.onnx_path.name} uses ONNX opset {opset}, "
                    f"newer than this onnxruntime {ort.__version__} supports; re-export with a lower opset "
                    f"(the trainer uses 18) or upgrade onnxruntime"
                ) from err
            raise ExportError(
                f"export {self.manifest.export_dir}: onnxruntime cannot load {self.onnx_path.name}: "
                f"{text.splitlines()[0][:400]}"
            ) from err

    def _dry_run(self) -> None:
        """Run one blank input so a malformed graph fails at load, and check the output shapes."""
        inp = self.manifest.input
        blank = np.zeros((1, 3, inp.height, inp.width), np.float32)
        try:
            values = self.session.run(self._output_names, {inp.name: blank})
        except Exception as err:  # noqa: BLE001
            raise ExportError(
                f"export {self.manifest.export_dir}: a test run failed: {str(err)[:400]}"
            ) from err
        wrong = [
            f"{n}: {list(v.shape)} (manifest {list(self.manifest.outputs[n])})"
            for n, v in zip(self._output_names, values)
            if not shape_matches(tuple(v.shape), self.manifest.outputs[n])
        ]
        if wrong:
            raise ExportError(f"export {self.manifest.export_dir}: outputs differ from the manifest: {wrong}")

    def to_input(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (1, 3, h, w) float32 normalised model input."""
        inp = self.manifest.input
        im = Image.fromarray(rgb)
        if im.size != (inp.width, inp.height):
            im = im.resize((inp.width, inp.height), Image.Resampling.BILINEAR)
        x = np.asarray(im, np.float32) / 255.0
        x = (x - np.asarray(inp.mean, np.float32)) / np.asarray(inp.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def predict(self, rgb: np.ndarray) -> Prediction:
        """Run the model once on an upright RGB uint8 (H, W, 3) image."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
        x = self.to_input(rgb)
        start = time.perf_counter()
        values = self.session.run(self._output_names, {self.manifest.input.name: x})
        latency_ms = (time.perf_counter() - start) * 1000.0
        outputs = {}
        for name, value in zip(self._output_names, values):
            # drop the batch dimension of batched outputs; fine tokens and affinity have none
            outputs[name] = (
                value[0] if len(self.manifest.outputs[name]) >= 3 and value.shape[0] == 1 else value
            )
        return Prediction(self.manifest, rgb, outputs, latency_ms, self.variant)
