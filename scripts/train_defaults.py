"""Train the shipped default models (issue 11) in one GPU call: HiTTs (stage 1, discovery, stage 2)
and the MTL baseline at 288x384 on a larger, wider-randomised synthetic set, plus the sim-to-real
ablation (HiTTs stage 1 on the plain generator with the plain colour jitter).

    python scripts/train_defaults.py --work /tmp/defaults --out $OUT [--budget-s 540] [--toy]

Phases, all inside ``--budget-s`` seconds of wall time:

1. **data**: two synthetic sets rendered with the same seed: ``wide`` (generator profile ``wide``)
   and ``nyu`` (the plain generator), ``NUM_TRAIN`` training + ``NUM_TEST`` test scenes each.
2. **split**: one-label label masks with ``VALIDATION_IMAGES`` held-out validation scenes, and the
   quantisers, made once per set before any training process starts (they share them).
3. **probe**: HiTTs and MTL train ``PROBE_STEPS`` steps side by side, as the real runs will; their
   images/s fix the number of epochs so that both chains end inside the budget (the schedule is
   then written in every run's ``config.json``, as always).
4. **train**, two processes at a time on the one GPU: chain A = HiTTs stage 1 -> discovery ->
   HiTTs + L_p + L_f (stage 2); chain B = MTL, then the ablation. Every run logs validation
   metrics each epoch and evaluates the test scenes once at the end.
5. **pack**: per run a slim checkpoint (weights + self-description, no optimiser state) and one
   archive of every config, split, quantiser, log and metrics file, under ``--out``.

The recipe (``RECIPE``) was fixed before this script ran: the ``cpu`` preset's EfficientNet-Lite0
(ImageNet weights) at D 64 with the configuration the reproduction study chose (``gate_scale``),
Adam 5e-4 with poly decay, batch 16, one-label. ``--toy`` runs the same path at toy size on a CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SETTING = "one-label"
SEED = 0
DATA_SEED = 0
NUM_TRAIN, NUM_TEST = 2400, 654
VALIDATION_IMAGES = 240
"""Held-out validation scenes (10 % of the training scenes): the per-epoch curves."""
SIZE = (288, 384)
RECIPE = (
    "train.batch_size=16",
    "train.lr=0.0005",
    "train.lr_schedule=poly",
    "train.eval_every=1",
    "train.sync_every=50",
)
"""Every run's overrides; the plan adds the data size, validation scenes, workers and photometric mode."""
HITTS_SWITCHES = ("model.gate_channel_scale=true",)
"""The study's choice (results/study-choice.json): the authors' per-channel scale before the gate."""
PROFILES = {"wide": ("data.photometric=wide",), "nyu": ("data.photometric=basic",)}
"""Generator profile -> the photometric augmentation trained with it."""
WORKERS_PER_RUN = 6
PROBE_STEPS = 40
PROBE_EPOCHS = 2
"""The probe's rate is its last epoch's (the first includes start-up)."""
EPOCHS_RANGE = (6, 60)
STAGE2_SLOWDOWN = 1.25
"""Stage 2 reads pseudo labels and feature targets from disk and adds L_p, L_f: assumed this much slower."""
EPOCH_OVERHEAD_S = 4.0
"""Per epoch: worker start-up, validation pass, checkpoint."""
DISCOVERY_S = 60.0
CHAIN_FIXED_S = 45.0
"""Chain A's costs that do not grow with epochs: two start-ups, two cache fills, two test passes."""
PACK_S = 25.0
TOY = {"num_train": 24, "num_test": 8, "validation": 4, "size": (96, 128), "workers": 0, "probe": 2}


def recipe(profile: str, validation: int, size: tuple[int, int], workers: int) -> list[str]:
    """Every run's ``--set`` overrides for a ``profile`` data set (HiTTs runs add ``HITTS_SWITCHES``)."""
    return [
        *RECIPE,
        f"data.validation_images={validation}",
        f"data.height={size[0]}",
        f"data.width={size[1]}",
        f"data.num_workers={workers}",
        *PROFILES[profile],
    ]


