"""scripts/evaluate_shipped.py on constant-output fake exports, whose metrics are known exactly."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests" / "demo"))
import evaluate_shipped  # noqa: E402
from fake_export import make_fake_export  # noqa: E402

from hitts_demo.manifest import load_manifest  # noqa: E402
from hitts_demo.provenance import current_digest, model_line  # noqa: E402
from trainer.data.synthetic import generate_scene  # noqa: E402

H, W = 16, 24  # model input
FRAME_H, FRAME_W = 480, 640  # nyuv2-mini frames
LEFT_CLASS, RIGHT_CLASS = 3, 7
NORMAL = (0.6, 0.0, -0.8)
SYN_H, SYN_W, SYN_SEED = 32, 48, 5


def constant_export(folder: Path, name: str, cls: int, depth_m: float) -> Path:
    """A fake export (manifest of make_fake_export) whose graph predicts ``cls``, ``depth_m`` and
    ``NORMAL`` at every pixel, whatever the image."""
    make_fake_export(folder, arch="mtl", height=H, width=W, name=name)
    values = {
        "semseg_pred": np.full((1, H, W), cls, np.int64),
        "depth_pred": np.full((1, 1, H, W), depth_m, np.float32),
        "normals_pred": np.broadcast_to(
            np.asarray(NORMAL, np.float32)[None, :, None, None], (1, 3, H, W)
        ).copy(),
    }
    for task in ("semseg", "depth", "normals"):
        values[f"{task}_confidence"] = np.ones((1, H, W), np.float32)
        values[f"{task}_label"] = np.zeros((1, H, W), np.int64)
    manifest = json.loads((folder / "manifest.json").read_text())
    inits = [numpy_helper.from_array(v, f"{k}_constant") for k, v in values.items()]
    nodes = [helper.make_node("Identity", [f"{k}_constant"], [k]) for k in manifest["outputs"]]
    outputs = [
        helper.make_tensor_value_info(
            k, helper.np_dtype_to_tensor_dtype(values[k].dtype), list(values[k].shape)
        )
        for k in manifest["outputs"]
    ]
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, H, W])
    graph = helper.make_graph(nodes, "constant", [image], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(folder / "model.onnx"))
    return folder


def write_frames(root: Path, layout: str, count: int = 2) -> Path:
    """nyuv2-mini frames: "half": LEFT_CLASS at 2 m on the left, RIGHT_CLASS at 4 m on the right;
    "perfect": LEFT_CLASS at 2 m everywhere. Row 0 unlabelled and without depth."""
    root.mkdir(parents=True)
    labels = np.full((FRAME_H, FRAME_W), LEFT_CLASS + 1, np.uint8)  # stored 1..13
    depth = np.full((FRAME_H, FRAME_W), 2000, np.uint16)
    if layout == "half":
        labels[:, FRAME_W // 2 :] = RIGHT_CLASS + 1
        depth[:, FRAME_W // 2 :] = 4000
    labels[0], depth[0] = 0, 0
    rgb = np.random.default_rng(0).integers(0, 256, (FRAME_H, FRAME_W, 3), dtype=np.uint8)
    for i in range(1, count + 1):
        Image.fromarray(rgb).save(root / f"rgb_{i:04d}.png")
        Image.fromarray(labels).save(root / f"semantic13_{i:04d}.png")
        Image.fromarray(depth).save(root / f"depth_{i:04d}.png")
    return root


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    constant_export(tmp_path / "exports" / "hitts", "hitts", LEFT_CLASS, 2.0)
    constant_export(tmp_path / "exports" / "mtl", "mtl", RIGHT_CLASS, 4.0)
    return tmp_path / "exports"


def evaluate(exports: Path, frames: Path, *extra: str) -> dict:
    out = exports.parent / "eval.json"
    args = ["--exports", str(exports), "--nyuv2-mini", str(frames), "--out", str(out), *extra]
    report = evaluate_shipped.run(evaluate_shipped.parse_args(args))
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    return report


def test_real_frames_give_the_exact_metrics_and_gain(exports, tmp_path):
    report = evaluate(exports, write_frames(tmp_path / "nyu", "half"), "--num", "0")
    real = report["results"]["nyuv2-mini"]
    hitts, mtl = real["hitts"]["metrics"], real["mtl"]["metrics"]
    assert real["hitts"]["num_images"] == 2 and real["hitts"]["label_size"] == [FRAME_H, FRAME_W]
    assert hitts["semseg"]["pacc"] == pytest.approx(50.0) and hitts["semseg"]["miou"] == pytest.approx(25.0)
    assert hitts["depth"]["abs_err"] == pytest.approx(1.0) and hitts["depth"]["rel_err"] == pytest.approx(
        0.25
    )
    assert hitts["depth"]["rmse"] == pytest.approx(math.sqrt(2.0))
    assert mtl["depth"]["abs_err"] == pytest.approx(1.0) and mtl["depth"]["rel_err"] == pytest.approx(0.5)
    assert "normals" not in hitts and real["hitts"]["not_measured"] == {"normals": "no ground truth"}
    gain = report["gain_over_reference"]["nyuv2-mini"]["hitts"]
    # mIoU, pAcc, abs equal; rel 0.25 vs 0.5 is a 50 % gain: mean over four metrics 12.5 %
    assert gain["gain_percent"] == pytest.approx(12.5)
    assert gain["metrics"] == ["semseg/miou", "semseg/pacc", "depth/abs_err", "depth/rel_err"]


def test_a_perfect_prediction_scores_100_and_zero_error(exports, tmp_path):
    report = evaluate(exports, write_frames(tmp_path / "nyu", "perfect", count=1), "--num", "0")
    hitts = report["results"]["nyuv2-mini"]["hitts"]["metrics"]
    assert hitts["semseg"]["pacc"] == pytest.approx(100.0) and hitts["semseg"]["miou"] == pytest.approx(100.0)
    assert hitts["depth"]["abs_err"] == pytest.approx(0.0) and hitts["depth"]["rmse"] == pytest.approx(0.0)


def test_fresh_synthetic_scenes_match_an_independent_computation(exports, tmp_path):
    args = ["--num", "2", "--seed", str(SYN_SEED), "--height", str(SYN_H), "--width", str(SYN_W)]
    report = evaluate(exports, tmp_path / "no-frames", *args)
    assert "nyuv2-mini" not in report["results"]
    got = report["results"]["synthetic"]["hitts"]
    scenes = [generate_scene(SYN_SEED, "test", i, SYN_H, SYN_W) for i in range(2)]
    labels = np.concatenate([s["label"].ravel() for s in scenes])
    depth = np.concatenate([s["depth"].ravel() for s in scenes])
    normals = np.concatenate([s["normal"].reshape(-1, 3) for s in scenes])
    valid = depth > 0
    angles = np.degrees(np.arccos(np.clip(normals @ np.asarray(NORMAL), -1, 1)))
    assert got["metrics"]["semseg"]["pacc"] == pytest.approx(100 * np.mean(labels == LEFT_CLASS))
    assert got["metrics"]["depth"]["abs_err"] == pytest.approx(np.mean(np.abs(2.0 - depth[valid])), rel=1e-5)
    assert got["metrics"]["normals"]["mean_angle"] == pytest.approx(angles.mean(), abs=1e-3)
    assert got["seed"] == SYN_SEED and got["label_size"] == [SYN_H, SYN_W] and got["num_images"] == 2
    assert set(report["gain_over_reference"]["synthetic"]["hitts"]["metrics"]) >= {"normals/mean_angle"}


def test_update_manifest_feeds_the_header(exports, tmp_path):
    frames = write_frames(tmp_path / "nyu", "half")
    evaluate(exports, frames, "--num", "1", "--height", "16", "--width", "24", "--update-manifest")
    manifest = load_manifest(exports / "hitts")
    real = manifest.evaluations["nyuv2-mini"]
    assert real["metrics"]["semseg"]["pacc"] == pytest.approx(50.0) and real["variant"] == "fp32"
    assert real["model_sha256"] == current_digest(manifest)
    line = model_line(manifest, current_digest(manifest))
    assert "real NYUD-v2 frames (2): pixel acc 50.0 %, mIoU 25.0 %, depth abs 1.00 m, depth rel 0.25" in line
    assert "fresh synthetic test scenes (1, seed 2024): pixel acc" in line and "other model files" not in line


def test_without_update_manifest_the_manifests_stay_as_they_were(exports, tmp_path):
    before = (exports / "hitts" / "manifest.json").read_text()
    evaluate(exports, write_frames(tmp_path / "nyu", "half", count=1), "--num", "0")
    assert (exports / "hitts" / "manifest.json").read_text() == before
