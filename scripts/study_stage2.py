"""Stage 2 of the study's final configuration where no GPU is left (the stage-1 teachers of the GPU
runs stayed on the lent machine): each chain retrains its teacher (stage 1, same seed and split),
runs discovery, then HiTTs + L_p + L_f; seed 0 also + L_p, + L_f and w/o OE. Same commands and
folder layout as ``scripts/study.py``, under another root, so ``collect_study.py --stage2-runs`` can
tell the hardware apart.

    python scripts/study_stage2.py --out runs/study-cpu --data data/synthetic --parallel 2
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from study import CANDIDATES, Study, main_parser, prepare  # noqa: E402

CHOSEN = "gate_scale"
"""The validation rule's choice over the complete diagnosis (results/study-choice.json)."""


def main() -> int:
    p = main_parser()
    p.add_argument(
        "--splits", type=Path, default=Path("runs/study"), help="folder of the GPU runs' split files"
    )
    args = p.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for split in args.splits.glob("split-*.json"):
        if not (Path(args.out) / split.name).exists():
            shutil.copy(split, Path(args.out) / split.name)
    study = Study(args)
    prepare(args)
    study.final(CANDIDATES[CHOSEN], baselines=False, few_shot=False)  # main rows first, then the extras
    study.run("final", time.time() + args.budget_s, kill=True)
    print({k: j.status for k, j in study.jobs.items()}, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
