"""The training loop: finite-loss stop, atomic checkpoints, exact resume after a kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from host_reads import record_host_reads
from torch import nn

from trainer import engine
from trainer.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, save_checkpoint
from trainer.config import TrainConfig
from trainer.engine import NonFiniteLossError, fit, read_log

REPO = Path(__file__).resolve().parents[1]


class NoisyToyData(torch.utils.data.Dataset):
    """12 images; per-sample noise depends on (epoch, index) like real augmentation."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.epoch, i])
        x = torch.from_numpy(rng.standard_normal((3, 8, 8)).astype(np.float32))
        return {"image": x, "target": x.mean(0, keepdim=True) * 2.0}


def toy_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Dropout(0.2), nn.Conv2d(8, 1, 1))


def toy_loss(outputs: torch.Tensor, batch: dict) -> dict:
    mse = ((outputs - batch["target"]) ** 2).mean()
    return {"mse": mse, "total": mse}


CFG = TrainConfig(epochs=4, batch_size=4, lr=1e-2, lr_step_epochs=2, device="cpu", amp=False)
META = {"config": {}, "tasks": ["toy"], "stage": 1}


def test_loss_falls_and_log_has_every_term(tmp_path: Path) -> None:
    log = fit(toy_model(), NoisyToyData(), toy_loss, CFG, tmp_path, META)
    assert [r["epoch"] for r in log] == [0, 1, 2, 3]
    assert log[-1]["train/mse"] < log[0]["train/mse"]
    assert log[2]["lr"] == pytest.approx(CFG.lr * CFG.lr_gamma)  # step schedule applied
    state = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert state["epoch"] == 3 and state["tasks"] == ["toy"]


def test_channels_last_on_cpu_trains_the_same_with_nchw_loss_inputs(tmp_path: Path) -> None:
    """channels_last_on_cpu: the model steps in channels-last memory, the loss sees NCHW outputs,
    and the losses are those of the contiguous run (same maths, other kernels; no dropout, whose mask
    follows the memory layout)."""
    seen: list[bool] = []

    def no_dropout_model() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1))

    def loss(outputs: torch.Tensor, batch: dict) -> dict:
        seen.append(outputs.is_contiguous())
        return toy_loss(outputs, batch)

    cfg = replace(CFG, epochs=2)
    plain = fit(no_dropout_model(), NoisyToyData(), loss, cfg, tmp_path / "plain", META)
    assert all(seen)
    seen.clear()
    model = no_dropout_model()
    fast = fit(model, NoisyToyData(), loss, replace(cfg, channels_last_on_cpu=True), tmp_path / "cl", META)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert seen and all(seen)
    for a, b in zip(plain, fast):
        assert b["train/mse"] == pytest.approx(a["train/mse"], rel=1e-5)


def test_nan_loss_stops_naming_step_terms_and_checkpoint(tmp_path: Path) -> None:
    calls = {"n": 0}

    def poisoned(outputs: torch.Tensor, batch: dict) -> dict:
        calls["n"] += 1
        losses = toy_loss(outputs, batch)
        if calls["n"] == 5:  # epoch 1, step 1 (3 steps per epoch)
            losses["mse"] = losses["mse"] * float("nan")
            losses["total"] = losses["mse"]
        return losses

    with pytest.raises(NonFiniteLossError) as err:
        fit(toy_model(), NoisyToyData(), poisoned, CFG, tmp_path, META)
    msg = str(err.value)
    assert "epoch 1, step 1" in msg and "'mse': nan" in msg and CHECKPOINT_NAME in msg
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["epoch"] == 0  # last good one kept


def test_nan_is_caught_within_sync_every_steps(tmp_path: Path) -> None:
    """The loop reads its loss sums every ``sync_every`` steps: with 2, a NaN at epoch 1 step 0
    (global step 3) is found by the check after step 1 (global 4), before that step's hook: the run
    goes no further and the last checkpoint is epoch 0's."""
    calls, hooked = {"n": 0}, []

    def poisoned(outputs: torch.Tensor, batch: dict) -> dict:
        calls["n"] += 1
        losses = toy_loss(outputs, batch)
        if calls["n"] == 4:
            losses = {k: v * float("inf") for k, v in losses.items()}
        return losses

    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 0 \(found by the check of steps 0-1\)"):
        fit(
            toy_model(),
            NoisyToyData(),
            poisoned,
            replace(CFG, sync_every=2),
            tmp_path,
            META,
            step_hook=lambda step, losses: hooked.append(step),
        )
    assert hooked[-1] == 3 and load_checkpoint(tmp_path / CHECKPOINT_NAME)["epoch"] == 0


