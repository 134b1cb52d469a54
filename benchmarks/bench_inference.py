"""One 288x384 image through an exported model with all dashboard outputs: ONNX Runtime vs PyTorch eager.

Usage: python benchmarks/bench_inference.py --run RUN --export EXPORT_DIR [--repeats 30] [--threads 1 2]

Both sides compute the same outputs (the export wrapper: predictions, confidences, labels, token maps,
affinity) from the same preprocessed input; the input image is 288x384 and is resized to the model's
input size on both sides as the app does. ONNX Runtime runs with the app's session options
(``hitts_demo.predictor.session_options``); PyTorch in eval mode under ``inference_mode``, both with
contiguous (NCHW) and channels-last weights and input, the faster of the two counting. Every
(runtime, thread count) pair is called once per round, round after round, so that a change of load
on a shared machine hits all of them alike; each figure is the median over the rounds (wall clock,
and CPU time of the process). The ratio compares each runtime at its fastest thread count.

The app's own work for the Predictions view of that image (``Predictor.predict`` less the session
run: resize and normalisation; then ``predictions_view``: every task panel with its legend and the
two slider images, with the legend text rendered afresh) is timed separately.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IMAGE_HW = (288, 384)


def interleaved(calls: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, dict]:
    """Median wall and CPU milliseconds of each call, the calls taking turns round after round."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    wall: dict[str, list[float]] = {k: [] for k in calls}
    cpu: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append((time.process_time() - c) * 1000)
            wall[name].append((time.perf_counter() - t) * 1000)
    return {
        k: {
            "wall_ms": statistics.median(wall[k]),
            "cpu_ms": statistics.median(cpu[k]),
            "min_ms": min(wall[k]),
        }
        for k in calls
    }


def torch_calls(run: Path, h: int, w: int, image: np.ndarray, threads: list[int]) -> dict[str, Callable]:
    """PyTorch eager: the export wrapper at each thread count, NCHW and channels-last."""
    import torch

    from trainer.export import ExportWrapper
    from trainer.pipeline import load_run, task_specs

    cfg, model, quantisers, _ = load_run(run)
    model = model.eval().float()
    with torch.inference_mode():
        probe = model(torch.zeros(1, 3, h, w))
    wrapper = ExportWrapper(
        model, task_specs(cfg), quantisers, bool(probe.get("fine_tokens")), probe.get("affinity") is not None
    ).eval()
    x = torch.nn.functional.interpolate(torch.from_numpy(image), size=(h, w), mode="bilinear")
    layouts = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
    wrappers = {
        "nchw": wrapper,
        "channels_last": copy.deepcopy(wrapper).to(memory_format=torch.channels_last),
    }

    def call(n: int, layout: str) -> Callable[[], object]:
        inp = x.contiguous(memory_format=layouts[layout])

        def fn() -> object:
            torch.set_num_threads(n)
            with torch.inference_mode():
                return wrappers[layout](inp)

        return fn

    return {f"torch_{layout}_t{n}": call(n, layout) for n in threads for layout in layouts}


def ort_calls(export: Path, manifest: dict, image: np.ndarray, threads: list[int]) -> dict[str, Callable]:
    """ONNX Runtime with the app's session options: every exported precision at each thread count."""
    import onnxruntime as ort

    from hitts_demo.predictor import session_options

    h, w = manifest["input"]["height"], manifest["input"]["width"]
    x = image if image.shape[-2:] == (h, w) else None
    if x is None:
        import torch

        t = torch.nn.functional.interpolate(torch.from_numpy(image), size=(h, w), mode="bilinear")
        x = t.numpy()
    variants = {"fp32": manifest["onnx_file"]}
    variants.update({k: v["file"] for k, v in manifest.get("quantized", {}).items() if "file" in v})
    calls = {}
    for name, file in variants.items():
        for n in threads:
            sess = ort.InferenceSession(
                str(export / file), session_options(n), providers=["CPUExecutionProvider"]
            )
            calls[f"ort_{name}_t{n}"] = lambda s=sess: s.run(None, {"image": x})
    return calls


def app_postprocess_ms(export: Path, repeats: int) -> dict[str, float]:
    """The app's own work for one 288x384 image: input preparation, and the Predictions view."""
    from hitts_demo import visualize as vis
    from hitts_demo.predictor import Prediction, Predictor
    from hitts_demo.service import Analysis
    from hitts_demo.views.predictions import default_pair, predictions_view, slider_choices

    predictor = Predictor(export, providers=["CPUExecutionProvider"], intra_op_threads=1)
    rgb = np.random.default_rng(1).integers(0, 256, (*IMAGE_HW, 3), dtype=np.uint8)
    name = predictor.manifest.name
    choices = slider_choices({name: predictor.manifest})
    left, right = default_pair(choices)
    tasks = list(predictor.manifest.task_names)

    first = predictor.predict(rgb)

    def view() -> object:  # a fresh Prediction, no legend text cached: as for a new image
        getattr(vis, "_text_tile", functools.lru_cache(lambda: None)).cache_clear()
        pred = Prediction(first.manifest, rgb, first.outputs, first.latency_ms)
        return predictions_view(Analysis({name: pred}), choices, left, right, tasks, {name: ["CPU"]})

    times = interleaved({"input": lambda: predictor.to_input(rgb), "view": view}, repeats)
    return {"input_ms": times["input"]["wall_ms"], "predictions_view_ms": times["view"]["wall_ms"]}


def best(results: dict[str, dict], prefix: str) -> tuple[str, float]:
    """The fastest (median wall) entry whose name starts with ``prefix``."""
    name = min((k for k in results if k.startswith(prefix)), key=lambda k: results[k]["wall_ms"])
    return name, results[name]["wall_ms"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--export", required=True, type=Path)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--json", type=Path, help="also write the figures here")
    a = p.parse_args()

    manifest = json.loads((a.export / "manifest.json").read_text())
    h, w = manifest["input"]["height"], manifest["input"]["width"]
    image = np.random.default_rng(0).random((1, 3, *IMAGE_HW), dtype=np.float32)
    calls = torch_calls(a.run, h, w, image, a.threads) | ort_calls(a.export, manifest, image, a.threads)
    results: dict = interleaved(calls, a.repeats)
    print(
        f"machine: {platform.machine()} {platform.processor()}, threads {a.threads}, model input {h}x{w}, "
        f"image {IMAGE_HW[0]}x{IMAGE_HW[1]}, median of {a.repeats} interleaved rounds"
    )
    for k, v in results.items():
        print(f"  {k:>26}: {v['wall_ms']:8.1f} ms wall (min {v['min_ms']:.1f}), {v['cpu_ms']:8.1f} ms CPU")
    torch_best, ort_best = best(results, "torch_"), best(results, "ort_fp32_")
    ratio = torch_best[1] / ort_best[1]
    print(
        f"  best against best: {ort_best[0]} {ort_best[1]:.1f} ms vs {torch_best[0]} {torch_best[1]:.1f} ms: {ratio:.2f}x"
    )
    post = app_postprocess_ms(a.export, a.repeats)
    print(f"  app: input {post['input_ms']:.1f} ms, Predictions view {post['predictions_view_ms']:.1f} ms")
    summary = {"results": results, "ratio_best_vs_best": ratio, "app": post}
    print(json.dumps({"ratio_best_vs_best": ratio, "app": post}))
    if a.json:
        a.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
