"""Multi-process training with DistributedDataParallel, launched by torchrun, on CPU with gloo."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from trainer.engine import read_log

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import os, sys, torch
    sys.path.insert(0, {repo!r}); sys.path.insert(0, {tests!r})
    from test_engine import CFG, META, NoisyToyData, toy_loss, toy_model
    from trainer.engine import fit
    model = toy_model()
    fit(model, NoisyToyData(), toy_loss, CFG, sys.argv[1], META)
    torch.save({{k: v.detach() for k, v in model.state_dict().items()}},
               os.path.join(sys.argv[1], f"rank{{os.environ['RANK']}}.pt"))
""")


@pytest.mark.slow
def test_two_process_gloo_run_keeps_replicas_in_sync(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed beside this python")
    script = tmp_path / "ddp.py"
    script.write_text(SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests")))
    run = tmp_path / "run"
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", str(script), str(run)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = read_log(run)
    assert [r["epoch"] for r in log] == [0, 1, 2, 3]
    assert log[0]["steps"] == 1  # 12 images / 2 ranks / batch 4 -> 1 step per rank and epoch
    a, b = (torch.load(run / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for k in a:
        assert torch.equal(a[k], b[k]), k  # gradients were averaged: replicas identical
