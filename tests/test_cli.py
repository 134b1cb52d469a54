"""The command line: every command listed, prepare writes the NYUD-v2 layout, bad input fails clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainer.cli import main

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trainer", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_help_lists_every_command() -> None:
    out = run_cli("--help")
    assert out.returncode == 0
    for command in ("prepare", "train", "discover", "evaluate", "export", "pipeline"):
        assert command in out.stdout


def test_prepare_writes_the_nyud_layout(tmp_path: Path) -> None:
    out = run_cli(
        "prepare",
        "--dataset",
        "synthetic",
        "--out",
        str(tmp_path / "s"),
        "--num-train",
        "2",
        "--num-test",
        "1",
        "--height",
        "48",
        "--width",
        "64",
        "--seed",
        "3",
    )
    assert out.returncode == 0, out.stderr
    for split, n in (("train", 2), ("val", 1)):
        for folder in ("image", "label", "depth", "normal", "edge"):
            assert len(list((tmp_path / "s" / split / folder).glob("*.npy"))) == n
    assert np.load(tmp_path / "s" / "train" / "image" / "0.npy").shape == (48, 64, 3)


def test_wrong_data_path_is_one_clear_error(tmp_path: Path) -> None:
    """In process (``main`` is what ``python -m trainer`` runs): a SystemExit carrying one line."""
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "pipeline",
                "--data",
                str(tmp_path / "missing"),
                "--dataset",
                "nyud",
                "--out",
                str(tmp_path / "r"),
            ]
        )
    assert "does not exist" in str(exit_.value.code)


def test_unknown_setting_lists_the_choices(tmp_path: Path) -> None:
    out = run_cli(
        "train", "--data", str(tmp_path), "--dataset", "nyud", "--setting", "two-label", "--out", "x"
    )
    assert out.returncode != 0 and "one-label" in out.stderr


def test_unknown_override_fails_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "d").mkdir()
    args = ["train", "--data", str(tmp_path / "d"), "--dataset", "nyud", "--out", str(tmp_path / "r")]
    assert main([*args, "--set", 'model.backbone="vgg16"']) == 2
    err = capsys.readouterr().err
    assert "efficientnet_lite0" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_train_holds_the_split_validation_scenes_out(tmp_path: Path) -> None:
    """`train` with a split that names validation scenes: curves on them, test once at the end."""
    import json

    from fixtures_data import write_nyud_fixture
    from pipeline_fixtures import TINY

    root = write_nyud_fixture(tmp_path / "d", n_train=8, n_val=4, height=32, width=48)
    sets = [a for o in [*TINY, "train.epochs=1", "data.validation_images=2"] for a in ("--set", o)]
    out = tmp_path / "r"
    assert (
        main(["train", "--data", str(root), "--dataset", "nyud", "--arch", "mtl", "--out", str(out), *sets])
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval_split"] == "test" and {"val_metrics", "test_metrics"} <= set(metrics)
    held_out = json.loads((out / "split.json").read_text())["meta"]["validation"]
    assert len(held_out) == 2
