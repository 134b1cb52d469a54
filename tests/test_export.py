"""ONNX export: every dashboard output, a manifest that describes it, parity with PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from trainer.export import MIN_AGREEMENT, export_run
from trainer.pipeline import dataset_for, load_run, task_specs

FLOAT_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def exported(pipeline_run: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out, _ = pipeline_run
    dirs = {}
    for method in ("hitts_pseudo", "mtl"):
        d = tmp_path_factory.mktemp(method)
        variants = method != "mtl"
        export_run(out / method, d, name="hitts" if variants else "mtl", fp16=variants, int8=variants)
        dirs[method] = d
    return dirs


@pytest.mark.slow
def test_manifest_describes_every_output(exported: dict[str, Path]) -> None:
    manifest = json.loads((exported["hitts_pseudo"] / "manifest.json").read_text())
    sess = ort.InferenceSession(str(exported["hitts_pseudo"] / manifest["onnx_file"]))
    names = {o.name for o in sess.get_outputs()}
    assert names == set(manifest["outputs"])
    for task in ("semseg", "depth", "normals"):
        for suffix in ("pred", "confidence", "label", "global_score", "fine_scores", "fine_tokens"):
            assert f"{task}_{suffix}" in names
    assert "affinity" in names
    tasks = {t["name"]: t for t in manifest["tasks"]}
    assert len(tasks["semseg"]["class_names"]) == 13 and len(tasks["semseg"]["palette"]) == 13
    assert len(tasks["depth"]["bin_centres"]) == 30 and len(tasks["normals"]["normal_centres"]) == 20
    assert tasks["depth"]["tau"] == 0.45  # NYUD-v2 one-label (paper, Appendix B)
    assert manifest["stage"] == 2 and manifest["trained_on"]["setting"] == "one-label"
    assert manifest["eval_split"] in ("val", "test") and "validation_images" in manifest["trained_on"]
    mtl = json.loads((exported["mtl"] / "manifest.json").read_text())
    assert not mtl["has_tokens"] and "affinity" not in mtl["outputs"]


@pytest.mark.slow
def test_onnx_matches_torch(
    exported: dict[str, Path], pipeline_run: tuple[Path, dict], data_root: Path
) -> None:
    out, _ = pipeline_run
    manifest = json.loads((exported["hitts_pseudo"] / "manifest.json").read_text())
    for name, stats in manifest["parity"].items():
        assert stats.get("agreement", 1.0) >= MIN_AGREEMENT, name
    # independent check on an image the export did not see: the last validation image
    cfg, model, quantisers, _ = load_run(out / "hitts_pseudo")
    specs = task_specs(cfg)
    image = dataset_for(cfg, data_root, "val", specs)[3]["image"].unsqueeze(0)
    sess = ort.InferenceSession(str(exported["hitts_pseudo"] / "model.onnx"))
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"image": image.numpy()})))
    with torch.no_grad():
        logits = model(image)["logits"]
    for s in specs:
        confidence, label = logits[s.name].softmax(1).max(1)
        assert np.mean(got[f"{s.name}_label"] == label.numpy()) >= MIN_AGREEMENT
        assert np.max(np.abs(got[f"{s.name}_confidence"] - confidence.numpy())) < FLOAT_TOLERANCE
    assert np.allclose(got["affinity"].sum(-1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_reduced_precision_variants_carry_their_own_parity(exported: dict[str, Path]) -> None:
    """fp16 and int8 (MatMul/Gemm weights) are optional; each is measured, not held to the fp32 bar."""
    manifest = json.loads((exported["hitts_pseudo"] / "manifest.json").read_text())
    for kind in ("fp16", "int8"):
        variant = manifest["quantized"][kind]
        assert "error" not in variant, variant.get("error")
        sess = ort.InferenceSession(str(exported["hitts_pseudo"] / variant["file"]))
        assert {o.name for o in sess.get_outputs()} == set(manifest["outputs"])
        assert variant["parity"]["semseg_label"]["agreement"] > 0.9
        assert variant["parity"]["depth_pred"]["max_abs_diff"] < 0.5  # metres


def test_topological_sort_puts_producers_first() -> None:
    import onnx
    from onnx import TensorProto, helper

    from trainer.export import topological_sort

    a = helper.make_node("Relu", ["x"], ["a"], name="a")
    b = helper.make_node("Neg", ["a"], ["b"], name="b")
    c = helper.make_node("Add", ["a", "b"], ["y"], name="c")
    graph = helper.make_graph(
        [c, b, a],  # consumers before producers, as the fp16 converter leaves its output Casts
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(model)
    topological_sort(model.graph)
    assert [n.name for n in model.graph.node] == ["a", "b", "c"]
    onnx.checker.check_model(model)


def test_run_figures_carry_validation_and_test_metrics(tmp_path: Path) -> None:
    from trainer.export import run_figures

    val = {"semseg": {"miou": 40.0, "pacc": 70.0}}
    test = {"semseg": {"miou": 30.0, "pacc": 60.0}}
    doc = {"epochs": 2, "val_metrics": val, "test_metrics": test, "eval_split": "test", "metrics": test}
    (tmp_path / "metrics.json").write_text(json.dumps(doc))
    assert run_figures(tmp_path) == {
        "metrics": test,
        "eval_split": "test",
        "val_metrics": val,
        "test_metrics": test,
    }
    (tmp_path / "metrics.json").write_text(json.dumps({"metrics": test, "eval_split": "test"}))
    assert run_figures(tmp_path) == {"metrics": test, "eval_split": "test"}  # no held-out scenes
    assert run_figures(tmp_path / "missing") == {"metrics": {}}


def test_synthetic_settings_come_from_the_data_folder(tmp_path: Path) -> None:
    from trainer.data.synthetic import META_FILE
    from trainer.export import synthetic_settings

    meta = {
        "generator": "g",
        "generator_version": "1.0",
        "seed": 3,
        "num_train": 9,
        "num_test": 2,
        "height": 8,
    }
    (tmp_path / META_FILE).write_text(json.dumps({**meta, "profile": "wide", "classes": ["a"]}))
    got = synthetic_settings(tmp_path)
    assert got == {
        "generator_version": "1.0",
        "profile": "wide",
        "seed": 3,
        "num_train": 9,
        "num_test": 2,
        "height": 8,
    }
    assert synthetic_settings(tmp_path / "elsewhere") == {}
