"""The default-model record scripts: ``finish_stopped_run.py`` (test figures of a run stopped before
its last epoch), ``collect_defaults.py`` (the tables and the shipping rules) and ``cpu_recipe.sh``
(the CPU scripts' shared shell functions)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import collect_defaults  # noqa: E402
import finish_stopped_run  # noqa: E402


@pytest.mark.slow
def test_a_finished_stopped_run_has_the_test_figures_a_finished_run_has(
    pipeline_run: tuple[Path, dict], data_root: Path, tmp_path: Path
) -> None:
    out, _ = pipeline_run
    run = tmp_path / "hitts"
    shutil.copytree(out / "hitts", run)
    finished = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").unlink()  # as if the process had been killed after its last checkpoint
    result = finish_stopped_run.finish(run, str(data_root), "stopped for the test")
    assert result["stopped"] == "stopped for the test"
    assert result["epochs_done"] == result["epochs"] == 2
    for task, metrics in finished["metrics"].items():  # same weights, same code, same scenes
        for name, value in metrics.items():
            assert result["test_metrics"][task][name] == pytest.approx(value, rel=1e-5, abs=1e-6), (
                task,
                name,
            )
    assert json.loads((run / "metrics.json").read_text())["stopped"] == "stopped for the test"
    with pytest.raises(SystemExit, match="already has"):
        finish_stopped_run.finish(run, str(data_root))


def _log(miou: float, pacc: float, depth_abs: float, depth_rel: float, normals: float) -> dict:
    return {
        "epoch": 0,
        "val/semseg/miou": miou,
        "val/semseg/pacc": pacc,
        "val/depth/abs_err": depth_abs,
        "val/depth/rel_err": depth_rel,
        "val/normals/mean_angle": normals,
    }


def test_validation_gain_is_the_mean_relative_gain_over_the_mtl_run() -> None:
    mtl = {"log": [_log(10, 10, 1, 1, 1), _log(50.0, 80.0, 0.5, 0.2, 20.0)]}
    # +10 % mIoU, 0 pAcc, -10 % depth abs (higher is worse), +10 % rel (lower), normals equal
    hitts = {"log": [_log(55.0, 80.0, 0.55, 0.18, 20.0)]}
    assert collect_defaults.val_gain(hitts, mtl) == "+2.00 %"
    assert collect_defaults.val_gain(mtl, mtl) == "ref"
    assert collect_defaults.val_gain(hitts, None) == "–"
    assert collect_defaults.val_gain({"log": []}, mtl) == "–"


def test_the_epoch_table_has_a_row_per_epoch_with_its_gain_over_the_references_last_epoch() -> None:
    mtl = {"log": [_log(10, 10, 1, 1, 1), _log(50.0, 80.0, 0.5, 0.2, 20.0)]}
    hitts = {"log": [_log(45.0, 80.0, 0.5, 0.2, 20.0), _log(55.0, 80.0, 0.55, 0.18, 20.0)]}
    rows = collect_defaults.epoch_table({"wide/mtl-pipeline/mtl": mtl, "wide/hitts": hitts})[2:]
    assert len(rows) == 4
    assert rows[0].endswith("| 1 | 10.00 | 10.00 | 1.00 | 1.00 | 1.00 | ref |")
    assert rows[2].split(" | ")[1:3] == ["1", "45.00"] and rows[2].endswith("| -2.00 % |")
    assert rows[3].endswith("| +2.00 % |")  # the same figures as test_validation_gain above


def test_stage_2_is_compared_with_its_teacher_and_its_mtl_on_validation_and_test() -> None:
    """Only the mIoU differs: on validation (five metrics) each gain is a fifth of the relative mIoU
    gain, on test (``_run`` records only the mIoU) the whole of it; the test gain waits for a test split."""
    runs = {
        "walls-tail/hitts": _run(8, 50.0),
        "walls-tail/mtl": _run(8, 40.0),
        "walls-tail/hitts_pseudo": _run(8, 60.0),
    }
    rows = collect_defaults.teacher_table(runs)[2:]
    assert len(rows) == 1 and "| 8 / 6 | +4.00 % | +20.00 % | +10.00 % | +50.00 % |" in rows[0]
    runs["walls-tail/hitts_pseudo"]["metrics"] = {}
    assert collect_defaults.teacher_table(runs)[2].endswith("| +4.00 % | – | +10.00 % | – |")


def _run(epochs_done: int, miou: float, stopped: str = "", epochs: int = 6) -> dict:
    logs = [_log(miou, 80.0, 0.5, 0.2, 20.0)] * epochs_done
    metrics = {"test_metrics": {"semseg": {"miou": miou}}, **({"stopped": stopped} if stopped else {})}
    return {"config": {"train": {"epochs": epochs}}, "log": logs, "metrics": metrics}


def _real_frames_report(export: str, real_gain: float | None, reference: str = "hitts") -> dict:
    """An evaluate_shipped.py report holding ``export``'s real-frame gain over ``reference`` (none: absent)."""
    gains = {} if real_gain is None else {export: {"gain_percent": real_gain, "metrics": ["m"]}}
    return {"reference": reference, "gain_over_reference": {"nyuv2-mini": gains}}


