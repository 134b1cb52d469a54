"""Two-stage pipeline end to end on a tiny fixture: stage 1, discovery (tau rule), stage 2, export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pipeline_fixtures import tiny_config

from trainer.config import apply_overrides, preset_config
from trainer.discovery import DiscoveredTargets, DiscoveryError, discover
from trainer.pipeline import (
    METRICS_NAME,
    dataset_for,
    ensure_split,
    load_run,
    method_config,
    run_discovery,
    run_pipeline,
    task_specs,
)


@pytest.mark.slow
def test_pipeline_writes_every_method_with_delta(pipeline_run: tuple[Path, dict]) -> None:
    out, summary = pipeline_run
    written = json.loads((out / METRICS_NAME).read_text())
    for method in ("stl", "mtl", "hitts", "hitts_pseudo"):
        entry = written[method]
        assert set(entry) >= {"semseg", "depth", "normals", "delta_mtl"}
        assert 0.0 <= entry["semseg"]["miou"] <= 100.0
        assert entry["depth"]["abs_err"] > 0
    assert written["stl"]["delta_mtl"] == pytest.approx(0.0)
    split = json.loads((out / "split.json").read_text())
    assert all(len(tasks) == 1 for tasks in split["images"].values())  # one-label
    # stage 2 saw pseudo labels and feature targets: its log has L_p and L_f terms
    log = [json.loads(line) for line in (out / "hitts_pseudo" / "log.jsonl").read_text().splitlines()]
    assert "train/L_p" in log[0] and "train/L_f" in log[0]
    assert json.loads((out / "hitts_pseudo" / "config.json").read_text())["stage"] == 2


@pytest.mark.slow
def test_discovery_masks_follow_tau_exactly(
    pipeline_run: tuple[Path, dict], data_root: Path, tmp_path: Path
) -> None:
    out, _ = pipeline_run
    cfg, model, _, _ = load_run(out / "hitts")
    specs = task_specs(cfg)
    clean = dataset_for(cfg, data_root, "train", specs)
    with torch.no_grad():
        logits = model(torch.stack([clean[i]["image"] for i in range(len(clean))]))["logits"]
    # tau = the median confidence of each task, so that about half of the pixels are kept
    taus = {s.name: float(logits[s.name].softmax(1).amax(1).median()) for s in specs}
    discover(model, clean, specs, taus, tmp_path, torch.device("cpu"), batch_size=len(clean))
    targets = DiscoveredTargets(tmp_path, specs, len(clean))
    checked = 0
    for s in specs:
        confidence, label = logits[s.name].softmax(1).max(1)
        for i in range(len(clean)):
            t = targets(i)
            expected = (confidence[i] > taus[s.name]).numpy()
            assert np.array_equal(t[f"pseudo_mask/{s.name}"] == 1, expected)
            assert np.array_equal(t[f"pseudo/{s.name}"], label[i].numpy())
            checked += int(expected.sum())
        assert t[f"feature_target/{s.name}"].shape[0] == cfg.model.width
    assert checked > 0  # the thresholds keep something, so the comparison is not vacuous


@pytest.mark.slow
def test_incomplete_discovery_is_refused_then_completed(
    pipeline_run: tuple[Path, dict], data_root: Path, tmp_path: Path
) -> None:
    out, _ = pipeline_run
    cfg, *_ = load_run(out / "hitts")
    specs = task_specs(cfg)
    n = len(dataset_for(cfg, data_root, "train", specs))
    complete = run_discovery(out / "hitts", data_root, tmp_path)
    (tmp_path / "manifest.json").unlink()  # as if killed before the manifest was written
    sorted((tmp_path / "images").glob("*.npz"))[-1].unlink()
    with pytest.raises(DiscoveryError, match="incomplete"):
        DiscoveredTargets(tmp_path, specs, n)
    resumed = run_discovery(out / "hitts", data_root, tmp_path)  # resumes, writes only the missing file
    assert resumed["coverage"] == pytest.approx(complete["coverage"])  # counted over the whole folder
    assert resumed["feature_shape"] == complete["feature_shape"]
    assert len(list((tmp_path / "images").glob("*.npz"))) == n
    DiscoveredTargets(tmp_path, specs, n)


@pytest.mark.slow
def test_stage1_loss_falls(synthetic_root: Path, tmp_path: Path) -> None:
    from trainer.pipeline import ensure_quantisers, train_method

    cfg = method_config(tiny_config("full-labels", epochs=6), "hitts")
    cfg = apply_overrides(cfg, ["train.lr=0.003", "data.augment=false"])
    specs = task_specs(cfg)
    mask = ensure_split(cfg, synthetic_root, specs, tmp_path / "split.json")
    quantisers = ensure_quantisers(cfg, synthetic_root, specs, mask, tmp_path / "q.json")
    train_method(cfg, synthetic_root, tmp_path / "hitts", mask, quantisers)
    log = [json.loads(line) for line in (tmp_path / "hitts" / "log.jsonl").read_text().splitlines()]
    first, last = log[0]["train/L_s"], (log[-1]["train/L_s"] + log[-2]["train/L_s"]) / 2
    assert last < 0.8 * first, [round(r["train/L_s"], 3) for r in log]


def test_unknown_choices_fail_before_work(data_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid"):
        apply_overrides(tiny_config(), ['model.backbone="vgg"'])
    with pytest.raises(ValueError, match="valid"):
        preset_config("smoke", "nyud", "two-labels")
    with pytest.raises(ValueError, match="valid"):
        run_pipeline(tiny_config(), data_root, tmp_path, ["stl", "hitts_magic"])
    assert not any(tmp_path.iterdir())  # nothing was written
    from trainer.tasks import tasks_for

    with pytest.raises(ValueError, match="valid"):
        tasks_for("nyud", ["semseg", "edges"])
