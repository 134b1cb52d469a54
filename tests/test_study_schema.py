"""The shared names (hitts_schema): Delta_MTL on the paper's metric sets reproduces every printed Delta."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hitts_schema import (
    DEFAULT_METHODS,
    HIGHER_IS_BETTER,
    METHODS,
    delta_mtl,
    get_method,
    is_lower_better,
    metric_set_for,
)
from trainer.tasks import DATASET_TASKS

PAPER = json.loads((Path(__file__).parents[1] / "hitts_demo" / "data" / "paper_tables.json").read_text())[
    "tables"
]
PRINT_TOLERANCE = 0.015  # Delta is printed with 2 decimals from metrics printed with 2-4 decimals


def paper_rows(table: str) -> list[tuple[str, dict, dict, float]]:
    """(setting, row metrics, STL metrics of that setting, printed Delta) of every method row."""
    t = PAPER[table]
    out = []
    for row in t["rows"]:
        setting = row.get("setting", t.get("setting"))
        stl = next(
            r for r in t["rows"] if r["model"] == "STL" and r.get("setting", t.get("setting")) == setting
        )
        if row["model"] != "STL" and row.get("delta_mtl") is not None:
            out.append((setting, row["metrics"], stl["metrics"], row["delta_mtl"]))
    return out


@pytest.mark.parametrize("table", ["table1", "table2", "table3", "table4", "table5"])
def test_every_printed_delta_is_recomputed_from_its_metric_set(table: str) -> None:
    rows = paper_rows(table)
    assert len(rows) >= 4
    for setting, metrics, stl, printed in rows:
        got = delta_mtl(metrics, stl, metric_set_for(PAPER[table]["dataset"], setting))
        assert abs(got - printed) < PRINT_TOLERANCE, (table, setting, got, printed)


def test_metric_sets_are_the_tables_columns() -> None:
    assert len(metric_set_for("synthetic", "one-label")) == 9  # Table 1: no depth rel_err, no median angle
    assert ("depth", "rel_err") not in metric_set_for("nyud", "random-labels")
    assert metric_set_for("nyud", "full-labels") == (
        ("semseg", "miou"),
        ("depth", "abs_err"),
        ("normals", "mean_angle"),
    )
    assert [m for _, m in metric_set_for("pascal", "one-label")] == [
        "miou",
        "miou",
        "mean_angle",
        "miou",
        "odsf",
    ]
    with pytest.raises(KeyError, match="no metric set"):
        metric_set_for("kitti", "one-label")


def test_all_metrics_figure_differs_from_the_paper_set() -> None:
    """The secondary all-metrics Delta averages 11 NYUD metrics: rel_err and median angle change it."""
    ref = {"semseg": {"miou": 50.0, "pacc": 80.0}, "depth": {"abs_err": 0.5, "rel_err": 0.2, "rmse": 0.7}}
    mine = {"semseg": {"miou": 50.0, "pacc": 80.0}, "depth": {"abs_err": 0.5, "rel_err": 0.1, "rmse": 0.7}}
    assert delta_mtl(mine, ref, (("semseg", "miou"), ("depth", "abs_err"))) == 0.0
    assert delta_mtl(mine, ref) == pytest.approx(50.0 / 5)  # rel_err halved: +50 % on one of five


def test_a_missing_metric_of_the_set_is_an_error_not_a_smaller_average() -> None:
    with pytest.raises(ValueError, match="depth/rmse"):
        delta_mtl(
            {"depth": {"abs_err": 1.0}},
            {"depth": {"abs_err": 1.0}},
            (("depth", "abs_err"), ("depth", "rmse")),
        )


def test_trainer_metric_directions_come_from_the_schema() -> None:
    for specs in DATASET_TASKS.values():
        for spec in specs:
            for metric in spec.metrics:
                assert metric.higher_is_better == HIGHER_IS_BETTER[metric.name]
    assert is_lower_better("abs_err") and not is_lower_better("miou")


def test_method_registry() -> None:
    assert set(DEFAULT_METHODS) <= set(METHODS)
    assert get_method("hitts_pseudo").loss_terms == ("L_s", "L_p", "L_f")
    assert get_method("hitts_no_inter").model_switches == (("use_inter_task", False),)
    with pytest.raises(ValueError, match="valid"):
        get_method("hitts_typo")


def test_val_metrics_nests_the_validation_entries_of_a_log_record() -> None:
    from hitts_schema import val_metrics

    record = {
        "epoch": 2,
        "train/total": 1.5,
        "val/semseg/miou": 40.0,
        "val/depth/abs_err": 0.5,
        "val/semseg/pacc": 80.0,
    }
    assert val_metrics(record) == {"semseg": {"miou": 40.0, "pacc": 80.0}, "depth": {"abs_err": 0.5}}
    assert val_metrics({"epoch": 0}) == {}


def test_gain_over_averages_the_held_pairs_and_skips_nan_and_zero_references() -> None:
    from hitts_schema import gain_over

    pairs = [("semseg", "miou"), ("depth", "abs_err"), ("depth", "rel_err"), ("normals", "mean_angle")]
    model = {"semseg": {"miou": 44.0}, "depth": {"abs_err": 0.45, "rel_err": float("nan")}}
    reference = {
        "semseg": {"miou": 40.0},
        "depth": {"abs_err": 0.5, "rel_err": 0.2},
        "normals": {"mean_angle": 0.0},
    }
    got = gain_over(model, reference, pairs)  # +10 % mIoU, +10 % depth abs (lower is better)
    assert got["metrics"] == ["semseg/miou", "depth/abs_err"]
    assert got["gain_percent"] == pytest.approx(10.0)
    assert gain_over({}, reference, pairs) == {"gain_percent": None, "metrics": []}
