"""Training-step cost of HiTTs against the MTL baseline on the same backbone.

A training step is: forward, cross-entropy on every task's logits against random targets, backward,
Adam. Two measurements, both printed with the HiTTs / MTL ratios of this one run:

* Time: one process builds every model and runs their steps interleaved (MTL, HiTTs, MTL, HiTTs,
  ...), so that load from other processes on a shared machine hits both alike. Reported: the median
  wall-clock step after ``--warmup`` rounds, the median over rounds of the per-round ratio, and the
  median process CPU time per step (all threads; on a shared CPU it moves less than wall time).
* Peak memory: a fresh subprocess per model runs ``--memory-steps`` steps.
  CUDA: ``torch.cuda.max_memory_allocated()`` minus the memory allocated before the first step.
  CPU: peak resident set size (``resource.getrusage(...).ru_maxrss``) minus the resident set size just
  before the first step (``/proc/self/statm``): activations, gradients and Adam state, plus whatever
  the allocator keeps cached. A fresh process keeps one model's high-water mark out of the other's.
  The worker runs with glibc's ``MALLOC_MMAP_THRESHOLD_`` fixed (``CPU_MMAP_THRESHOLD``, unless the
  environment sets it): large tensors then come from mmap and go back to the system when freed, so the
  peak follows the live tensors (glibc's adaptive threshold otherwise keeps freed blocks resident, and
  the same model's reading moved by +-4% between runs).

    python benchmarks/bench_train_step.py                      # efficientnet_lite0, 288x384, batch 8
    python benchmarks/bench_train_step.py --backbone segnet --batch 2
    python benchmarks/bench_train_step.py --threads 1          # stable figures on a shared CPU
    python benchmarks/bench_train_step.py --backbone resnet18 --multi-scale --model-width 256 --batch 4 \
        --set scale_ffn=false                                  # any ModelConfig field, both models

The forward multiply-accumulates per image of each model (``torch.utils.flop_counter``) are printed
too: on a CPU the step is compute-bound, so their ratio is the floor of the step ratio; what the
step ratio adds above it is overhead (memory traffic, small ops, launches on a GPU).

On a CPU that other processes also use, multi-threaded steps stall at OpenMP barriers whenever a
core is taken away, and wall-clock figures swing by several times; ``--threads 1`` and the CPU-time
column are then the figures to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ARCHS = ("mtl", "hitts")
TARGET_TIME_RATIO = 1.3
TARGET_MEMORY_RATIO = 1.5
CPU_MMAP_THRESHOLD = 128 * 1024  # bytes: glibc's default start, here kept fixed (see the docstring)


def _rss_bytes() -> int:
    """Current resident set size of this process (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def make_train_step(
    arch: str,
    *,
    backbone: str = "resnet18",
    dataset: str = "nyud",
    batch: int = 8,
    height: int = 288,
    width: int = 384,
    model_width: int = 64,
    multi_scale: bool = False,
    attention_reduction: int = 4,
    device: str = "cpu",
    amp: str = "none",
    channels_last: bool = False,
    compile_backend: str | None = None,
    model_overrides: dict | None = None,
):
    """A model of ``arch`` and a closure running one training step on fixed random data.

    amp: "none", "bf16" or "fp16" autocast. compile_backend: None (eager) or a ``torch.compile``
    backend ("inductor", "aot_eager", ...), mode default. Adam is fused on CUDA. On CUDA the step ends
    with a synchronize, so that its wall-clock time is the step's time. model_overrides: further
    ``ModelConfig`` fields.
    Returns (step, model) where ``model`` is the uncompiled module.
    """
    import torch
    import torch.nn.functional as F

    from trainer.config import ModelConfig
    from trainer.models import build_model
    from trainer.tasks import tasks_for

    torch.manual_seed(0)
    dev = torch.device(device)
    specs = tasks_for(dataset)
    cfg = ModelConfig(
        arch=arch,
        backbone=backbone,
        pretrained=False,  # weights do not change the cost
        width=model_width,
        multi_scale=multi_scale,
        attention_reduction=attention_reduction,
        **(model_overrides or {}),
    )
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(cfg, specs).to(dev, memory_format=memory_format).train()
    net = model if compile_backend is None else torch.compile(model, backend=compile_backend)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4, fused=dev.type == "cuda")
    image = torch.randn(batch, 3, height, width, device=dev).to(memory_format=memory_format)
    targets = {s.name: torch.randint(0, s.num_outputs, (batch, height, width), device=dev) for s in specs}
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)

    def step() -> None:
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = net(image)
            loss = sum(F.cross_entropy(out["logits"][s.name].float(), targets[s.name]) for s in specs)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    return step, model


