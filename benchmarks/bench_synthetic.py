"""Throughput of the synthetic NYUD-v2 generator: images/s per core, with a time per stage.

Run: ``python benchmarks/bench_synthetic.py [--num 60] [--height 288] [--width 384] [--profile wide]``

"Per core" is measured from this process's CPU time (``time.process_time``), so it does not
depend on what else runs on the machine; wall-clock figures are printed too, with the load
average, because on a shared machine they can be far worse. Both measurements run one process
(``workers=1``); ``write_dataset`` with ``workers=N`` scales with the cores it gets.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.data.synthetic import generate_scene, tune_allocator, write_dataset  # noqa: E402
from trainer.data.synthetic_profile import DEFAULT_PROFILE, PROFILES  # noqa: E402

WARMUP_IMAGES = 2
"""Images rendered first and not timed (noise tiles, pools and caches are built on first use)."""


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:6.1f} images/s ({1000 * seconds / n:5.1f} ms/image)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num", type=int, default=40, help="images per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="measurements; the best is reported")
    parser.add_argument("--height", type=int, default=288)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-tune", action="store_true", help="leave glibc malloc at its defaults")
    parser.add_argument(
        "--profile", choices=sorted(PROFILES), default=DEFAULT_PROFILE, help="generator profile"
    )
    args = parser.parse_args(argv)
    tuned = False if args.no_tune else tune_allocator()
    print(
        f"profile {args.profile}, size {args.height}x{args.width}, {args.num} images x best of {args.repeat}, "
        f"malloc tuned: {tuned}, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus"
    )
    for i in range(WARMUP_IMAGES):
        generate_scene(args.seed, "train", args.num + i, args.height, args.width, profile=args.profile)

    best = (float("inf"), float("inf"), {})
    for _ in range(args.repeat):
        timings: dict[str, float] = {}
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(args.num):
            generate_scene(
                args.seed, "train", i, args.height, args.width, timings=timings, profile=args.profile
            )
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        best = min(best, (cpu, wall, timings), key=lambda b: b[0])
    cpu, wall, timings = best
    print(f"generate_scene   per core (CPU time): {_rate(args.num, cpu)}   wall: {_rate(args.num, wall)}")
    total = sum(timings.values())
    for stage, seconds in timings.items():
        print(f"    {stage:14s} {1000 * seconds / args.num:6.2f} ms  {100 * seconds / total:5.1f} %")

    best = (float("inf"), float("inf"))
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            cpu, wall = time.process_time(), time.perf_counter()
            out = write_dataset(
                Path(tmp) / str(r),
                num_train=args.num,
                num_test=0,
                seed=args.seed,
                height=args.height,
                width=args.width,
                workers=1,
                progress=False,
                profile=args.profile,
            )
            best = min(best, (time.process_time() - cpu, time.perf_counter() - wall))
        size = sum(f.stat().st_size for f in out.rglob("*.npy"))
    cpu, wall = best
    print(
        f"write_dataset    per core (CPU time): {_rate(args.num, cpu)}   wall: {_rate(args.num, wall)}   "
        f"{size / args.num / 2**20:.2f} MiB/image"
    )


if __name__ == "__main__":
    main()
