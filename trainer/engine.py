"""The one training loop, used by every model and both stages.

What differs between stage 1 and stage 2 is the data (stage 2 samples carry pseudo labels and
feature targets) and the loss function passed in, never the loop.

Determinism and resume: the shuffling order of epoch ``e`` is a pure function of
``(seed, e)``; per-sample augmentation randomness is a function of ``(seed, e, index)`` (the
dataset's ``set_epoch``), and every RNG state is saved in the checkpoint written at the end of each
epoch. A run killed at any point and resumed with ``resume=True`` restarts from the last complete
epoch and reproduces the uninterrupted loss sequence exactly (on CPU; on GPU up to
non-deterministic kernels).

No host sync per step: a training step (``train_step``) never reads a tensor back. The loss terms
are summed on the device (``LossTracker``) and read once every ``train.sync_every`` steps and at
the end of each epoch: that read is the finite-loss check (a NaN or inf stops the run naming the
step, its terms and the last good checkpoint, at most ``sync_every`` steps later and never after
a bad checkpoint) and feeds the progress bar.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from .checkpoint import CHECKPOINT_NAME, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig

TRAIN_SECONDS_KEY = "time/train_s"
"""Log key: wall seconds of an epoch's training steps (data loading included, evaluation not)."""
IMAGES_PER_S_KEY = "time/images_per_s"
"""Log key: training images per second over the epoch, all ranks together."""

LOG_NAME = "log.jsonl"

LossFn = Callable[[dict[str, Any], dict[str, Any]], dict[str, torch.Tensor]]
EvalFn = Callable[[nn.Module], dict[str, dict[str, float]]]
StepHook = Callable[[int, dict[str, torch.Tensor]], None]


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or inf: the run stops, naming the step, every loss term and the last checkpoint."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def distributed_context() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by ``torchrun``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


class EpochSampler(Sampler[int]):
    """Seeded permutation per epoch, sharded across distributed ranks (rank r takes every world-th)."""

    def __init__(self, num_items: int, seed: int, rank: int = 0, world: int = 1, shuffle: bool = True):
        self.num_items, self.seed, self.rank, self.world, self.shuffle = num_items, seed, rank, world, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.num_items, generator=g).tolist()
        else:
            order = list(range(self.num_items))
        usable = len(order) - len(order) % self.world  # every rank takes the same number of steps
        return iter(order[self.rank : usable : self.world])

    def __len__(self) -> int:
        return self.num_items // self.world


def make_loader(
    dataset: Dataset,
    batch_size: int,
    sampler: Sampler | None,
    num_workers: int,
    device: torch.device,
    drop_last: bool,
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        drop_last=drop_last,
        persistent_workers=False,
    )  # workers must see set_epoch


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedule: "step" (lr x gamma every ``lr_step_epochs``) or "poly" ((1 - e/E)^power)."""
    if cfg.lr_schedule == "poly":
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda e: max(1.0 - e / cfg.epochs, 0.0) ** cfg.poly_power
        )
    return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step_epochs, gamma=cfg.lr_gamma)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def fp32_outputs(outputs: Any, contiguous: bool = False) -> Any:
    """Cast floating tensors of a (nested) model output to float32, so losses run in full precision;
    with ``contiguous``, also in the default (NCHW) memory layout."""
    if torch.is_tensor(outputs):
        out = outputs.float() if outputs.is_floating_point() else outputs
        return out.contiguous() if contiguous else out
    if isinstance(outputs, dict):
        return {k: fp32_outputs(v, contiguous) for k, v in outputs.items()}
    return outputs


def uses_channels_last(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether the model trains in channels-last memory on ``device`` (``TrainConfig.channels_last``
    on CUDA, ``channels_last_on_cpu`` elsewhere)."""
    return cfg.channels_last if device.type == "cuda" else cfg.channels_last_on_cpu


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / LOG_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _truncate_log(run_dir: Path, first_epoch_to_drop: int) -> None:
    kept = [r for r in read_log(run_dir) if r["epoch"] < first_epoch_to_drop]
    (run_dir / LOG_NAME).write_text("".join(json.dumps(r) + "\n" for r in kept))


@dataclass
class Training:
    """What the loop works with, built once by :func:`setup` (resumed from the checkpoint if asked)."""

    model: nn.Module
    net: nn.Module  # the model, wrapped in DistributedDataParallel when world > 1
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    device: torch.device
    rank: int
    world: int
    start_epoch: int
    ckpt_path: Path


