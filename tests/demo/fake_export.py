"""A tiny stand-in for the trainer's ONNX export, built with ``onnx.helper`` (no torch).

``make_fake_export(out_dir)`` writes a small ONNX graph whose outputs have the names, shapes and
dtypes of ``docs/architecture.md`` ("Export (ONNX) outputs") and a matching ``manifest.json``. The
weights are seeded random numbers applied to the pixel colours and coordinates, so the maps have
structure to look at; nothing here is trained. With ``fp16=True`` it also writes ``model_fp16.onnx``
(the same graph with every weight rounded to float16, float32 inputs and outputs, as the trainer's
``keep_io_types`` conversion) and lists it under the manifest's ``quantized``.

Also writes the other files the dashboard reads: a synthetic gallery item
(``make_fake_gallery_item``) and run records with a ``_meta`` block (``make_fake_runs``).

The graph, per task t with C_p outputs (x5 = RGB + y + x coordinates, (1, 5, H, W)):
  feat = tanh(conv1x1(avgpool8(x5)))                       (1, D, h, w)
  gate = sigmoid(<feat, theta_t>)                          (1, 1, h, w) -> t_global_score (1, h, w)
  t_fine_scores = softplus(phi_t . (feat * gate))          (1, C_p, h, w); t_fine_tokens = phi_t (C_p, D)
  prob = softmax(GAIN * conv3x3(x5), axis=1)               (1, C_p, H, W)
  t_confidence = max(prob), t_label = argmax(prob)          (1, H, W)
  t_pred = label | sum_k prob_k centre_k (depth) | normalised sum_k prob_k centre_k (normals)
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from hitts_schema.tasks import NYUD_CLASSES  # one list for the trainer and the dashboard

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
OPSET = 18
NYUD_PALETTE = (
    (0, 0, 255),
    (232, 88, 47),
    (0, 217, 0),
    (148, 0, 240),
    (222, 241, 23),
    (255, 205, 205),
    (0, 223, 228),
    (106, 135, 204),
    (116, 28, 41),
    (240, 35, 235),
    (0, 166, 156),
    (249, 139, 0),
    (225, 228, 194),
)
DEPTH_BINS = 30
DEPTH_RANGE_M = (0.5, 10.0)
NORMAL_CENTRES = 20
FEATURE_STRIDE = 8
TOKEN_DIM = 16
LOGIT_GAIN = 4.0
"""Scale of the fake logits: large enough for confidences to spread over (0, 1)."""


def nyud_task_entries(seed: int = 0) -> list[dict]:
    """Manifest ``tasks`` entries for the NYUD-v2 tasks (semseg 13, depth 30 log bins, normals 20)."""
    rng = np.random.default_rng(seed)
    lo, hi = DEPTH_RANGE_M
    bins = np.exp(np.linspace(math.log(lo), math.log(hi), DEPTH_BINS))
    centres = rng.normal(size=(NORMAL_CENTRES, 3))
    centres[:, 2] = -np.abs(centres[:, 2])  # facing the camera (camera looks along +z)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return [
        {
            "name": "semseg",
            "kind": "segmentation",
            "num_outputs": len(NYUD_CLASSES),
            "class_names": list(NYUD_CLASSES),
            "palette": [list(c) for c in NYUD_PALETTE],
            "tau": 0.9,
        },
        {
            "name": "depth",
            "kind": "depth",
            "num_outputs": DEPTH_BINS,
            "bin_centres": [round(float(b), 6) for b in bins],
            "tau": 0.45,
        },
        {
            "name": "normals",
            "kind": "normals",
            "num_outputs": NORMAL_CENTRES,
            "normal_centres": [[round(float(v), 6) for v in c] for c in centres],
            "tau": 0.6,
        },
    ]


class _Graph:
    """Collects nodes and initializers; ``const`` and ``op`` return the new value's name."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def const(self, array: np.ndarray, name: str | None = None) -> str:
        name = name or f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, *shape: int, scale: float = 0.5) -> str:
        return self.const((self.rng.normal(size=shape) * scale).astype(np.float32))

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        self.count += 1
        out = out or f"v{self.count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out