def test_the_shipping_rule_waits_for_both_runs_then_picks_by_validation_gain() -> None:
    """Only the mIoU differs between these runs, so each gain is a fifth of the relative mIoU gain."""
    runs = {
        "wide/hitts": _run(3, 50.0, stopped="deadline"),
        "wide/hitts_pseudo": _run(3, 55.0, stopped="cpu"),
        "wide/mtl-pipeline/mtl": _run(3, 60.0, stopped="deadline"),
        "wide-full/hitts": _run(5, 62.0),  # one epoch to go
        "wide-full/mtl": _run(6, 66.0),
    }
    assert collect_defaults.choose_shipped(runs) == {"decided": False, "why": "waiting for wide-full/hitts"}
    runs["wide-full/hitts"] = _run(6, 62.0)
    choice = collect_defaults.choose_shipped(runs)
    assert choice["decided"] and choice["mtl"] == "wide-full/mtl"
    assert choice["mtl_val_gain_over_3_epochs"] == pytest.approx(2.0)  # (66 - 60) / 60 / 5
    assert choice["hitts"] == "wide-full/hitts"
    assert choice["hitts_val_gain_over_shipped_mtl"]["wide/hitts"] == pytest.approx(-16 / 66 / 5 * 100)
    runs["wide-full/mtl"] = _run(6, 59.0)  # the longer MTL is worse on validation: the 3-epoch one stays
    runs["wide-full/hitts"] = _run(6, 54.0)
    choice = collect_defaults.choose_shipped(runs)
    assert choice["mtl"] == "wide/mtl-pipeline/mtl" and choice["hitts"] == "wide/hitts_pseudo"
    runs["wide-full/hitts_pseudo"] = _run(5, 70.0)  # a later candidate counts once finished
    assert collect_defaults.choose_shipped(runs)["hitts"] == "wide/hitts_pseudo"
    runs["wide-full/hitts_pseudo"] = _run(6, 70.0)
    assert collect_defaults.choose_shipped(runs)["hitts"] == "wide-full/hitts_pseudo"


def test_median_scaling_removes_a_pure_scale_error_and_the_class_table_reads_the_confusion() -> None:
    import diagnose_real_frames as diag

    target = np.array([[1.0, 2.0], [4.0, 0.0]])  # 0 = missing: ignored
    ratio, rel, scaled = diag.median_scaled_rel(target * 1.5, target)
    assert (ratio, rel, scaled) == pytest.approx((1.5, 0.5, 0.0))
    confusion = np.array([[3, 1], [6, 0]])  # truth rows: class a 4 pixels, class b 6 (all called a)
    rows = diag.class_table(confusion, ["a", "b"])
    assert [r["labelled_percent"] for r in rows] == pytest.approx([40.0, 60.0])
    assert [r["predicted_percent"] for r in rows] == pytest.approx([90.0, 10.0])
    assert [r["recall_percent"] for r in rows] == pytest.approx([75.0, 0.0])
    assert diag.class_table(np.zeros((1, 1), np.int64), ["c"])[0]["recall_percent"] is None