@dataclass(frozen=True)
class Plan:
    work: Path
    out: Path
    deadline: float
    num_train: int
    num_test: int
    validation: int
    size: tuple[int, int]
    workers: int
    probe_steps: int
    toy: bool

    def recipe(self, profile: str) -> list[str]:
        return recipe(profile, self.validation, self.size, self.workers)

    def data_root(self, profile: str) -> Path:
        """Where the synthetic set of ``profile`` is rendered."""
        return self.work / f"data-{profile}"

    def left(self) -> float:
        return self.deadline - time.time()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def trainer(*args: str) -> list[str]:
    return [sys.executable, "-m", "trainer", *args]


def prepare_data(plan: Plan, profiles: tuple[str, ...] = tuple(PROFILES)) -> None:
    """The synthetic sets of ``profiles``, rendered side by side (the cores shared out)."""
    cores = max(1, (os.cpu_count() or 2) // len(profiles))
    procs = []
    for profile in profiles:
        folder = plan.data_root(profile)
        cmd = trainer(
            "prepare",
            "--out",
            str(folder),
            "--num-train",
            str(plan.num_train),
            "--num-test",
            str(plan.num_test),
            "--seed",
            str(DATA_SEED),
            "--height",
            str(plan.size[0]),
            "--width",
            str(plan.size[1]),
            "--workers",
            str(cores),
            "--profile",
            profile,
        )
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=quiet_env()))
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"data generation failed: {p.args}")


def quiet_env() -> dict[str, str]:
    return {**os.environ, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}


def base_config(plan: Plan, profile: str, arch: str):
    from trainer.config import apply_overrides, preset_config

    cfg = preset_config("cpu", "synthetic", SETTING, arch)
    cfg = replace(cfg, data=replace(cfg.data, root=str(plan.data_root(profile))))
    return apply_overrides(cfg, plan.recipe(profile))


def make_split(plan: Plan, profile: str, chain: Path) -> None:
    """The chain's split (label masks + validation scenes) and quantisers, made before any run."""
    from trainer.runs import QUANTISERS_NAME, SPLIT_NAME, ensure_quantisers, ensure_split, task_specs

    cfg = base_config(plan, profile, "hitts")
    specs = task_specs(cfg)
    mask = ensure_split(cfg, cfg.data.root, specs, chain / SPLIT_NAME)
    ensure_quantisers(cfg, cfg.data.root, specs, mask, chain / QUANTISERS_NAME)


def run_args(plan: Plan, profile: str, chain: Path, out: Path, extra: list[str]) -> list[str]:
    return [
        "--data",
        str(plan.data_root(profile)),
        "--dataset",
        "synthetic",
        "--preset",
        "cpu",
        "--setting",
        SETTING,
        "--seed",
        str(SEED),
        "--split",
        str(chain / "split.json"),
        "--out",
        str(out),
        *[a for o in plan.recipe(profile) + extra for a in ("--set", o)],
    ]


def probe(plan: Plan, chain: Path) -> dict[str, float]:
    """Steady images/s of HiTTs and MTL training side by side (data loading included)."""
    procs = {}
    for arch in ("hitts", "mtl"):
        out = plan.work / "probe" / arch
        out.mkdir(parents=True, exist_ok=True)
        (out / "quantisers.json").write_text((chain / "quantisers.json").read_text())
        switches = list(HITTS_SWITCHES) if arch == "hitts" else []
        # two short epochs: the first pays for start-up (workers, cuDNN autotuning: 17 s of the 20 s
        # first probe on the H200), the second is the steady rate the runs will see
        sets = switches + [f"train.epochs={PROBE_EPOCHS}", f"train.max_steps_per_epoch={plan.probe_steps}"]
        cmd = trainer("train", "--arch", arch, *run_args(plan, "wide", chain, out, sets))
        procs[arch] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=quiet_env())
    rates = {}
    for arch, p in procs.items():
        if p.wait() != 0:
            raise SystemExit(f"probe {arch} failed")
        record = json.loads((plan.work / "probe" / arch / "log.jsonl").read_text().splitlines()[-1])
        rates[arch] = record["time/images_per_s"]
    log(f"probe: {json.dumps({k: round(v, 1) for k, v in rates.items()})} images/s side by side")
    return rates