def restart_optimizer(sched: torch.optim.lr_scheduler.LRScheduler, start_epoch: int, ckpt_path: Path) -> None:
    """Resume from a weights-only checkpoint (one slimmed to carry back from a lent GPU machine keeps
    ``model`` and ``epoch`` only): the schedule is moved to ``start_epoch``; Adam's moment estimates
    restart from zero (its bias correction makes the first steps well scaled) and the global RNGs keep
    their seeded state (the epoch's shuffle and augmentation are functions of (seed, epoch) anyway).
    The run is no longer the uninterrupted run step for step, so this is said, not hidden."""
    warnings.warn(
        f"{ckpt_path} holds the weights only (no optimizer, scheduler or RNG state): resuming at epoch "
        f"{start_epoch} with Adam's moments restarted",
        stacklevel=3,
    )
    with warnings.catch_warnings():  # stepping a scheduler before any optimiser step is intended here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(start_epoch):
            sched.step()


def rate_of_schedule(sched: torch.optim.lr_scheduler.LRScheduler) -> None:
    """Set each parameter group's learning rate to what the schedule gives at the epoch it stands at.

    A resumed optimizer state carries the rate its run was at; a poly schedule (a ``LambdaLR``) resumed
    with more epochs than it was saved with (``train.epochs`` raised to train on) would otherwise train
    its next epoch at the old schedule's rate, which is 0 after the old schedule's last epoch. Where the
    epochs are unchanged this sets the rate that was saved. A ``StepLR`` does not depend on the length
    and is left alone."""
    if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
        for group, base, rate in zip(sched.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):
            group["lr"] = base * rate(sched.last_epoch)


def setup(model: nn.Module, cfg: TrainConfig, run_dir: Path, resume: bool) -> Training:
    """Device, channels_last (``uses_channels_last``), fused Adam (CUDA), scheduler; every state
    restored from the checkpoint with ``resume``; the log truncated to the epochs that checkpoint covers."""
    rank, world = distributed_context()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    model.to(device)
    if uses_channels_last(cfg, device):
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device.type == "cuda"
    )
    sched = make_scheduler(opt, cfg)
    start_epoch, ckpt_path = 0, run_dir / CHECKPOINT_NAME
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, map_location=device)
        model.load_state_dict(state["model"])
        start_epoch = state["epoch"] + 1
        if "optimizer" in state:
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            rate_of_schedule(sched)
            set_rng_state(state["rng"])
        else:
            restart_optimizer(sched, start_epoch, ckpt_path)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        _truncate_log(run_dir, start_epoch)
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    return Training(model, net, opt, sched, device, rank, world, start_epoch, ckpt_path)


def train_step(
    t: Training, batch: dict[str, Any], loss_fn: LossFn, cfg: TrainConfig
) -> dict[str, torch.Tensor]:
    """One optimiser step: forward (bf16 autocast on CUDA), fp32 losses, backward, clip, Adam.
    Nothing here reads a value back to the host, so the GPU is never waited for."""
    batch = to_device(batch, t.device)
    image = batch["image"]
    channels_last = uses_channels_last(cfg, t.device)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    amp = t.device.type == "cuda" and cfg.amp
    with torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext():
        outputs = t.net(image)
    losses = loss_fn(fp32_outputs(outputs, contiguous=channels_last and t.device.type != "cuda"), batch)
    t.opt.zero_grad(set_to_none=True)
    losses["total"].backward()
    if cfg.grad_clip_norm:  # the norm stays a tensor and the scaling is a multiply: no host sync
        nn.utils.clip_grad_norm_(t.model.parameters(), cfg.grad_clip_norm, foreach=True)
    t.opt.step()
    return losses