def test_training_steps_never_read_a_tensor_on_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host read (``item``, ``float``, ``bool``, ``tolist`` ...) waits for the GPU. The loop's own
    code reads only at its checks: with 3 steps per epoch and ``sync_every`` 2, after step 1 and at
    the end of each epoch, one ``tolist`` each (8 in 4 epochs)."""
    reads = record_host_reads(monkeypatch, engine.__file__)
    fit(toy_model(), NoisyToyData(), toy_loss, replace(CFG, sync_every=2, grad_clip_norm=1.0), tmp_path, META)
    assert [r for r in reads if r[1] != "__iter__"] == [("tolist", "means")] * 8  # sampler: CPU tensor


def test_truncated_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.pt", {"model": {}, "config": {}, "epoch": 0, "tasks": []})
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(path)


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {repo!r}); sys.path.insert(0, {tests!r})
    from test_engine import CFG, META, NoisyToyData, toy_loss, toy_model
    from trainer.engine import fit
    kill_at = int(sys.argv[2])
    def hook(step, losses):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    fit(toy_model(), NoisyToyData(), toy_loss, CFG, sys.argv[1], META, resume=True,
        step_hook=hook if kill_at >= 0 else None)
""")


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_reproduces_losses(tmp_path: Path) -> None:
    reference = fit(toy_model(), NoisyToyData(), toy_loss, CFG, tmp_path / "ref", META)
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests")))
    run = tmp_path / "killed"
    killed = subprocess.run([sys.executable, str(script), str(run), "7"], capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    assert [r["epoch"] for r in read_log(run)] == [0, 1]  # killed in epoch 2 (steps 6..8)
    resumed = subprocess.run([sys.executable, str(script), str(run), "-1"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    got = read_log(run)
    assert [r["epoch"] for r in got] == [0, 1, 2, 3]
    for a, b in zip(reference, got):
        assert a["train/mse"] == pytest.approx(b["train/mse"], rel=1e-6, abs=0)
    assert not [p for p in os.listdir(run) if p.endswith(".tmp")]
    json.dumps(got)


def test_resume_from_weights_only_checkpoint_restarts_adam_on_schedule(tmp_path: Path) -> None:
    """A checkpoint slimmed to its weights (as carried back from a lent GPU) resumes at the next
    epoch with the schedule's learning rate, says that Adam restarts, and trains on from the weights."""
    reference = fit(toy_model(), NoisyToyData(), toy_loss, CFG, tmp_path / "ref", META)
    run = tmp_path / "slim"
    fit(toy_model(), NoisyToyData(), toy_loss, replace(CFG, epochs=2), run, META)
    state = load_checkpoint(run / CHECKPOINT_NAME)
    save_checkpoint(
        run / CHECKPOINT_NAME, {k: state[k] for k in ("model", "epoch", "config", "tasks", "stage")}
    )
    with pytest.warns(UserWarning, match="weights only .* resuming at epoch 2 with Adam's moments restarted"):
        got = fit(toy_model(), NoisyToyData(), toy_loss, CFG, run, META, resume=True)
    assert [r["epoch"] for r in got] == [0, 1, 2, 3]
    assert [r["lr"] for r in got] == pytest.approx([r["lr"] for r in reference])
    assert got[2]["train/mse"] < reference[0]["train/mse"]  # continued from the weights, not from scratch
    assert load_checkpoint(run / CHECKPOINT_NAME)["optimizer"]  # a full checkpoint from then on


def test_resume_with_a_longer_poly_schedule_trains_on_at_its_rate(tmp_path: Path) -> None:
    """A finished run resumed with more epochs (a run trained on) starts its next epoch at the longer
    schedule's rate, not at the 0 its optimizer state was saved with after the shorter schedule's end."""
    run = tmp_path / "short"
    short = fit(toy_model(), NoisyToyData(), toy_loss, replace(CFG, epochs=2, lr_schedule="poly"), run, META)
    assert short[-1]["lr"] == 0.0
    longer = replace(CFG, epochs=4, lr_schedule="poly")
    t = engine.setup(toy_model(), longer, run, resume=True)
    assert t.start_epoch == 2
    assert t.opt.param_groups[0]["lr"] == pytest.approx(longer.lr * (1 - 2 / 4) ** longer.poly_power)
    got = fit(toy_model(), NoisyToyData(), toy_loss, longer, run, META, resume=True)
    assert [r["epoch"] for r in got] == [0, 1, 2, 3]
    assert got[2]["lr"] == pytest.approx(longer.lr * (1 - 3 / 4) ** longer.poly_power)