def test_the_walls_tail_rule_needs_both_a_validation_win_over_its_mtl_and_real_frames_gained() -> None:
    def tail(epochs_done: int, miou: float) -> dict:
        return _run(epochs_done, miou, epochs=8)

    def report(real_gain: float | None, reference: str = "hitts") -> dict:
        return _real_frames_report("hitts_walls", real_gain, reference)

    runs = {"walls-tail/hitts": tail(7, 62.0), "walls-tail/mtl": tail(8, 60.0)}
    assert not collect_defaults.choose_walls_tail(runs, report(1.0))["decided"]  # one epoch to go
    runs["walls-tail/hitts"] = tail(8, 62.0)  # beats its MTL on validation: +0.67 %
    assert not collect_defaults.choose_walls_tail(runs, report(None))["decided"]  # not measured yet
    assert not collect_defaults.choose_walls_tail(runs, report(1.0, reference="mtl"))["decided"]
    choice = collect_defaults.choose_walls_tail(runs, report(1.0))
    assert choice["decided"] and choice["ship_tail"]
    assert choice["tail_hitts_val_gain_over_tail_mtl"] == pytest.approx(2 / 60 / 5 * 100)
    assert not collect_defaults.choose_walls_tail(runs, report(-0.5))["ship_tail"]  # real frames not gained
    runs["walls-tail/mtl"] = tail(8, 63.0)  # the tail HiTTs loses to its MTL: the tail is not shipped
    assert not collect_defaults.choose_walls_tail(runs, report(5.0))["ship_tail"]


def test_the_walls_stage2_rule_ships_it_with_the_tail_mtl_on_a_validation_win_and_real_frames_gained() -> (
    None
):
    def run(epochs_done: int, miou: float) -> dict:
        return _run(epochs_done, miou, epochs=8)

    def report(real_gain: float, export: str = "hitts_walls_pseudo") -> dict:
        return _real_frames_report(export, real_gain)

    # the tail HiTTs lost to the tail MTL; only the stage-2 run's own figures count
    runs = {"walls-tail/hitts": run(8, 50.0), "walls-tail/mtl": run(8, 60.0)}
    runs["walls-tail/hitts_pseudo"] = run(7, 66.0)
    assert not collect_defaults.choose_walls_stage2(runs, report(1.0))["decided"]  # one epoch to go
    runs["walls-tail/hitts_pseudo"] = run(8, 66.0)  # +10 % mIoU, the rest equal: +2 %
    assert not collect_defaults.choose_walls_stage2(runs, report(1.0, export="hitts_walls"))["decided"]
    choice = collect_defaults.choose_walls_stage2(runs, report(1.0))
    assert choice["decided"] and choice["ship"]
    assert (choice["hitts"], choice["mtl"]) == ("walls-tail/hitts_pseudo", "walls-tail/mtl")
    assert choice["stage2_val_gain_over_tail_mtl"] == pytest.approx(2.0)
    assert choice["stage2_real_frame_gain_over_shipped_hitts"] == 1.0
    assert not collect_defaults.choose_walls_stage2(runs, report(-0.1))["ship"]  # real frames not gained
    runs["walls-tail/hitts_pseudo"] = run(8, 59.0)  # loses to the tail MTL on validation
    assert not collect_defaults.choose_walls_stage2(runs, report(9.0))["ship"]


