"""The header's honest line per model (hitts_demo.provenance), from new and old manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_export import make_fake_export

from hitts_demo.manifest import load_manifest, model_digest
from hitts_demo.provenance import NOT_MEASURED, current_digest, model_line
from hitts_demo.service import Studio

SEMSEG = {"miou": 12.34, "pacc": 43.04}
DEPTH = {"abs_err": 1.234, "rel_err": 0.441, "rmse": 1.5}
NORMALS = {"mean_angle": 31.26}


def export_with(folder: Path, **fields) -> Path:
    """A fake export whose manifest gets ``fields`` (None deletes a key)."""
    make_fake_export(folder)
    path = folder / "manifest.json"
    raw = json.loads(path.read_text())
    for key, value in fields.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    path.write_text(json.dumps(raw))
    return folder


def full_fields(digest: str = "") -> dict:
    return {
        "stage": 2,
        "trained_on": {
            "dataset": "synthetic",
            "setting": "one-label",
            "num_train": 795,
            "validation_images": 100,
            "epochs": 40,
            "input_size": [288, 384],
            "synthetic": {"profile": "nyu", "seed": 0, "num_train": 795},
        },
        "eval_split": "test",
        "metrics": {"semseg": {"miou": 50.0, "pacc": 80.0}},
        "val_metrics": {
            "semseg": {"miou": 39.91, "pacc": 74.56},
            "depth": {"abs_err": 0.49, "rel_err": 0.18},
        },
        "evaluations": {
            "nyuv2-mini": {
                "num_images": 10,
                "metrics": {"semseg": SEMSEG, "depth": DEPTH},
                "not_measured": {"normals": "no ground truth"},
                "model_sha256": digest,
            },
            "synthetic": {
                "num_images": 20,
                "seed": 7,
                "profile": "nyu",
                "metrics": {"semseg": SEMSEG, "normals": NORMALS},
            },
        },
    }


def test_a_full_manifest_gives_training_validation_and_real_frame_figures(tmp_path):
    folder = export_with(tmp_path / "hitts")
    export_with(folder, **full_fields(model_digest(folder / "model.onnx")))
    m = load_manifest(folder)
    line = model_line(m, current_digest(m))
    assert (
        "**hitts** trained on synthetic scenes only (695 scenes + 100 held out, profile nyu, seed 0; " in line
    )
    assert "288x384, 40 epochs, stage 2, one-label)" in line
    assert "validation, held-out validation scenes (100): pixel acc 74.6 %, mIoU 39.9 %" in line
    assert "depth abs 0.49 m, depth rel 0.18, normals not measured" in line
    assert (
        "real NYUD-v2 frames (10): pixel acc 43.0 %, mIoU 12.3 %, depth abs 1.23 m, depth rel 0.44, "
        "normals not measured (no ground truth)" in line
    )
    assert (
        "fresh synthetic test scenes (20, seed 7, profile nyu): pixel acc 43.0 %, mIoU 12.3 %, normals mean 31.3°"
        in line
    )
    assert "other model files" not in line


def test_a_run_stopped_early_says_how_many_of_its_epochs_it_trained(tmp_path):
    fields = full_fields()
    fields["trained_on"].update(epochs=3, epochs_scheduled=6, stopped="deadline")
    m = load_manifest(export_with(tmp_path / "hitts", **fields))
    assert "288x384, 3 of 6 scheduled epochs (stopped early), stage 2" in model_line(m, current_digest(m))


def test_the_training_history_follows_the_training_data(tmp_path):
    """A model tailed on another profile says so: the profile and epochs alone would hide it."""
    fields = full_fields()
    fields["trained_on"]["history"] = "epochs 1-6 on the 'wide' scenes; 7-8 on the 'wide_walls' scenes"
    m = load_manifest(export_with(tmp_path / "mtl", **fields))
    assert (
        "stage 2, one-label): epochs 1-6 on the 'wide' scenes; 7-8 on the 'wide_walls' scenes · "
        in model_line(m)
    )
    fields["trained_on"]["history"] = "  "
    m = load_manifest(export_with(tmp_path / "mtl", **fields))
    assert "stage 2, one-label) · " in model_line(m)


def test_only_hitts_says_its_stage(tmp_path):
    """The MTL baseline has no stages: its header does not say "stage 1"."""
    fields = full_fields()
    fields["stage"] = 1
    hitts = load_manifest(export_with(tmp_path / "hitts", **fields))
    assert "288x384, 40 epochs, stage 1, one-label)" in model_line(hitts)
    export_with(tmp_path / "mtl", **fields)
    raw = json.loads((tmp_path / "mtl" / "manifest.json").read_text())
    raw["arch"] = "mtl"
    (tmp_path / "mtl" / "manifest.json").write_text(json.dumps(raw))
    mtl = load_manifest(tmp_path / "mtl")
    assert mtl.arch == "mtl"
    assert "288x384, 40 epochs, one-label)" in model_line(mtl)


def test_figures_measured_on_other_model_files_are_flagged(tmp_path):
    folder = export_with(tmp_path / "hitts", **full_fields("0" * 64))
    m = load_manifest(folder)
    assert "(measured on other model files: re-run scripts/evaluate_shipped.py)" in model_line(
        m, current_digest(m)
    )


@pytest.mark.parametrize("metrics", [None, {"semseg": SEMSEG}])
def test_an_old_manifest_loads_and_says_not_measured(tmp_path, metrics):
    """A manifest from before these fields (no stage, eval_split, val_metrics, evaluations, generator)."""
    old = {"stage": None, "eval_split": None, "val_metrics": None, "evaluations": None, "metrics": metrics}
    folder = export_with(tmp_path / "mtl", **old)
    m = load_manifest(folder)
    line = model_line(m, current_digest(m))
    assert f"real NYUD-v2 frames: {NOT_MEASURED}" in line
    assert "fresh synthetic" not in line
    if metrics is None:
        assert f"validation: {NOT_MEASURED}" in line
    else:
        assert "synthetic evaluation, split not recorded: pixel acc 43.0 %, mIoU 12.3 %" in line


def test_malformed_figures_read_as_not_measured(tmp_path):
    folder = export_with(tmp_path / "hitts", evaluations={"nyuv2-mini": {"metrics": "oops"}}, val_metrics=[1])
    m = load_manifest(folder)
    assert f"real NYUD-v2 frames: {NOT_MEASURED}" in model_line(m)


def test_the_header_shows_one_line_per_model(tmp_path):
    export_with(tmp_path / "exports" / "hitts", **full_fields())
    export_with(tmp_path / "exports" / "mtl", name="mtl", arch="mtl")
    text = Studio(tmp_path / "exports").status_markdown()
    assert text.count("↳ trained on") == 2
    assert (
        "real NYUD-v2 frames (10): pixel acc 43.0 %" in text
        and f"real NYUD-v2 frames: {NOT_MEASURED}" in text
    )