def _task_nodes(g: _Graph, t: dict, x5: str, feat: str, has_tokens: bool) -> dict[str, tuple[int, ...]]:
    """The outputs of one task; returns {output name: shape without the batch}."""
    name, c = t["name"], t["num_outputs"]
    logits = g.op("Conv", x5, g.weight(c, 5, 3, 3, scale=0.5 * LOGIT_GAIN), pads=[1, 1, 1, 1])
    prob = g.op("Softmax", logits, axis=1)
    axis1 = g.const(np.array([1], np.int64))
    g.op("ReduceMax", prob, axis1, keepdims=0, out=f"{name}_confidence")
    label = g.op("ArgMax", prob, axis=1, keepdims=0, out=f"{name}_label")
    if t["kind"] == "depth":
        centres = np.asarray(t["bin_centres"], np.float32).reshape(1, c, 1, 1)
        g.op("Conv", prob, g.const(centres), out=f"{name}_pred")
    elif t["kind"] == "normals":
        centres = np.asarray(t["normal_centres"], np.float32).T.reshape(3, c, 1, 1)
        vec = g.op("Conv", prob, g.const(centres))
        norm = g.op("Sqrt", g.op("ReduceSum", g.op("Mul", vec, vec), axis1, keepdims=1))
        g.op("Div", vec, g.op("Max", norm, g.const(np.array(1e-6, np.float32))), out=f"{name}_pred")
    else:
        g.op("Identity", label, out=f"{name}_pred")
    if has_tokens:
        gate = g.op("Sigmoid", g.op("Conv", feat, g.weight(1, TOKEN_DIM, 1, 1)))
        g.op("Squeeze", gate, axis1, out=f"{name}_global_score")
        tokens = (g.rng.normal(size=(c, TOKEN_DIM)) * 0.5).astype(np.float32)
        g.op("Identity", g.const(tokens), out=f"{name}_fine_tokens")
        kernel = g.const(tokens.reshape(c, TOKEN_DIM, 1, 1))
        g.op("Softplus", g.op("Conv", g.op("Mul", feat, gate), kernel), out=f"{name}_fine_scores")


def _output_shapes(tasks: list[dict], height: int, width: int, has_tokens: bool) -> dict[str, list[int]]:
    h, w = height // FEATURE_STRIDE, width // FEATURE_STRIDE
    shapes: dict[str, list[int]] = {}
    for t in tasks:
        pred = {"depth": [1, 1, height, width], "normals": [1, 3, height, width]}.get(
            t["kind"], [1, height, width]
        )
        shapes[f"{t['name']}_pred"] = pred
        shapes[f"{t['name']}_confidence"] = [1, height, width]
        shapes[f"{t['name']}_label"] = [1, height, width]
        if has_tokens:
            shapes[f"{t['name']}_global_score"] = [1, h, w]
            shapes[f"{t['name']}_fine_scores"] = [1, t["num_outputs"], h, w]
            shapes[f"{t['name']}_fine_tokens"] = [t["num_outputs"], TOKEN_DIM]
    if has_tokens:
        shapes["affinity"] = [len(tasks), len(tasks)]
    return shapes


