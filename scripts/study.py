"""The reproduction study of issue 10, end to end: diagnose on a validation split, choose by a rule
written here before any result, report on the test scenes once.

    python scripts/study.py --out runs/study [--data data/synthetic] [--parallel 16] [--budget-s 3600]

Phases (every run is a ``python -m trainer pipeline`` process; runs resume, so a killed study
continues where it stopped when started again with the same arguments):

1. **diagnose** (seed 0, one-label, as the paper's Table 5): STL, MTL, HiTTs, the Table 5
   ablations, and one HiTTs variant per suspected cause (``CANDIDATES``: saturated gates, a 12-key
   attention, the missing F_s path, the authors' loss form, gradient clipping, untrained tokens,
   learning rate; a recipe change is given to MTL too), plus HiTTs and MTL at three times the
   schedule; random-labels: STL, MTL, HiTTs. Every run evaluates the held-out validation scenes per
   epoch (the learning curves) and the test scenes once at the end.
2. **combine** (only with ``--combine``, off in the GPU run for time): the switches whose variant
   beat plain HiTTs on validation are combined into one more candidate (if at least two qualify).
3. **choose** (``choose``): the candidate with the highest validation Delta_MTL (the paper's Table 1
   metric set, against the STL run of the same seed) on one-label, seed 0. Plain HiTTs is a
   candidate too; a candidate whose run did not finish within the budget cannot be chosen. Test
   figures are never read by the rule.
4. **final** (seeds 0, 1, 2, both settings): STL, MTL, HiTTs, HiTTs + L_p + L_f with the chosen
   configuration; seed 0 also HiTTs + L_f, + L_p, w/o OE; then the few-shot setting of Table 7
   (seed 0: STL, MTL, HiTTs, HiTTs + L_p + L_f). Jobs run in that priority order until the budget
   ends; runs that already exist (same seed, setting and overrides) are reused, not retrained.

``scripts/collect_study.py`` turns the run folders into ``results/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hitts_schema import delta_mtl, metric_set_for  # noqa: E402

SETTINGS = ("one-label", "random-labels")
CHOICE_SETTINGS = ("one-label",)
"""Where candidates are diagnosed and chosen (the paper's ablations, Table 5, are one-label)."""
FEW_SHOT = "few-shot"
VALIDATION_IMAGES = 120
"""Training scenes held out for validation (of 795): 15 %, about the test split's share of NYUD-v2's
654 / 1449 halved; enough for a stable pooled mIoU, few enough to keep 675 scenes for training."""
FINAL_SEEDS = (0, 1, 2)
SCHEDULE_FACTOR = 3
BASE_EPOCHS, BASE_LR_STEP = 8, 6  # the cpu preset's schedule

# name -> config overrides (``--set``) of one diagnostic HiTTs variant. Model switches apply to HiTTs
# only; training-recipe switches (train.*, loss.*) apply to every method of a final run.
CANDIDATES: dict[str, tuple[str, ...]] = {
    "hitts": (),
    "gate_scale": ("model.gate_channel_scale=true",),  # authors' per-channel scale before the gate
    "small_init": ("model.token_init_std=0.05",),  # gates unsaturated at init
    "frozen_tokens": ("model.train_global_tokens=false",),  # authors' code: tokens never trained
    "bypass": ("model.head_reads_shared=true",),  # stride-8 layout gets the SegNet layout's F_s path
    "attn_keys": ("model.attention_reduction=1",),  # 192 keys at 12x16 instead of 12
    "authors_loss": ("loss.form=authors",),  # L_reg + 0.1 CE, depth weight 0.6
    "clip10": ("train.grad_clip_norm=10",),  # authors' gradient clipping
    "lr_half": ("train.lr=0.00025",),  # learning rate
}
ABLATIONS = ("hitts_no_fine", "hitts_no_global", "hitts_no_inter", "hitts_no_intra")
RECIPE_PREFIXES = ("train.", "loss.")


@dataclass
class Job:
    """One pipeline process (or chain): methods of one run folder, with their overrides."""

    key: str
    setting: str
    seed: int
    methods: tuple[str, ...]
    overrides: tuple[str, ...]
    folder: Path
    after: tuple[str, ...] = ()  # keys of jobs that must finish first
    discover: bool = False  # a discovery job (no training): the stage-1 HiTTs' pseudo labels
    phase: str = "diagnose"
    status: str = "pending"
    wall_s: float = 0.0
    proc: subprocess.Popen | None = field(default=None, repr=False)
    started: float = 0.0


def folder_for(out: Path, setting: str, seed: int, group: str, overrides: tuple[str, ...]) -> Path:
    """Run folder of a method group under fixed overrides: equal arguments give the same folder."""
    tag = hashlib.sha1(" ".join(sorted(overrides)).encode()).hexdigest()[:8] if overrides else "base"
    return out / setting / f"seed{seed}" / f"{group}-{tag}"


def recipe_only(overrides: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(o for o in overrides if o.startswith(RECIPE_PREFIXES))


def schedule(factor: int) -> tuple[str, ...]:
    return (f"train.epochs={BASE_EPOCHS * factor}", f"train.lr_step_epochs={BASE_LR_STEP * factor}")


class Study:
    """Builds the jobs of each phase and runs them in parallel, in priority order, within a budget."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.out = args, Path(args.out)
        self.jobs: dict[str, Job] = {}
        self.deadline = time.time() + args.budget_s
        self.python = args.python

    # ---- jobs ----
    def add(
        self,
        setting: str,
        seed: int,
        group: str,
        methods: tuple[str, ...],
        overrides: tuple[str, ...],
        phase: str,
        after: tuple[str, ...] = (),
        discover: bool = False,
    ) -> str:
        folder = folder_for(self.out, setting, seed, group, overrides)
        key = f"{folder.relative_to(self.out)}:{'+'.join(methods) or 'discovery'}"
        if key not in self.jobs:
            self.jobs[key] = Job(key, setting, seed, methods, overrides, folder, after, discover, phase)
        elif self.jobs[key].status == "pending":  # an earlier phase's job that this phase needs: run it now
            self.jobs[key].phase = phase
        return key

    def add_method_set(
        self,
        setting: str,
        seed: int,
        overrides: tuple[str, ...],
        phase: str,
        stage2: tuple[str, ...] = (),
        extra: tuple[str, ...] = (),
        baselines: bool = True,
    ) -> None:
        """STL and MTL (recipe overrides only), HiTTs (all overrides) and its stage-2 methods."""
        if baselines:
            for arch in ("stl", "mtl"):
                self.add(setting, seed, arch, (arch,), recipe_only(overrides), phase)
        teacher = self.add(setting, seed, "hitts", ("hitts",), overrides, phase)
        if stage2:  # one discovery job per teacher, so that parallel stage-2 runs never race on it
            found = self.add(setting, seed, "hitts", (), overrides, phase, after=(teacher,), discover=True)
            for m in stage2:
                self.add(setting, seed, "hitts", ("hitts", m), overrides, phase, after=(found,))
        for m in extra:
            self.add(setting, seed, m, (m,), overrides, phase)

    def command(self, job: Job) -> list[str]:
        a = self.args
        base = [
            self.python,
            "-m",
            "trainer",
            "pipeline",
            "--data",
            a.data,
            "--dataset",
            "synthetic",
            "--setting",
            job.setting,
            "--preset",
            a.preset,
            "--seed",
            str(job.seed),
            "--split",
            str(self.out / f"split-{job.setting}.json"),
            "--out",
            str(job.folder),
            "--resume",
            "--methods",
            *job.methods,
            "--set",
            f"data.validation_images={a.validation_images}",
            "--set",
            "data.eval_split=val",
            "--set",
            "train.eval_every=1",
        ]  # validation curves every epoch
        for o in job.overrides + tuple(a.extra_set):
            base += ["--set", o]
        return base

    def start(self, job: Job) -> None:
        job.folder.mkdir(parents=True, exist_ok=True)
        (job.folder / "overrides.json").write_text(json.dumps(list(job.overrides)))
        log = open(job.folder / f"log-{'+'.join(job.methods) or 'discovery'}.txt", "a")  # noqa: SIM115
        if job.discover:
            cmd = (
                f"{_quote(self.python)} -m trainer discover --run {_quote(str(job.folder / 'hitts'))}"
                f" --out {_quote(str(job.folder / 'discovery'))}"
            )
        else:
            cmd = " ".join(map(_quote, self.command(job)))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
        job.proc = subprocess.Popen(
            ["bash", "-c", cmd], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        job.status, job.started = "running", time.time()

    def done_already(self, job: Job) -> bool:
        ok = all((job.folder / m / "metrics.json").exists() for m in job.methods)
        return ok and (not job.discover or (job.folder / "discovery" / "manifest.json").exists())

    def run(self, phase: str, until: float, kill: bool = False) -> None:
        """Run the pending jobs of ``phase`` (in insertion order = priority) until they are done or
        ``until``; jobs still running then go on (into the next phase) unless ``kill``."""
        pending = [j for j in self.jobs.values() if j.phase == phase and j.status == "pending"]
        for j in pending:
            if self.done_already(j):
                j.status = "done"
        while True:
            running = [j for j in self.jobs.values() if j.status == "running"]
            for j in running:
                rc = j.proc.poll()
                if rc is not None:
                    j.status, j.wall_s = ("done" if rc == 0 else f"failed rc={rc}"), time.time() - j.started
                    print(f"[{_clock()}] {j.status:>6} {j.key} ({j.wall_s:.0f} s)", flush=True)
            running = [j for j in self.jobs.values() if j.status == "running"]
            ready = [
                j
                for j in self.jobs.values()
                if j.phase == phase
                and j.status == "pending"
                and all(self.jobs[a].status == "done" for a in j.after)
            ]
            blocked = [
                j
                for j in self.jobs.values()
                if j.status == "pending" and any(self.jobs[a].status.startswith("failed") for a in j.after)
            ]
            for j in blocked:
                j.status = "failed (teacher failed)"
            if time.time() > until:
                for j in running if kill else []:
                    j.proc.kill()
                    j.status = "killed at the budget"
                    print(f"[{_clock()}] killed {j.key}", flush=True)
                return
            if not running and not ready:
                return
            for j in ready[: max(self.args.parallel - len(running), 0)]:
                print(f"[{_clock()}]  start {j.key}", flush=True)
                self.start(j)
            time.sleep(2)

    # ---- phases ----
    def diagnose(self) -> None:
        long = schedule(SCHEDULE_FACTOR)  # the longest runs start first
        self.add("one-label", 0, "hitts", ("hitts",), long, "diagnose")
        self.add("one-label", 0, "mtl", ("mtl",), long, "diagnose")
        for setting in SETTINGS:
            # the Table 5 ablations are one-label experiments in the paper
            self.add_method_set(setting, 0, (), "diagnose", extra=ABLATIONS if setting == "one-label" else ())
        for setting in CHOICE_SETTINGS:
            for name, over in CANDIDATES.items():
                if name != "hitts":
                    self.add(setting, 0, "hitts", ("hitts",), over, "diagnose")
        for over in CANDIDATES.values():  # a recipe change must be offered to the baseline too
            if recipe_only(over):
                self.add("one-label", 0, "mtl", ("mtl",), recipe_only(over), "diagnose")

    def validation_delta(
        self, setting: str, seed: int, overrides: tuple[str, ...], method: str = "hitts"
    ) -> float | None:
        """Validation Delta_MTL (Table 1 set) of a HiTTs run against the plain STL run of its seed and
        setting (one fixed reference for every candidate)."""
        stl = folder_for(self.out, setting, seed, "stl", ()) / "stl" / "metrics.json"
        run = folder_for(self.out, setting, seed, "hitts", overrides) / method / "metrics.json"
        if not (stl.exists() and run.exists()):
            return None
        ref, mine = json.loads(stl.read_text()), json.loads(run.read_text())
        return delta_mtl(mine["val_metrics"], ref["val_metrics"], metric_set_for("synthetic", setting))

    def combine(self) -> tuple[str, ...] | None:
        """The union of the switches that beat plain HiTTs on validation in both settings (>= 2 of them)."""
        winners = []
        for name, over in CANDIDATES.items():
            if name == "hitts":
                continue
            gains = [
                (self.validation_delta(s, 0, over), self.validation_delta(s, 0, ())) for s in CHOICE_SETTINGS
            ]
            if all(v is not None and b is not None and v > b for v, b in gains):
                winners.append(name)
        if len(winners) < 2:
            return None
        combined = tuple(o for n in winners for o in CANDIDATES[n])
        CANDIDATES["+".join(winners)] = combined
        for setting in CHOICE_SETTINGS:
            self.add_method_set(setting, 0, combined, "combine", baselines=bool(recipe_only(combined)))
        return combined

    def choose(self) -> tuple[str, tuple[str, ...], dict]:
        """The rule: the candidate with the highest validation Delta_MTL (mean over ``CHOICE_SETTINGS``)."""
        scores = {}
        for name, over in CANDIDATES.items():
            deltas = [self.validation_delta(s, 0, over) for s in CHOICE_SETTINGS]
            if all(d is not None for d in deltas):
                scores[name] = sum(deltas) / len(deltas)
        best = max(scores, key=scores.get) if scores else "hitts"
        return best, CANDIDATES[best], scores

    def final(self, overrides: tuple[str, ...], baselines: bool = True, few_shot: bool = True) -> None:
        """The final jobs in priority order: the main rows on every seed, then the Table 5 extras
        (seed 0), then few-shot. ``baselines`` False: no STL / MTL (they exist already)."""
        main_stage2 = ("hitts_pseudo",)
        for seed in FINAL_SEEDS:
            for setting in SETTINGS:
                self.add_method_set(
                    setting, seed, overrides, "final", stage2=main_stage2, baselines=baselines
                )
        for setting in SETTINGS:
            extras = ("hitts_lf", "hitts_lp")
            self.add_method_set(setting, 0, overrides, "final", extras, ("hitts_no_oe",), baselines=False)
        if few_shot:
            self.add_method_set(FEW_SHOT, 0, overrides, "final", stage2=main_stage2)


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\"'\"'") + "'"


def _clock() -> str:
    return time.strftime("%H:%M:%S")


def prepare(args: argparse.Namespace) -> None:
    """The synthetic set and the three split files (made once, shared by every run)."""
    if not (Path(args.data) / "synthetic.json").exists():
        subprocess.run(
            [
                args.python,
                "-m",
                "trainer",
                "prepare",
                "--dataset",
                "synthetic",
                "--out",
                args.data,
                "--seed",
                "0",
                "--workers",
                str(args.workers),
                *args.prepare_args,
            ],
            cwd=REPO,
            check=True,
        )
    from trainer.config import apply_overrides, preset_config
    from trainer.pipeline import ensure_split, task_specs

    Path(args.out).mkdir(parents=True, exist_ok=True)
    for setting in (*SETTINGS, FEW_SHOT):
        cfg = preset_config(args.preset, "synthetic", setting)
        cfg = apply_overrides(cfg, [f"data.validation_images={args.validation_images}", *args.extra_set])
        ensure_split(cfg, args.data, task_specs(cfg), Path(args.out) / f"split-{setting}.json")


def main_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/study")
    p.add_argument("--data", default="data/synthetic")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--combine", action="store_true", help="phase 2: combine the winning switches")
    p.add_argument("--validation-images", type=int, default=VALIDATION_IMAGES)
    p.add_argument("--workers", type=int, default=2, help="processes for rendering the synthetic set")
    p.add_argument("--budget-s", type=float, default=6 * 3600)
    p.add_argument("--diagnose-share", type=float, default=0.45, help="share of the budget for phases 1-2")
    p.add_argument("--python", default=sys.executable)
    p.add_argument(
        "--set",
        dest="extra_set",
        action="append",
        default=[],
        help="override for every run (smoke tests: tiny data)",
    )
    p.add_argument("--prepare-arg", dest="prepare_args", action="append", default=[])
    return p


def main(argv: list[str] | None = None) -> int:
    args = main_parser().parse_args(argv)
    study = Study(args)
    t0 = time.time()
    prepare(args)
    study.diagnose()
    diagnose_until = t0 + args.budget_s * args.diagnose_share
    study.run("diagnose", diagnose_until - (args.budget_s * args.diagnose_share * 0.3 if args.combine else 0))
    combined = study.combine() if args.combine else None
    if combined:
        study.run("combine", diagnose_until)
    best, overrides, scores = study.choose()
    choice = {
        "chosen": best,
        "overrides": list(overrides),
        "validation_delta_mtl": scores,
        "rule": "highest validation Delta_MTL (Table 1 set, vs STL) on one-label, seed 0; unfinished runs cannot win",
        "combined_candidate": list(combined) if combined else None,
    }
    (Path(args.out) / "choice.json").write_text(json.dumps(choice, indent=2))
    print(json.dumps(choice, indent=2), flush=True)
    study.final(overrides)
    study.run("final", study.deadline, kill=True)
    for j in study.jobs.values():  # diagnosis runs that outlived the choice finish with the final phase
        if j.status == "running":
            j.proc.kill()
            j.status = "killed at the budget"
    status = {
        k: {"status": j.status, "wall_s": round(j.wall_s, 1), "phase": j.phase} for k, j in study.jobs.items()
    }
    (Path(args.out) / "jobs.json").write_text(json.dumps(status, indent=2))
    failed = [k for k, v in status.items() if v["status"] != "done"]
    print(f"{len(status) - len(failed)} of {len(status)} jobs done in {time.time() - t0:.0f} s", flush=True)
    return 0 if not failed else 3


if __name__ == "__main__":
    raise SystemExit(main())