def test_continue_pair_copies_each_run_once_and_resumes_it_with_the_recipe(tmp_path: Path) -> None:
    """scripts/cpu_recipe.sh's continue_pair with a stand-in trainer: each source folder is copied once,
    the copy (not the source) is resumed with the shipped recipe, the shared split and the new epoch
    count at one thread, a finished copy is skipped; stamp_history writes "history" into metrics.json."""
    import os
    import subprocess

    import train_defaults

    shared, out = tmp_path / "wide", tmp_path / "tail"
    shared.mkdir()
    (shared / "split.json").write_text("{}")
    (shared / "quantisers.json").write_text('{"q": 1}')
    sources = {}
    for arch in ("hitts", "mtl"):
        src = sources[arch] = tmp_path / f"src-{arch}"
        src.mkdir()
        for name in ("checkpoint.pt", "config.json", "log.jsonl"):
            (src / name).write_text(f"{arch} {name}")
    calls = tmp_path / "calls"
    fake = tmp_path / "py"  # runs python -c (the recipe); records `-m trainer ...` with its thread count
    fake.write_text(
        f'#!/bin/bash\nif [ "$1" = -m ]; then echo "OMP=$OMP_NUM_THREADS $*" >> {calls}; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    fake.chmod(0o755)
    script = (
        f"source {REPO / 'scripts/cpu_recipe.sh'}; cd {REPO}; "
        f"continue_pair {out} DATA 8 {shared} {sources['hitts']} {sources['mtl']} --discovery DISC"
    )
    env = {**os.environ, "PY": str(fake)}
    env.pop("OMP_NUM_THREADS", None)
    subprocess.run(["bash", "-c", script], check=True, env=env)
    lines = calls.read_text().splitlines()
    assert len(lines) == 2
    for arch in ("hitts", "mtl"):
        line = next(x for x in lines if f"--arch {arch} " in x)
        assert line.startswith("OMP=1 -m trainer train") and "--resume" in line
        assert f"--out {out / arch} " in line and f"--split {shared / 'split.json'} " in line
        assert "--set train.epochs=8" in line and "--set data.cache_in_memory=false" in line
        assert ("--discovery DISC --resume" in line) == (arch == "hitts")  # the HiTTs run's own arguments
        switches = [f"--set {s}" in line for s in train_defaults.HITTS_SWITCHES]
        assert all(switches) if arch == "hitts" else not any(switches)  # HiTTs' switches, HiTTs only
        assert (out / arch / "checkpoint.pt").read_text() == f"{arch} checkpoint.pt"
        assert (out / arch / "quantisers.json").read_text() == '{"q": 1}'
    (out / "hitts" / "checkpoint.pt").write_text("trained on")  # a later call resumes the copy
    (out / "mtl" / "metrics.json").write_text('{"metrics": {}}')  # finished: left alone
    calls.unlink()
    subprocess.run(["bash", "-c", script], check=True, env=env)
    assert len(calls.read_text().splitlines()) == 1 and "--arch hitts" in calls.read_text()
    assert (out / "hitts" / "checkpoint.pt").read_text() == "trained on"  # not copied again
    assert (sources["hitts"] / "checkpoint.pt").read_text() == "hitts checkpoint.pt"  # source untouched
    stamp = f'source {REPO / "scripts/cpu_recipe.sh"}; stamp_history "two goes, it\'s said" {out}/mtl/metrics.json'
    subprocess.run(["bash", "-c", stamp], check=True, env=env)
    assert json.loads((out / "mtl" / "metrics.json").read_text()) == {
        "metrics": {},
        "history": "two goes, it's said",
    }


def test_the_longer_rule_needs_a_win_over_its_mtl_over_the_shipped_run_and_real_frames_gained() -> None:
    def run(epochs_done: int, miou: float, epochs: int = 10) -> dict:
        return _run(epochs_done, miou, epochs=epochs)

    def report(real_gain: float, export: str = "hitts_longer") -> dict:
        return _real_frames_report(export, real_gain)

    runs = {"walls-tail/hitts_pseudo": run(8, 66.0, epochs=8), "walls-tail/mtl": run(8, 60.0, epochs=8)}
    runs |= {"walls-longer/hitts": run(9, 70.0), "walls-longer/mtl": run(10, 60.0)}
    assert not collect_defaults.choose_walls_longer(runs, report(1.0))["decided"]  # one epoch to go
    runs["walls-longer/hitts"] = run(10, 69.3)  # +5 % mIoU over the shipped stage 2: +1 %
    assert not collect_defaults.choose_walls_longer(runs, report(1.0, export="hitts_walls_pseudo"))["decided"]
    choice = collect_defaults.choose_walls_longer(runs, report(1.0))
    assert choice["decided"] and choice["ship"]
    assert (choice["hitts"], choice["mtl"]) == ("walls-longer/hitts", "walls-longer/mtl")
    assert choice["longer_hitts_val_gain_over_longer_mtl"] == pytest.approx(9.3 / 60 / 5 * 100)
    assert choice["longer_hitts_val_gain_over_shipped_hitts"] == pytest.approx(1.0)
    assert not collect_defaults.choose_walls_longer(runs, report(-0.1))["ship"]  # real frames not gained
    runs["walls-longer/hitts"] = run(10, 65.0)  # beats its MTL, but below the shipped stage 2
    assert not collect_defaults.choose_walls_longer(runs, report(9.0))["ship"]
    runs["walls-longer/mtl"] = run(10, 70.0)  # loses to its MTL
    runs["walls-longer/hitts"] = run(10, 69.3)
    assert not collect_defaults.choose_walls_longer(runs, report(9.0))["ship"]


def test_measure_candidates_saves_the_records_measures_both_profiles_and_applies_the_rule(
    tmp_path: Path,
) -> None:
    """scripts/cpu_recipe.sh's measure_candidates with a stand-in python: the run folder's small files
    go to results/runs/defaults, evaluate_shipped.py runs on the exports for both profiles against
    hitts, and collect_defaults.py gets the rule's option with the wide_walls report."""
    import os
    import subprocess

    work = tmp_path / "work"
    (work / "results/defaults").mkdir(parents=True)
    (work / "scripts").symlink_to(REPO / "scripts")
    run = work / "runs/cand/hitts"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text("{}")
    (run / "checkpoint.pt").write_text("weights")
    (work / "results/defaults/choice-c.json").write_text('{"decided": true}')
    calls = tmp_path / "calls"
    fake = tmp_path / "py"
    fake.write_text(f'#!/bin/bash\necho "$*" >> {calls}\n')
    fake.chmod(0o755)
    recipe = REPO / "scripts/cpu_recipe.sh"
    env = {**os.environ, "PY": str(fake)}
    got = subprocess.run(
        ["bash", "-c", f"source {recipe}; measure_candidates runs cand EXP name --x-choice c"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert got.stdout.strip() == '{"decided": true}'
    assert (work / "results/runs/defaults/cand/hitts/metrics.json").exists()
    assert not (work / "results/runs/defaults/cand/hitts/checkpoint.pt").exists()
    lines = calls.read_text().splitlines()
    for profile in ("wide_walls", "wide"):
        assert (
            f"scripts/evaluate_shipped.py --exports EXP --seed 2024 --num 100 --profile {profile} "
            f"--reference hitts --out results/defaults/eval-name-{profile}.json"
        ) in lines
    rule = [x for x in lines if x.startswith("scripts/collect_defaults.py")]
    assert len(rule) == 1
    assert rule[0].endswith(
        "--x-choice results/defaults/eval-name-wide_walls.json results/defaults/choice-c.json"
    )
    calls.unlink()
    subprocess.run(
        ["bash", "-c", f"source {recipe}; measure_candidates runs cand EXP name"],
        cwd=work,
        env=env,
        check=True,
    )
    rule = [x for x in calls.read_text().splitlines() if x.startswith("scripts/collect_defaults.py")]
    assert len(rule) == 1 and "choice" not in rule[0]  # no rule: defaults.md only