class LossTracker:
    """Per-epoch sums of every loss term, kept on the device as detached float64 tensors.

    ``check`` reads them on the host (one sync) and raises :class:`NonFiniteLossError` if any is
    NaN or inf. A non-finite loss stays non-finite in the running sum, so a check finds any bad
    step since the start of the epoch; the loop checks every ``cfg.sync_every`` steps and at the
    end of each epoch, before the checkpoint is written (a bad step never reaches a checkpoint).
    The message names the first bad step, its loss terms, the steps the check covered and the last
    good checkpoint.
    """

    def __init__(self, epoch: int, checkpoint: Path) -> None:
        self.epoch, self.checkpoint = epoch, checkpoint
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0
        self.unchecked: list[tuple[int, dict[str, torch.Tensor]]] = []  # (step, losses) since the last check

    def add(self, step: int, losses: dict[str, torch.Tensor]) -> None:
        detached = {k: v.detach() for k, v in losses.items()}
        for k, v in detached.items():
            self.sums[k] = self.sums[k] + v.double() if k in self.sums else v.double()
        self.steps += 1
        self.unchecked.append((step, detached))

    def _first_non_finite(self) -> tuple[int, dict[str, float]]:
        """The first unchecked step with a non-finite term, and its terms (failure path: syncs per step)."""
        for step, losses in self.unchecked:
            terms = {k: float(v) for k, v in losses.items()}
            if not all(math.isfinite(v) for v in terms.values()):
                return step, terms
        return self.unchecked[-1][0], {k: float(v) for k, v in self.sums.items()}

    def means(self) -> dict[str, float]:
        """Epoch means so far of every term (one host sync)."""
        values = torch.stack(list(self.sums.values())).tolist() if self.sums else []
        return {k: v / max(self.steps, 1) for k, v in zip(self.sums, values)}

    def check(self) -> dict[str, float]:
        """The epoch means so far; raises :class:`NonFiniteLossError` if any is not finite."""
        means = self.means()
        if all(math.isfinite(v) for v in means.values()):
            self.unchecked.clear()
            return means
        first, last = self.unchecked[0][0], self.unchecked[-1][0]
        step, terms = self._first_non_finite()
        last_good = self.checkpoint if self.checkpoint.exists() else "none yet"
        raise NonFiniteLossError(
            f"non-finite loss at epoch {self.epoch}, step {step} (found by the check of steps {first}-{last}): "
            f"{terms}; last good checkpoint: {last_good}"
        )


def end_epoch(
    t: Training,
    cfg: TrainConfig,
    epoch: int,
    record: dict[str, Any],
    evaluate_fn: EvalFn | None,
    run_dir: Path,
    meta: dict[str, Any],
) -> None:
    """Scheduler step, evaluation (every ``eval_every`` epochs and the last), log line, checkpoint."""
    t.sched.step()
    record["lr"] = t.opt.param_groups[0]["lr"]
    is_last = epoch + 1 == cfg.epochs
    if t.rank == 0 and evaluate_fn is not None and ((epoch + 1) % cfg.eval_every == 0 or is_last):
        metrics = evaluate_fn(t.model)
        record.update({f"val/{task}/{m}": v for task, ms in metrics.items() for m, v in ms.items()})
    if t.rank == 0:
        with open(run_dir / LOG_NAME, "a") as f:
            f.write(json.dumps(record) + "\n")
        state = {
            "model": t.model.state_dict(),
            "optimizer": t.opt.state_dict(),
            "scheduler": t.sched.state_dict(),
        }
        save_checkpoint(t.ckpt_path, {**meta, **state, "epoch": epoch, "rng": rng_state()})
    if t.world > 1:
        dist.barrier()


def fit(
    model: nn.Module,
    train_set: Dataset,
    loss_fn: LossFn,
    cfg: TrainConfig,
    run_dir: str | Path,
    meta: dict[str, Any],
    evaluate_fn: EvalFn | None = None,
    resume: bool = False,
    num_workers: int = 0,
    step_hook: StepHook | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` for ``cfg.epochs`` epochs; returns the per-epoch log records.

    meta: what makes the checkpoint self-describing (``config``, ``tasks``, ``quantisers``,
        ``stage``, ``dataset``); stored in every checkpoint.
    step_hook: called after every optimiser step as ``step_hook(global_step, losses)`` (tests use
        it to kill or poison a run at a given step).
    """
    run_dir = Path(run_dir)
    t = setup(model, cfg, run_dir, resume)
    sampler = EpochSampler(len(train_set), cfg.seed, t.rank, t.world)
    loader = make_loader(train_set, cfg.batch_size, sampler, num_workers, t.device, drop_last=True)
    steps = min(len(loader), cfg.max_steps_per_epoch or len(loader))
    for epoch in range(t.start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        t.net.train()
        tracker = LossTracker(epoch, t.ckpt_path)
        started = time.perf_counter()
        bar = tqdm(
            loader, total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=t.rank != 0, leave=False
        )
        for step, batch in zip(range(steps), bar):
            losses = train_step(t, batch, loss_fn, cfg)
            tracker.add(step, losses)
            if (step + 1) % cfg.sync_every == 0:
                bar.set_postfix(loss=f"{tracker.check()['total']:.4f}", refresh=False)
            if step_hook is not None:
                step_hook(epoch * steps + step, losses)
        bar.close()
        means = tracker.check()  # a host read: the epoch's GPU work is done when it returns
        seconds = time.perf_counter() - started
        record = {"epoch": epoch, "lr": None, "steps": steps, **{f"train/{k}": v for k, v in means.items()}}
        record.update(
            {TRAIN_SECONDS_KEY: seconds, IMAGES_PER_S_KEY: steps * cfg.batch_size * t.world / seconds}
        )
        end_epoch(t, cfg, epoch, record, evaluate_fn, run_dir, meta)
    return read_log(run_dir)
