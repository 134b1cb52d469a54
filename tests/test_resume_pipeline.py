"""A real HiTTs run (synthetic scenes, augmentation, one-label split) killed with SIGKILL mid-epoch and
resumed reproduces the uninterrupted run's loss sequence."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 3
KILL_AT_STEP = 5  # second step of the third epoch (2 steps per epoch: 8 images / batch 4)

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {repo!r}); sys.path.insert(0, {tests!r})
    from pipeline_fixtures import tiny_config
    from trainer.config import apply_overrides
    from trainer.pipeline import ensure_quantisers, ensure_split, method_config, task_specs, train_method
    root, out, kill_at = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    cfg = apply_overrides(method_config(tiny_config(epochs={epochs}), "hitts"), ["data.max_train_images=8"])
    specs = task_specs(cfg)
    mask = ensure_split(cfg, root, specs, out / "split.json")
    quantisers = ensure_quantisers(cfg, root, specs, mask, out / "quantisers.json")
    def hook(step, losses):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    train_method(cfg, root, out / "hitts", mask, quantisers, resume=True, step_hook=hook if kill_at >= 0 else None)
""")


def run(script: Path, root: Path, out: Path, kill_at: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script), str(root), str(out), str(kill_at)],
        capture_output=True,
        text=True,
        timeout=600,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )


def losses(out: Path) -> list[dict]:
    lines = (out / "hitts" / "log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k.startswith("train/")} for line in lines]


@pytest.mark.slow
def test_killed_hitts_run_resumes_to_the_same_losses(synthetic_root: Path, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests"), epochs=EPOCHS))
    reference = run(script, synthetic_root, tmp_path / "ref", -1)
    assert reference.returncode == 0, reference.stderr[-2000:]
    killed = run(script, synthetic_root, tmp_path / "killed", KILL_AT_STEP)
    assert killed.returncode == -signal.SIGKILL
    assert len(losses(tmp_path / "killed")) == KILL_AT_STEP // 2  # epochs finished before the kill
    resumed = run(script, synthetic_root, tmp_path / "killed", -1)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    want, got = losses(tmp_path / "ref"), losses(tmp_path / "killed")
    assert len(got) == EPOCHS and set(got[0]) >= {"train/L_s", "train/L_s/semseg", "train/total"}
    for a, b in zip(want, got):
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), key