def _step_kwargs(args: argparse.Namespace) -> dict:
    """``make_train_step`` keyword arguments from the command line."""
    return dict(
        backbone=args.backbone,
        dataset=args.dataset,
        batch=args.batch,
        height=args.height,
        width=args.width,
        model_width=args.model_width,
        multi_scale=args.multi_scale,
        attention_reduction=args.attention_reduction,
        device=args.device,
        amp=args.amp,
        channels_last=args.channels_last,
        compile_backend=args.compile,
        model_overrides=_overrides(args.set),
    )


def _make_step(arch: str, args: argparse.Namespace):
    """``make_train_step`` with the command line's settings; returns (step, parameter count)."""
    from trainer.models import count_parameters

    step, model = make_train_step(arch, **_step_kwargs(args))
    return step, count_parameters(model)


def _overrides(items: list[str]) -> dict:
    """``field=value`` strings -> ModelConfig fields (values parsed as JSON where possible)."""
    out = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def forward_gmac(arch: str, args: argparse.Namespace) -> float:
    """Multiply-accumulates (10^9) of one forward pass of one image (CPU, fp32, eager)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    kwargs = {**_step_kwargs(args), "batch": 1, "device": "cpu", "amp": "none", "compile_backend": None}
    _, model = make_train_step(arch, **kwargs)
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, args.height, args.width))
    return counter.get_total_flops() / 2e9


def _setup_torch(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # CPU: denormals can slow a step many times over


def measure_memory(arch: str, args: argparse.Namespace) -> dict:
    """Peak training memory of one model (run in a fresh process)."""
    import torch

    _setup_torch(args)
    step, params = _make_step(arch, args)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes()
    for _ in range(args.memory_steps):
        step()
    peak = (torch.cuda.max_memory_allocated() if cuda else _peak_rss_bytes()) - base
    return {"arch": arch, "params": params, "peak_mib": peak / 2**20}


def measure_time(args: argparse.Namespace) -> dict:
    """Median step time of every model, steps interleaved across models."""
    _setup_torch(args)
    steps = {arch: _make_step(arch, args)[0] for arch in args.archs}
    times: dict[str, list[float]] = {arch: [] for arch in args.archs}
    cpu_times: dict[str, list[float]] = {arch: [] for arch in args.archs}
    for r in range(args.warmup + args.steps):
        for arch, step in steps.items():
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            if r >= args.warmup:
                times[arch].append(time.perf_counter() - t0)
                cpu_times[arch].append(time.process_time() - c0)
    result = {
        arch: {
            "median_ms": 1000 * statistics.median(t),
            "min_ms": 1000 * min(t),
            "median_cpu_ms": 1000 * statistics.median(cpu_times[arch]),
        }
        for arch, t in times.items()
    }
    if "mtl" in times and "hitts" in times:
        result["paired_ratio"] = statistics.median(h / m for h, m in zip(times["hitts"], times["mtl"]))
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--backbone", default="efficientnet_lite0", choices=("segnet", "efficientnet_lite0", "resnet18")
    )
    p.add_argument("--dataset", default="nyud", help="task set (trainer.tasks.DATASET_TASKS)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--height", type=int, default=288, help="image height")
    p.add_argument("--width", type=int, default=384, help="image width")
    p.add_argument("--model-width", type=int, default=64, help="D")
    p.add_argument("--multi-scale", action="store_true")
    p.add_argument("--attention-reduction", type=int, default=4)
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds")
    p.add_argument("--steps", type=int, default=5, help="timed rounds")
    p.add_argument("--memory-steps", type=int, default=2)
    p.add_argument("--device", default="cuda" if _cuda_available() else "cpu")
    p.add_argument(
        "--amp", choices=("none", "bf16", "fp16"), default=None, help="default: bf16 on CUDA, none on CPU"
    )
    p.add_argument("--channels-last", action="store_true")
    p.add_argument(
        "--compile", metavar="BACKEND", help="torch.compile the model with this backend (inductor)"
    )
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="ModelConfig field")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: PyTorch's default)")
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.amp is None:
        args.amp = "bf16" if args.device.startswith("cuda") else "none"

    if args.memory_worker:
        result = measure_memory(args.memory_worker, args)
        result["gmac_per_image"] = forward_gmac(args.memory_worker, args)
        print(json.dumps(result))
        return

    memory = {}
    if not args.skip_memory:
        for arch in args.archs:
            cmd = [sys.executable, __file__, *sys.argv[1:], "--memory-worker", arch]
            env = {"MALLOC_MMAP_THRESHOLD_": str(CPU_MMAP_THRESHOLD), **os.environ}
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
            if proc.returncode != 0:
                sys.exit(f"{arch} memory worker failed:\n{proc.stderr}")
            memory[arch] = json.loads(proc.stdout.strip().splitlines()[-1])
    timing = measure_time(args)

    import torch

    cuda = args.device.startswith("cuda")
    machine = (
        torch.cuda.get_device_name()
        if cuda
        else f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    )
    print(
        f"backbone {args.backbone}{' multi-scale' if args.multi_scale else ''}, {args.height}x{args.width}, "
        f"batch {args.batch}, D {args.model_width}, {args.device} ({machine}), amp {args.amp}; "
        f"median of {args.steps} interleaved steps after {args.warmup} warm-up"
    )
    print(
        f"{'arch':6s} {'params':>9s} {'GMAC/img':>9s} {'ms/step':>9s} {'img/s':>7s} {'cpu ms':>9s} {'peak MiB':>9s}"
    )
    for arch in args.archs:
        t, mem = timing[arch], memory.get(arch, {})
        params = f"{mem['params'] / 1e6:8.2f}M" if mem else f"{'-':>9s}"
        gmac = f"{mem['gmac_per_image']:9.2f}" if mem else f"{'-':>9s}"
        peak = f"{mem['peak_mib']:9.0f}" if mem else f"{'-':>9s}"
        print(
            f"{arch:6s} {params} {gmac} {t['median_ms']:9.1f} {1000 * args.batch / t['median_ms']:7.2f} "
            f"{t['median_cpu_ms']:9.1f} {peak}"
        )
    results = {"timing": timing, "memory": memory}
    if "paired_ratio" in timing:
        t = timing["hitts"]["median_ms"] / timing["mtl"]["median_ms"]
        c = timing["hitts"]["median_cpu_ms"] / timing["mtl"]["median_cpu_ms"]
        line = (
            f"HiTTs / MTL: step {t:.2f}x (per-round ratios, median {timing['paired_ratio']:.2f}x; "
            f"CPU time {c:.2f}x; target <= {TARGET_TIME_RATIO})"
        )
        results["ratios"] = {"time": t, "time_paired": timing["paired_ratio"], "cpu_time": c}
        if memory:
            m = memory["hitts"]["peak_mib"] / memory["mtl"]["peak_mib"]
            g = memory["hitts"]["gmac_per_image"] / memory["mtl"]["gmac_per_image"]
            line += f", peak memory {m:.2f}x (target <= {TARGET_MEMORY_RATIO}), forward MACs {g:.2f}x"
            results["ratios"]["memory"] = m
            results["ratios"]["gmac"] = g
        print(line)
    if args.json:
        results["setup"] = {k: v for k, v in vars(args).items() if k not in ("json", "memory_worker")}
        results["setup"]["machine"] = machine
        args.json.write_text(json.dumps(results, indent=2, default=str))


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


if __name__ == "__main__":
    main()