def choose_epochs(plan: Plan, rates: dict[str, float]) -> int:
    """Epochs such that chain A (stage 1 + discovery + stage 2) ends before the deadline."""
    trained = plan.num_train - plan.validation
    stage1 = trained / min(rates.values()) + EPOCH_OVERHEAD_S
    per_epoch = stage1 * (1 + STAGE2_SLOWDOWN)
    budget = plan.left() - DISCOVERY_S - CHAIN_FIXED_S - PACK_S
    epochs = int(min(max(math.floor(budget / per_epoch), EPOCHS_RANGE[0]), EPOCHS_RANGE[1]))
    log(f"epochs {epochs}: {per_epoch:.1f} s per epoch of both stages, {budget:.0f} s to spend")
    return 2 if plan.toy else epochs


def start(cmd: list[str], logfile: Path) -> subprocess.Popen:
    logfile.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(cmd, stdout=open(logfile, "w"), stderr=subprocess.STDOUT, env=quiet_env())


def train_all(plan: Plan, epochs: int, ablation: bool = True) -> None:
    """Chain A (HiTTs, discovery, stage 2) beside chain B (MTL, then, with ``ablation``, HiTTs on the
    nyu profile)."""
    wide, nyu = plan.work / "wide", plan.work / "nyu"
    ep = [f"train.epochs={epochs}"]
    (wide / "mtl-pipeline").mkdir(parents=True, exist_ok=True)
    (wide / "mtl-pipeline" / "quantisers.json").write_text((wide / "quantisers.json").read_text())
    hitts = ep + list(HITTS_SWITCHES)
    chain_a = start(
        trainer("pipeline", "--methods", "hitts", "hitts_pseudo", *run_args(plan, "wide", wide, wide, hitts)),
        plan.work / "logs" / "chain-a.txt",
    )
    chain_b = [
        trainer("pipeline", "--methods", "mtl", *run_args(plan, "wide", wide, wide / "mtl-pipeline", ep)),
        trainer("pipeline", "--methods", "hitts", *run_args(plan, "nyu", nyu, nyu, hitts)),
    ][: 2 if ablation else 1]
    for i, cmd in enumerate(chain_b):
        p = start(cmd, plan.work / "logs" / f"chain-b{i}.txt")
        wait(p, plan)
    wait(chain_a, plan)


def wait(p: subprocess.Popen, plan: Plan) -> None:
    """Wait for ``p`` until PACK_S before the deadline; then stop it (its last checkpoint stays)."""
    try:
        p.wait(timeout=max(plan.left() - PACK_S, 1))
    except subprocess.TimeoutExpired:
        log(f"deadline: stopping {' '.join(p.args[3:6])}")
        p.kill()
        p.wait()
    if p.returncode:
        log(f"exit {p.returncode}: {' '.join(map(str, p.args[3:6]))}")


def pack(plan: Plan) -> None:
    """Slim checkpoints (no optimiser state) and one archive of the small files of every run."""
    import torch

    for ckpt in sorted(plan.work.glob("*/**/checkpoint.pt")):
        if "probe" in ckpt.parts or "teacher" in ckpt.parts:
            continue
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        slim = {k: v for k, v in state.items() if k not in ("optimizer", "scheduler", "rng")}
        name = "-".join(ckpt.relative_to(plan.work).parts[:-1]).replace("mtl-pipeline-", "")
        torch.save(slim, plan.out / f"{name}.pt")
    data = [plan.data_root(profile) for profile in PROFILES if plan.data_root(profile).exists()]
    with tarfile.open(plan.out / "runs.tgz", "w:gz") as tar:
        for path in sorted(plan.work.rglob("*")):
            small = path.suffix in (".json", ".jsonl", ".txt") and path.stat().st_size < 2**20
            in_data = any(path.is_relative_to(d) for d in data)
            if path.is_file() and small and (not in_data or path.name == "synthetic.json"):
                tar.add(path, arcname=str(path.relative_to(plan.work)))
    log(f"packed: {sorted(p.name for p in plan.out.iterdir())}")


