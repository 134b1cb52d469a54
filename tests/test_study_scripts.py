"""The study's choice rule and collector, on fabricated run folders (no training)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import collect_study  # noqa: E402
from study import CANDIDATES, Study, folder_for, main_parser  # noqa: E402

STL = {
    "semseg": {"miou": 40.0, "pacc": 80.0},
    "depth": {"abs_err": 0.5, "rmse": 0.7, "rel_err": 0.2},
    "normals": {
        "mean_angle": 20.0,
        "rmse_angle": 25.0,
        "within_11_25": 40.0,
        "within_22_5": 60.0,
        "within_30": 70.0,
    },
}


def scaled(miou: float) -> dict:
    return {**STL, "semseg": {"miou": miou, "pacc": 80.0}}


def write_run(
    out: Path,
    setting: str,
    seed: int,
    group: str,
    method: str,
    overrides: tuple[str, ...],
    val: dict,
    test: dict,
) -> None:
    folder = folder_for(out, setting, seed, group, overrides)
    (folder / method).mkdir(parents=True, exist_ok=True)
    (folder / "overrides.json").write_text(json.dumps(list(overrides)))
    (folder / method / "metrics.json").write_text(json.dumps({"val_metrics": val, "test_metrics": test}))
    (folder / method / "log.jsonl").write_text(json.dumps({"epoch": 0, "train/total": 1.0}) + "\n")


def test_the_rule_reads_validation_only_and_skips_unfinished_runs(tmp_path: Path) -> None:
    write_run(tmp_path, "one-label", 0, "stl", "stl", (), STL, STL)
    write_run(tmp_path, "one-label", 0, "hitts", "hitts", (), scaled(41.0), scaled(50.0))
    # best on test, worst on validation: the rule must not pick it
    write_run(
        tmp_path, "one-label", 0, "hitts", "hitts", CANDIDATES["small_init"], scaled(39.0), scaled(60.0)
    )
    write_run(
        tmp_path, "one-label", 0, "hitts", "hitts", CANDIDATES["gate_scale"], scaled(44.0), scaled(30.0)
    )
    best, overrides, scores = Study(main_parser().parse_args(["--out", str(tmp_path)])).choose()
    assert best == "gate_scale" and overrides == CANDIDATES["gate_scale"]
    assert scores["hitts"] == pytest.approx(100 * 1 / 40 / 9)  # +1 mIoU of 40, one metric of nine
    assert "bypass" not in scores  # no run: cannot win


def test_folders_are_keyed_by_their_overrides_in_any_order(tmp_path: Path) -> None:
    a = folder_for(tmp_path, "one-label", 1, "hitts", ("x=1", "y=2"))
    assert a == folder_for(tmp_path, "one-label", 1, "hitts", ("y=2", "x=1"))
    assert a != folder_for(tmp_path, "one-label", 1, "hitts", ("x=1",))
    assert folder_for(tmp_path, "one-label", 1, "stl", ()).name == "stl-base"


def test_collector_writes_per_seed_deltas_and_tables(tmp_path: Path) -> None:
    runs, results = tmp_path / "runs", tmp_path / "results"
    for seed, miou in ((0, 42.0), (1, 44.0)):
        write_run(runs, "one-label", seed, "stl", "stl", (), STL, STL)
        write_run(runs, "one-label", seed, "mtl", "mtl", (), STL, scaled(miou))
        write_run(runs, "one-label", seed, "hitts", "hitts", (), STL, scaled(miou - 4))
    (runs / "choice.json").write_text(json.dumps({"chosen": "hitts", "overrides": [], "rule": "test"}))
    assert collect_study.main([str(runs), "--results", str(results), "--exports", str(tmp_path / "ex")]) == 0
    block = json.loads((results / "synthetic-one-label.json").read_text())
    mtl = block["mtl"]
    assert mtl["seeds"] == [0, 1]
    assert mtl["per_seed"]["0"]["delta_mtl"] == pytest.approx(100 * 2 / 40 / 9)
    assert mtl["delta_mtl_mean"] == pytest.approx(100 * 3 / 40 / 9)
    assert mtl["delta_mtl_std"] > 0
    assert block["_meta"]["delta_mtl_metrics"][0] == "semseg/miou"
    assert "| MTL | 2 |" in (results / "tables.md").read_text()
    record = json.loads((tmp_path / "ex" / "synthetic-one-label-seed1" / "metrics.json").read_text())
    assert set(record) >= {"stl", "mtl", "_meta"}


def test_readme_study_blocks_are_the_committed_results() -> None:
    """README's diagnosis and final tables are generated (``collect_study.py --readme-only``) from the
    committed results/: a figure typed or edited by hand there fails here."""
    readme = (REPO / "README.md").read_text()
    for name, body in collect_study.readme_blocks(REPO / "results").items():
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        assert readme.split(start, 1)[1].split(end, 1)[0].strip() == body.strip(), name


def test_readme_only_rewrites_a_stale_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "a\n<!-- study-diagnosis:start -->\nstale\n<!-- study-diagnosis:end -->\nb\n"
        "<!-- study-final:start -->\n<!-- study-final:end -->\n"
    )
    assert (
        collect_study.main(["--readme-only", "--readme", str(readme), "--results", str(REPO / "results")])
        == 0
    )
    text = readme.read_text()
    assert "stale" not in text and "| HiTTs + gate scale (chosen) | **+0.85** |" in text
    assert text.startswith("a\n") and "\nb\n" in text
