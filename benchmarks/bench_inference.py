"""One 288x384 image through an exported model with all dashboard outputs: ONNX Runtime vs PyTorch eager.

Usage: python benchmarks/bench_inference.py --run RUN --export EXPORT_DIR [--repeats 30] [--threads 2]

Both sides compute the same outputs (the export wrapper: predictions, confidences, labels, token maps,
affinity) from the same preprocessed input; the input image is 288x384 and is resized to the model's
input size on both sides as the app does. Prints medians and the ratio, measured in this one run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IMAGE_HW = (288, 384)


def median_ms(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--export", required=True, type=Path)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()

    import onnxruntime as ort
    import torch

    from trainer.export import ExportWrapper
    from trainer.pipeline import load_run, task_specs

    torch.set_num_threads(a.threads)
    manifest = json.loads((a.export / "manifest.json").read_text())
    h, w = manifest["input"]["height"], manifest["input"]["width"]
    rng = np.random.default_rng(0)
    image = rng.random((1, 3, *IMAGE_HW), dtype=np.float32)

    def resized() -> np.ndarray:
        t = torch.from_numpy(image)
        return torch.nn.functional.interpolate(t, size=(h, w), mode="bilinear", align_corners=False).numpy()

    cfg, model, quantisers, _ = load_run(a.run)
    specs = task_specs(cfg)
    probe = model(torch.zeros(1, 3, h, w))
    wrapper = ExportWrapper(
        model, specs, quantisers, bool(probe.get("fine_tokens")), probe.get("affinity") is not None
    ).eval()

    def torch_call() -> None:
        with torch.inference_mode():
            wrapper(torch.from_numpy(resized()))

    results = {"torch_eager_ms": median_ms(torch_call, a.repeats)}
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = a.threads
    variants = {"fp32": manifest["onnx_file"]}
    variants.update({k: v["file"] for k, v in manifest.get("quantized", {}).items()})
    for name, file in variants.items():
        sess = ort.InferenceSession(str(a.export / file), so, providers=["CPUExecutionProvider"])
        results[f"ort_{name}_ms"] = median_ms(lambda s=sess: s.run(None, {"image": resized()}), a.repeats)
    print(
        f"machine: {platform.machine()} {platform.processor()}, {a.threads} threads, "
        f"model input {h}x{w}, image {IMAGE_HW[0]}x{IMAGE_HW[1]}, median of {a.repeats}"
    )
    for k, v in results.items():
        print(f"  {k:>18}: {v:8.1f} ms")
    print(
        f"  ONNX Runtime fp32 speed-up over PyTorch eager: {results['torch_eager_ms'] / results['ort_fp32_ms']:.2f}x"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
