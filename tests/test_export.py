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


def _nyud_tasks() -> tuple[tuple, dict]:
    from trainer.quantise import ClassQuantiser, DepthBins, NormalCentres
    from trainer.tasks import DATASET_TASKS

    specs = DATASET_TASKS["nyud"]
    quantisers = {
        "semseg": ClassQuantiser(specs[0].num_outputs),
        "depth": DepthBins(0.5, 10.0, specs[1].num_outputs),
        "normals": NormalCentres(
            torch.randn(specs[2].num_outputs, 3, generator=torch.Generator().manual_seed(1))
        ),
    }
    return specs, quantisers


@pytest.mark.parametrize("size", [(48, 64), (45, 70), (12, 16)])
def test_channels_last_outputs_equal_the_reference(size: tuple[int, int]) -> None:
    """The export's channels-last maths = ``logits_to_outputs`` of the upsampled logits (the
    evaluation's), for classes, depth bins and normal centres, at integer and odd upsampling ratios."""
    from trainer.export import channels_last_outputs
    from trainer.models.heads import resize_to
    from trainer.quantise import logits_to_outputs

    specs, quantisers = _nyud_tasks()
    g = torch.Generator().manual_seed(0)
    for s in specs:
        logits = torch.randn(2, s.num_outputs, 6, 8, generator=g) * 4
        ref = logits_to_outputs(s, resize_to(logits, size), quantisers[s.name])
        got = channels_last_outputs(s, logits, quantisers[s.name], size)
        assert set(got) == set(ref)
        for k in ref:
            assert got[k].shape == ref[k].shape and got[k].dtype == ref[k].dtype, (s.name, k)
            if ref[k].is_floating_point():
                torch.testing.assert_close(got[k], ref[k], atol=1e-5, rtol=1e-5)
            else:
                assert (got[k] == ref[k]).float().mean() > 0.999, (s.name, k)


class _Outputs(torch.nn.Module):
    """Head-resolution logits -> the export's dashboard outputs of every NYUD task."""

    def __init__(self, specs: tuple, quantisers: dict, size: tuple[int, int]) -> None:
        super().__init__()
        self.specs, self.quantisers, self.size = specs, quantisers, size

    def forward(self, *logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from trainer.export import dashboard_outputs

        out = []
        for s, x in zip(self.specs, logits):
            o = dashboard_outputs(s, x, self.quantisers[s.name], self.size)
            out += [o["pred"], o["confidence"], o["label"]]
        return tuple(out)


@pytest.mark.slow  # an ONNX export and an ONNX Runtime session (4 s)
def test_exported_outputs_run_channels_last_and_match_pytorch(tmp_path: Path) -> None:
    """In the ONNX graph the upsampling is one channels-last Resize per task (no NCHW reduction over
    classes at full resolution), and ONNX Runtime reproduces PyTorch's outputs."""
    import onnx

    specs, quantisers = _nyud_tasks()
    module = _Outputs(specs, quantisers, (48, 64)).eval()
    g = torch.Generator().manual_seed(2)
    inputs = tuple(torch.randn(1, s.num_outputs, 6, 8, generator=g) * 4 for s in specs)
    path = tmp_path / "outputs.onnx"
    names = [f"{s.name}_{k}" for s in specs for k in ("pred", "confidence", "label")]
    torch.onnx.export(
        module,
        inputs,
        str(path),
        input_names=[s.name for s in specs],
        output_names=names,
        opset_version=18,
        dynamo=True,
    )
    model = onnx.load(str(path))
    resizes = [n for n in model.graph.node if n.op_type == "Resize"]
    assert len(resizes) == len(specs)
    assert [_axis(n) for n in model.graph.node if n.op_type == "ArgMax"] == [-1] * len(specs)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = dict(zip(names, sess.run(names, {s.name: x.numpy() for s, x in zip(specs, inputs)})))
    with torch.no_grad():
        ref = dict(zip(names, (t.numpy() for t in module(*inputs))))
    for n in names:
        assert got[n].shape == ref[n].shape and got[n].dtype == ref[n].dtype, n
        if np.issubdtype(ref[n].dtype, np.floating):
            assert np.max(np.abs(got[n] - ref[n])) < 1e-4, n
        else:
            assert np.mean(got[n] == ref[n]) > 0.999, n


def _axis(node) -> int | None:
    import onnx

    for a in node.attribute:
        if a.name == "axis":
            return onnx.helper.get_attribute_value(a)
    return None


@pytest.mark.parametrize(
    "arch,backbone",
    [("hitts", "efficientnet_lite0"), ("mtl", "efficientnet_lite0"), ("stl", "segnet"), ("hitts", "segnet")],
)
def test_wrapper_outputs_equal_the_evaluation_outputs(arch: str, backbone: str) -> None:
    """The export wrapper reads head-resolution logits and upsamples them itself: its outputs are the
    evaluation's ``logits_to_outputs`` of the model's full-size logits (stride-8 and stride-1 layouts)."""
    from trainer.config import ModelConfig
    from trainer.export import ExportWrapper
    from trainer.models import build_model
    from trainer.quantise import logits_to_outputs

    specs, quantisers = _nyud_tasks()
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(arch=arch, backbone=backbone, pretrained=False, width=16, fine_mlp_hidden=16), specs
    )
    model.eval()
    image = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        out = model(image)
        wrapper = ExportWrapper(
            model, specs, quantisers, bool(out.get("fine_tokens")), out.get("affinity") is not None
        )
        got = dict(zip(wrapper.output_names, wrapper(image)))
    for s in specs:
        ref = logits_to_outputs(s, out["logits"][s.name], quantisers[s.name])
        for k in ("pred", "confidence", "label"):
            if ref[k].is_floating_point():
                torch.testing.assert_close(got[f"{s.name}_{k}"], ref[k], atol=1e-5, rtol=1e-5)
            else:
                assert torch.equal(got[f"{s.name}_{k}"], ref[k]), (arch, backbone, s.name, k)


def test_trained_on_counts_the_epochs_a_stopped_run_trained(tmp_path: Path) -> None:
    from fixtures_data import write_nyud_fixture

    from trainer.config import apply_overrides, preset_config
    from trainer.export import _trained_on
    from trainer.runs import task_specs

    root = write_nyud_fixture(tmp_path / "d", n_train=4, n_val=2, height=16, width=24)
    cfg = apply_overrides(preset_config("smoke", "nyud", "one-label"), ["train.epochs=6"])
    run = tmp_path / "run"
    run.mkdir()
    assert _trained_on(cfg, str(root), task_specs(cfg), run)["epochs"] == 6  # no metrics.json: as scheduled
    (run / "metrics.json").write_text(json.dumps({"epochs": 6, "epochs_done": 3, "stopped": "deadline"}))
    got = _trained_on(cfg, str(root), task_specs(cfg), run)
    assert (got["epochs"], got["epochs_scheduled"], got["stopped"], got["num_train"]) == (3, 6, "deadline", 4)
    assert "history" not in got
    (run / "metrics.json").write_text(json.dumps({"epochs": 6, "epochs_done": 6, "history": "4-6 on CPU"}))
    got = _trained_on(cfg, str(root), task_specs(cfg), run)  # finished in two goes: said, not "stopped"
    assert (got["epochs"], got["history"], "stopped" in got) == (6, "4-6 on CPU", False)