def stage2_from_teacher(plan: Plan, teacher: Path, epochs: int) -> None:
    """Second call (``--teacher``): the wide set only; discovery with a stage-1 checkpoint brought
    from the first call, then stage 2 (HiTTs + L_p + L_f), beside MTL trained on the same split and
    schedule. The teacher's quantisers are used by every run (pseudo labels index its bins)."""
    wide = plan.work / "wide"
    teacher_dir = plan.work / "teacher"
    teacher_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(teacher, teacher_dir / "checkpoint.pt")
    import torch

    quantisers = json.dumps(torch.load(teacher, map_location="cpu", weights_only=False)["quantisers"])
    for folder in (wide, wide / "hitts_pseudo", wide / "mtl"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "quantisers.json").write_text(quantisers)
    make_split(plan, "wide", wide)
    log(f"split ready, {plan.left():.0f} s left; {epochs} epochs per run")
    ep = [f"train.epochs={epochs}"]
    mtl = start(
        trainer("train", "--arch", "mtl", *run_args(plan, "wide", wide, wide / "mtl", ep)), wide / "mtl.txt"
    )
    discovery = wide / "discovery"
    data = str(plan.data_root("wide"))
    found = subprocess.run(
        trainer("discover", "--run", str(teacher_dir), "--data", data, "--out", str(discovery)),
        stdout=subprocess.DEVNULL,
        env=quiet_env(),
    )
    log(f"discovery exit {found.returncode}, {plan.left():.0f} s left")
    hitts = ep + list(HITTS_SWITCHES)
    args = run_args(plan, "wide", wide, wide / "hitts_pseudo", hitts)
    wait(
        start(trainer("train", "--arch", "hitts", "--discovery", str(discovery), *args), wide / "s2.txt"),
        plan,
    )
    wait(mtl, plan)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="data and run folders (not in the repo)")
    p.add_argument("--out", type=Path, required=True, help="slim checkpoints and runs.tgz")
    p.add_argument("--budget-s", type=float, default=540.0)
    p.add_argument("--toy", action="store_true", help="toy sizes on a CPU (tests this script)")
    p.add_argument("--teacher", type=Path, help="second call: a stage-1 checkpoint; stage 2 + MTL only")
    p.add_argument("--epochs", type=int, default=6, help="with --teacher: epochs of both runs")
    p.add_argument(
        "--no-ablation",
        action="store_true",
        help="the wide set only: HiTTs (both stages) and MTL, no nyu run",
    )
    p.add_argument("--num-train", type=int, default=NUM_TRAIN)
    p.add_argument("--num-test", type=int, default=NUM_TEST)
    p.add_argument("--validation", type=int, default=VALIDATION_IMAGES)
    args = p.parse_args(argv)
    toy = TOY if args.toy else {}
    plan = Plan(
        args.work,
        args.out,
        time.time() + args.budget_s,
        toy.get("num_train", args.num_train),
        toy.get("num_test", args.num_test),
        toy.get("validation", args.validation),
        toy.get("size", SIZE),
        toy.get("workers", WORKERS_PER_RUN),
        toy.get("probe", PROBE_STEPS),
        args.toy,
    )
    plan.out.mkdir(parents=True, exist_ok=True)
    profiles = ("wide",) if args.teacher or args.no_ablation else tuple(PROFILES)
    log(f"data: {plan.num_train} + {plan.num_test} scenes at {plan.size}, profiles {list(profiles)}")
    prepare_data(plan, profiles)
    try:
        if args.teacher:
            stage2_from_teacher(plan, args.teacher, 2 if args.toy else args.epochs)
        else:
            for profile in profiles:
                make_split(plan, profile, plan.work / profile)
            log(f"data and splits ready, {plan.left():.0f} s left")
            train_all(
                plan, choose_epochs(plan, probe(plan, plan.work / "wide")), ablation=not args.no_ablation
            )
    finally:
        pack(plan)
    log(f"done, {plan.left():.0f} s left")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