def build_model(
    tasks: list[dict], height: int, width: int, has_tokens: bool, seed: int, opset: int = OPSET
) -> onnx.ModelProto:
    """The fake multi-task graph (see the module docstring), checked with ``onnx.checker``."""
    g = _Graph(np.random.default_rng(seed))
    ys, xs = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    coords = g.const(np.stack([ys, xs])[None].astype(np.float32))  # (1, 2, H, W)
    x5 = g.op("Concat", "image", coords, axis=1)
    small = g.op("AveragePool", x5, kernel_shape=[FEATURE_STRIDE] * 2, strides=[FEATURE_STRIDE] * 2)
    feat = g.op("Tanh", g.op("Conv", small, g.weight(TOKEN_DIM, 5, 1, 1)))
    for t in tasks:
        _task_nodes(g, t, x5, feat, has_tokens)
    if has_tokens:
        raw = g.rng.random((len(tasks), len(tasks))) + 0.2
        g.op("Identity", g.const((raw / raw.sum(1, keepdims=True)).astype(np.float32)), out="affinity")
    shapes = _output_shapes(tasks, height, width, has_tokens)
    int_outputs = {f"{t['name']}_label" for t in tasks} | {
        f"{t['name']}_pred" for t in tasks if t["kind"] in ("segmentation", "binary")
    }
    outputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64 if n in int_outputs else TensorProto.FLOAT, s)
        for n, s in shapes.items()
    ]
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, height, width])
    graph = helper.make_graph(g.nodes, "fake_hitts", [image], outputs, g.inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="fake_export"
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def fp16_rounded(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph with every float32 weight rounded to float16 precision (I/O stay float32)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for i, init in enumerate(out.graph.initializer):
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32:
            out.graph.initializer[i].CopyFrom(
                numpy_helper.from_array(arr.astype(np.float16).astype(np.float32), init.name)
            )
    return out


def make_fake_export(
    out_dir: str | Path,
    arch: str = "hitts",
    height: int = 64,
    width: int = 96,
    *,
    name: str | None = None,
    tasks: list[dict] | None = None,
    seed: int = 0,
    opset: int = OPSET,
    fp16: bool = False,
) -> Path:
    """Write ``model.onnx`` + ``manifest.json`` (and ``model_fp16.onnx`` with ``fp16``) into ``out_dir``.

    arch: "hitts" exports the token outputs (``has_tokens``: true); "mtl"/"stl" only per-task
    pred/confidence/label. height, width: the model input size (multiples of 8).
    """
    if height % FEATURE_STRIDE or width % FEATURE_STRIDE:
        raise ValueError(f"height and width must be multiples of {FEATURE_STRIDE}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = tasks if tasks is not None else nyud_task_entries(seed)
    has_tokens = arch == "hitts"
    model = build_model(tasks, height, width, has_tokens, seed, opset)
    onnx.save(model, str(out / "model.onnx"))
    manifest = {
        "format_version": 1,
        "name": name or arch,
        "arch": arch,
        "backbone": "fake",
        "onnx_file": "model.onnx",
        "opset": opset,
        "input": {
            "name": "image",
            "height": height,
            "width": width,
            "mean": list(IMAGE_MEAN),
            "std": list(IMAGE_STD),
        },
        "tasks": tasks,
        "outputs": _output_shapes(tasks, height, width, has_tokens),
        "has_tokens": has_tokens,
        "has_affinity": has_tokens,
        "trained_on": {
            "dataset": "synthetic",
            "setting": "one-label",
            "num_train": 0,
            "notes": "fake test export",
        },
        "metrics": {"semseg": {"miou": 0.1, "pacc": 0.2}, "delta_mtl": 0.0},
        "parity": {},
    }
    if fp16:
        onnx.save(fp16_rounded(model), str(out / "model_fp16.onnx"))
        manifest["quantized"] = {"fp16": {"file": "model_fp16.onnx", "parity": {}, "size_mb": 0.01}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


def make_fake_gallery_item(
    gallery_dir: str | Path, name: str = "synthetic_000", height: int = 120, width: int = 160, seed: int = 0
) -> Path:
    """A synthetic gallery item: ``rgb.png``, ``semseg.png`` (255 = ignore), ``depth.png`` (uint16 mm,
    0 = missing) and ``normals.png`` (uint8 RGB, (n + 1) / 2 * 255)."""
    rng = np.random.default_rng(seed)
    item = Path(gallery_dir) / name
    item.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 128)], -1).astype(np.uint8)
    rgb = np.clip(rgb.astype(int) + rng.integers(-10, 10, rgb.shape), 0, 255).astype(np.uint8)
    semseg = ((yy * 3) // height * 4 + (xx * 4) // width).astype(np.uint8) % len(NYUD_CLASSES)
    semseg[:4] = 255
    depth_mm = (1000 + 4000 * yy / height).astype(np.uint16)
    depth_mm[:, :3] = 0
    normals = np.zeros((height, width, 3), np.float32)
    normals[..., 1] = -1.0
    normals[: height // 2, :, :] = (0.0, 0.0, -1.0)
    Image.fromarray(rgb).save(item / "rgb.png")
    Image.fromarray(semseg).save(item / "semseg.png")
    Image.fromarray(depth_mm).save(item / "depth.png")
    Image.fromarray(np.round((normals + 1) / 2 * 255).astype(np.uint8)).save(item / "normals.png")
    return item


def fake_method_metrics(miou: float, abs_err: float, mean_angle: float, delta: float) -> dict:
    """One method's block of a run record: {task: {metric: value}, "delta_mtl": stored value}."""
    return {
        "semseg": {"miou": miou, "pacc": miou + 20},
        "depth": {"abs_err": abs_err, "rel_err": abs_err / 3, "rmse": abs_err * 1.4},
        "normals": {
            "mean_angle": mean_angle,
            "median_angle": mean_angle - 5,
            "rmse_angle": mean_angle + 8,
            "within_11_25": 20.0,
            "within_22_5": 40.0,
            "within_30": 50.0,
        },
        "delta_mtl": delta,
    }


def make_fake_runs(runs_dir: str | Path, run_name: str = "fake-run", epochs: int = 4) -> Path:
    """A run record: ``metrics.json`` (stl/mtl/hitts/hitts_pseudo + ``_meta``) and a ``log.jsonl``."""
    run = Path(runs_dir) / run_name
    run.mkdir(parents=True, exist_ok=True)
    metrics = {
        "stl": fake_method_metrics(20.0, 0.80, 35.0, 0.0),
        "mtl": fake_method_metrics(22.0, 0.75, 36.0, 1.0),
        "hitts": fake_method_metrics(25.0, 0.70, 33.0, 6.0),
        "hitts_pseudo": fake_method_metrics(27.0, 0.66, 32.0, 9.0),
        "_meta": {
            "dataset": "synthetic",
            "setting": "one-label",
            "seed": 0,
            "wall_time_s": {"stl": 10.0},
            "config": {"stage": 1},
        },
    }
    (run / "metrics.json").write_text(json.dumps(metrics, indent=1))
    lines = []
    for epoch in range(epochs):
        lines.append(
            {
                "epoch": epoch,
                "hitts/lr": 5e-4,
                "hitts/train/L_s": 2.0 / (epoch + 1),
                "hitts/train/total": 2.5 / (epoch + 1),
                "mtl/train/total": 2.4 / (epoch + 1),
            }
        )
        lines.append(
            {"epoch": epoch, "split": "val", "semseg/miou": 5.0 * epoch, "depth/abs_err": 1 - 0.1 * epoch}
        )
    (run / "log.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{not json\n")
    return run


def make_fake_exports_root(root: str | Path, height: int = 64, width: int = 96) -> Path:
    """A complete ``exports/`` folder: ``hitts/`` (with an fp16 variant) and ``mtl/`` fake exports, one
    gallery item, one run."""
    root = Path(root)
    make_fake_export(root / "hitts", "hitts", height, width, seed=0, fp16=True)
    make_fake_export(root / "mtl", "mtl", height, width, seed=1, tasks=nyud_task_entries(0))
    make_fake_gallery_item(root / "gallery")
    make_fake_runs(root / "runs")
    return root


def cached_fake_exports_root(height: int = 64, width: int = 96) -> Path:
    """``make_fake_exports_root`` built once per version of this file and reused.

    The cache lives in the system temp folder, keyed by a hash of this file and the sizes; it is
    built in a scratch folder and renamed into place, so a crash never leaves a half-built cache.
    """
    digest = hashlib.sha256(Path(__file__).read_bytes() + f"{height}x{width}".encode()).hexdigest()[:16]
    final = Path(tempfile.gettempdir()) / f"hitts_fake_exports_onnx_{digest}"
    if (final / "hitts" / "manifest.json").is_file() and (final / "mtl" / "manifest.json").is_file():
        return final
    scratch = Path(tempfile.mkdtemp(prefix="hitts_fake_build_"))
    make_fake_exports_root(scratch, height, width)
    try:
        scratch.rename(final)
    except OSError:  # built concurrently by someone else: use theirs
        shutil.rmtree(scratch, ignore_errors=True)
    return final
