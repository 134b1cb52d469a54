"""The one training loop, used by every model and both stages.

What differs between stage 1 and stage 2 is the data (stage 2 samples carry pseudo labels and
feature targets) and the loss function passed in, never the loop.

Determinism and resume: the shuffling order of epoch ``e`` is a pure function of
``(seed, e)``; per-sample augmentation randomness is a function of ``(seed, e, index)`` (the
dataset's ``set_epoch``), and every RNG state is saved in the checkpoint written at the end of each
epoch. A run killed at any point and resumed with ``resume=True`` restarts from the last complete
epoch and reproduces the uninterrupted loss sequence exactly (on CPU; on GPU up to
non-deterministic kernels).
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from .checkpoint import CHECKPOINT_NAME, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig

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


def fp32_outputs(outputs: Any) -> Any:
    """Cast floating tensors of a (nested) model output to float32, so losses run in full precision."""
    if torch.is_tensor(outputs):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, dict):
        return {k: fp32_outputs(v) for k, v in outputs.items()}
    return outputs


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / LOG_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _truncate_log(run_dir: Path, first_epoch_to_drop: int) -> None:
    kept = [r for r in read_log(run_dir) if r["epoch"] < first_epoch_to_drop]
    (run_dir / LOG_NAME).write_text("".join(json.dumps(r) + "\n" for r in kept))


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
    rank, world = distributed_context()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    model.to(device)
    if device.type == "cuda" and cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device.type == "cuda"
    )
    sched = make_scheduler(opt, cfg)
    start_epoch, ckpt_path = 0, run_dir / CHECKPOINT_NAME
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        start_epoch = state["epoch"] + 1
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        _truncate_log(run_dir, start_epoch)
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    sampler = EpochSampler(len(train_set), cfg.seed, rank, world)
    loader = make_loader(train_set, cfg.batch_size, sampler, num_workers, device, drop_last=True)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and cfg.amp else nullcontext()
    )
    steps_per_epoch = min(len(loader), cfg.max_steps_per_epoch or len(loader))
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        net.train()
        sums: dict[str, float] = defaultdict(float)
        bar = tqdm(
            loader,
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=rank != 0,
            leave=False,
        )
        for step, batch in enumerate(bar):
            if step >= steps_per_epoch:
                break
            batch = to_device(batch, device)
            image = batch["image"]
            if device.type == "cuda" and cfg.channels_last:
                image = image.contiguous(memory_format=torch.channels_last)
            with autocast:
                outputs = net(image)
            losses = loss_fn(fp32_outputs(outputs), batch)
            global_step = epoch * steps_per_epoch + step
            if not torch.isfinite(losses["total"]):
                terms = {k: float(v.detach()) for k, v in losses.items()}
                last = ckpt_path if ckpt_path.exists() else "none yet"
                raise NonFiniteLossError(
                    f"non-finite loss at epoch {epoch}, step {step} (global step {global_step}): "
                    f"{terms}; last good checkpoint: {last}"
                )
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            if cfg.grad_clip_norm:  # returns the norm as a tensor: no host sync
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm, foreach=True)
            opt.step()
            for k, v in losses.items():
                sums[k] += float(v.detach())
            bar.set_postfix(loss=f"{float(losses['total'].detach()):.4f}")
            if step_hook is not None:
                step_hook(global_step, losses)
        sched.step()
        record: dict[str, Any] = {"epoch": epoch, "lr": opt.param_groups[0]["lr"], "steps": steps_per_epoch}
        record.update({f"train/{k}": v / max(steps_per_epoch, 1) for k, v in sums.items()})
        is_last = epoch + 1 == cfg.epochs
        if rank == 0 and evaluate_fn is not None and ((epoch + 1) % cfg.eval_every == 0 or is_last):
            metrics = evaluate_fn(model)
            record.update({f"val/{t}/{m}": v for t, ms in metrics.items() for m, v in ms.items()})
        if rank == 0:
            with open(run_dir / LOG_NAME, "a") as f:
                f.write(json.dumps(record) + "\n")
            save_checkpoint(
                ckpt_path,
                {
                    **meta,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "epoch": epoch,
                    "rng": rng_state(),
                },
            )
        if world > 1:
            dist.barrier()
        if not all(math.isfinite(v) for k, v in record.items() if k.startswith("train/")):
            raise NonFiniteLossError(f"non-finite epoch mean at epoch {epoch}: {record}")
    return read_log(run_dir)
