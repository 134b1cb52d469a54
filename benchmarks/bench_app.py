"""Dashboard latency: start-up to first answer, and one 640x480 upload to every view rendered.

    python benchmarks/bench_app.py [--exports exports/] [--runs 7] [--no-browser] [--json out.json]

Without a real export in ``--exports`` (``hitts/manifest.json``), a fake one with the real input
size (288x384) is built first with ``tests/demo/fake_export.py`` (onnx.helper; the app
itself never imports it). Measures, on this machine:

* start-up: ``python app.py`` launched -> HTTP up -> first ``predict`` answered (gradio_client);
* API: ``analyze`` (upload, both models, the Predictions view) then the tokens, pseudo-label and 3D
  views, called in sequence by one client (files not downloaded), median of ``--runs``;
* browser (headless Chromium, when /usr/bin/chromium exists): upload -> the Predictions view's
  images decoded, then each other tab opened until its pictures / plots / 3D canvas are drawn
  ("all views rendered"), median of ``--runs``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NYUV2 = REPO.parent / "shared" / "data" / "nyuv2-mini"
sys.path.insert(0, str(REPO / "tests" / "demo"))  # fake_export, headless_chromium: shared with the tests

from headless_chromium import CHROMIUM, launch  # noqa: E402

FAKE_SIZE = (288, 384)
START_TIMEOUT_S = 120
RENDER_TIMEOUT_MS = 60_000
SETTLE_MS = 1500
TARGET_START_S = 10.0
TARGET_ANSWER_S = 1.0


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    import gradio
    import onnxruntime

    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (
        f"{cpu}, {cores} cores usable{load}, Python {platform.python_version()}, gradio {gradio.__version__}, "
        f"onnxruntime {onnxruntime.__version__} ({platform.system()})"
    )


def frames(n: int) -> list[Path]:
    """n 640x480 frames: the nyuv2-mini ones when present, else generated."""
    real = sorted(NYUV2.glob("rgb_*.png"))
    if real:
        return [real[i % len(real)] for i in range(n)]
    import numpy as np
    from PIL import Image

    out = []
    for i in range(n):
        path = Path(tempfile.gettempdir()) / f"hitts_bench_frame_{i}.png"
        arr = np.random.default_rng(i).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        Image.fromarray(arr).save(path)
        out.append(path)
    return out


def exports_dir(requested: Path) -> tuple[Path, str]:
    if (requested / "hitts" / "manifest.json").is_file():
        return requested, f"real export in {requested}"
    from fake_export import cached_fake_exports_root

    root = cached_fake_exports_root(*FAKE_SIZE)
    return (
        root,
        f"fake export {FAKE_SIZE[1]}x{FAKE_SIZE[0]} (tests/demo/fake_export.py; no real export in {requested})",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(exports: Path, log: Path) -> tuple[subprocess.Popen, str, float, float]:
    """Launch the app; returns (process, url, seconds to HTTP up, seconds to the first predict answer)."""
    from gradio_client import Client, handle_file

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--exports", str(exports), "--port", str(port)],
        cwd=REPO,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    up = None
    while time.perf_counter() - t0 < START_TIMEOUT_S:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-3000:])
        try:
            with urllib.request.urlopen(url, timeout=2):
                up = time.perf_counter() - t0
                break
        except OSError:
            time.sleep(0.05)
    if up is None:
        proc.kill()
        raise RuntimeError("app did not start")
    Client(url, verbose=False, download_files=False).predict(
        handle_file(str(frames(1)[0])), "hitts", api_name="/predict"
    )
    return proc, url, up, time.perf_counter() - t0


def bench_api(url: str, runs: int) -> dict[str, float]:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=False)
    keys = (
        "analyze",
        "render_tokens",
        "render_pseudo",
        "render_consistency",
        "render_3d",
        "total",
        "model_sessions",
    )
    steps: dict[str, list[float]] = {k: [] for k in keys}
    for i, frame in enumerate(frames(runs + 1)):
        t = [time.perf_counter()]
        status, *_ = client.predict(
            handle_file(str(frame)), None, "input", "hitts · semseg overlay", "fp32", api_name="/analyze"
        )
        t.append(time.perf_counter())
        client.predict("hitts", "semseg", None, api_name="/render_tokens")
        t.append(time.perf_counter())
        client.predict("hitts", 0.9, 0.45, 0.6, api_name="/render_pseudo")
        t.append(time.perf_counter())
        client.predict("hitts", 0, api_name="/render_consistency")
        t.append(time.perf_counter())
        client.predict("hitts", 0, "class", 0.0, api_name="/render_3d")
        t.append(time.perf_counter())
        if i == 0:
            continue  # warm-up
        for k, (a, b) in zip(list(steps)[:5], zip(t, t[1:])):
            steps[k].append(b - a)
        steps["total"].append(t[-1] - t[0])
        steps["model_sessions"].append(
            sum(float(ms) for ms in re.findall(r"\*\* \(fp\d+\): (\d+) ms", status)) / 1000
        )
    return {k: statistics.median(v) for k, v in steps.items()}


def _images_decoded(page, marker: str, count: int) -> None:
    page.wait_for_function(
        f"() => Array.from(document.querySelectorAll('img[src*=\"{marker}\"]'))"
        f".filter(i => i.complete && i.naturalWidth > 0).length >= {count}",
        timeout=RENDER_TIMEOUT_MS,
    )


def bench_browser(url: str, runs: int) -> dict[str, float] | None:
    if not CHROMIUM.exists():
        return None
    from playwright.sync_api import sync_playwright

    first, every = [], []
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for i, frame in enumerate(frames(runs + 1)):
            page.goto(url)
            page.wait_for_selector("input[type=file]", state="attached", timeout=RENDER_TIMEOUT_MS)
            page.wait_for_timeout(SETTLE_MS)  # let the page's load events (Metrics view) finish first
            t0 = time.perf_counter()
            page.set_input_files("input[type=file]", str(frame))
            _images_decoded(page, "pred_", 8)  # 6 task panels + the slider's two sides
            t1 = time.perf_counter()
            page.get_by_role("tab", name="Confidence and tokens").click()
            _images_decoded(page, "tokens_", 7)
            page.wait_for_selector(".js-plotly-plot", timeout=RENDER_TIMEOUT_MS)
            page.get_by_role("tab", name="Pseudo labels").click()
            _images_decoded(page, "pseudo_", 3)
            page.get_by_role("tab", name="3D").click()
            page.wait_for_function(
                "() => Array.from(document.querySelectorAll('canvas')).some(c => c.width > 0)",
                timeout=RENDER_TIMEOUT_MS,
            )
            t2 = time.perf_counter()
            if i:
                first.append(t1 - t0)
                every.append(t2 - t0)
        browser.close()
    return {"predictions_view": statistics.median(first), "all_views": statistics.median(every)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exports", type=Path, default=REPO / "exports")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    exports, what = exports_dir(args.exports)
    log = Path(tempfile.mkdtemp(prefix="hitts_bench_")) / "app.log"
    proc, url, up, first_answer = start(exports, log)
    try:
        api = bench_api(url, args.runs)
        browser = None if args.no_browser else bench_browser(url, args.runs)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    result = {
        "machine": machine(),
        "exports": what,
        "runs": args.runs,
        "startup_http_s": up,
        "startup_first_answer_s": first_answer,
        "api_s": api,
        "browser_s": browser,
    }
    print(f"machine: {result['machine']}")
    print(f"model:   {what}")
    print(
        f"start-up: HTTP up {up:.2f} s, first answer {first_answer:.2f} s (target < {TARGET_START_S:.0f} s)"
    )
    print(
        f"API, one 640x480 upload, median of {args.runs}: "
        + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in api.items())
    )
    print("  (model_sessions: ONNX Runtime time of both models inside analyze, as the app reports it)")
    if browser:
        print(
            f"browser (headless Chromium), median of {args.runs}: Predictions view {browser['predictions_view'] * 1000:.0f} ms, "
            f"all views {browser['all_views'] * 1000:.0f} ms (target < {TARGET_ANSWER_S * 1000:.0f} ms)"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
