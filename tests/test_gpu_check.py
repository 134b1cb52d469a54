"""benchmarks/gpu_check.py at toy size on CPU: every section runs (or says why it is skipped) and the
report holds sensible numbers, so the GPU run the lead does by hand keeps working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_check  # noqa: E402


@pytest.mark.slow
def test_quick_cpu_run_writes_a_complete_report(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "gpu_check.py"),
            "--device",
            "cpu",
            "--quick",
            "--out",
            str(out),
            "--budget-s",
            "1800",  # a shared CPU can be several times slower than the GPU run's 420 s
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=1900,
    )
    assert out.exists(), proc.stderr[-3000:]
    report = json.loads(out.read_text())
    sections = report["sections"]
    assert list(sections) == list(gpu_check.SECTIONS)
    status = {name: entry["status"] for name, entry in sections.items()}
    assert all(s in ("ok", "skipped") for s in status.values()), {
        n: e.get("error") for n, e in sections.items() if e["status"] not in ("ok", "skipped")
    }
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert status["ort_cuda"] == "skipped"  # no CUDA device here
    for name in (
        "environment",
        "data",
        "amp",
        "channels_last",
        "fused_adam",
        "export",
        "train_step_eager",
        "pipeline",
        "train_step_compiled",
    ):
        assert status[name] == "ok", (name, sections[name])
    amp = sections["amp"]["result"]
    assert 0 <= amp["bf16_vs_fp32_relative_max_diff"] < gpu_check.AMP_TOLERANCE
    assert amp["without_grad"] == [] and amp["non_finite_grad"] == []
    assert sections["channels_last"]["result"]["relative_max_diff"] < gpu_check.LAYOUT_TOLERANCE
    assert sections["fused_adam"]["result"]["max_param_diff"] < gpu_check.ADAM_TOLERANCE
    export = sections["export"]["result"]
    assert export["device_vs_ort_max_abs_diff"] < 1e-3 and export["device_vs_ort_min_agreement"] >= 0.99
    for name in ("train_step_eager", "train_step_compiled"):
        r = sections[name]["result"]
        for arch in ("mtl", "hitts"):
            assert r[arch]["median_ms"] > 0 and r[arch]["images_per_s"] > 0 and r[arch]["params"] > 0
        assert r["step_ratio"] > 0
    assert sections["train_step_compiled"]["result"]["setup"]["compile_backend"] == "aot_eager"
    assert sections["train_step_compiled"]["result"]["hitts"]["compile_s"] > 0
    pipeline = sections["pipeline"]["result"]
    assert pipeline["discovery"] and set(pipeline["methods"]) == {"hitts", "hitts_pseudo"}
    assert "total_seconds" in report and "section" in proc.stdout  # the summary table was printed


def test_spent_budget_skips_sections_and_still_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    code = gpu_check.main(["--device", "cpu", "--quick", "--budget-s", "0", "--out", str(out)])
    report = json.loads(out.read_text())
    assert code == 0
    assert {e["status"] for e in report["sections"].values()} == {"skipped"}
    assert "budget" in report["sections"]["amp"]["reason"]


def test_a_failing_section_is_recorded_and_the_rest_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(ctx, budget):
        raise RuntimeError("kaboom")

    monkeypatch.setitem(gpu_check.SECTIONS, "environment", boom)
    out = tmp_path / "gpu.json"
    code = gpu_check.main(["--device", "cpu", "--quick", "--only", "environment", "data", "--out", str(out)])
    sections = json.loads(out.read_text())["sections"]
    assert code == 1
    assert sections["environment"]["status"] == "error" and "kaboom" in sections["environment"]["traceback"]
    assert sections["data"]["status"] == "ok"
    assert sections["amp"]["status"] == "skipped"
