"""Follow-up runs of the study (same folders, same commands as ``scripts/study.py``): the HiTTs
variant that leads the validation diagnosis on the remaining seeds and settings, and the diagnosis
candidates that the first call's budget cut off.

    python scripts/study_followup.py --out runs/study --data /tmp/syn --budget-s 150 --parallel 16
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from study import CANDIDATES, FINAL_SEEDS, SETTINGS, Study, main_parser, prepare  # noqa: E402

LEADER = "gate_scale"
UNFINISHED = ("attn_keys", "authors_loss", "clip10", "lr_half")


def main() -> int:
    args = main_parser().parse_args()
    study = Study(args)
    prepare(args)
    for seed in FINAL_SEEDS:
        for setting in SETTINGS:
            if (seed, setting) != (0, "one-label"):  # that one is a diagnosis run already
                study.add(setting, seed, "hitts", ("hitts",), CANDIDATES[LEADER], "final")
    for name in UNFINISHED:
        study.add("one-label", 0, "hitts", ("hitts",), CANDIDATES[name], "final")
    study.run("final", time.time() + args.budget_s, kill=True)
    print({k: j.status for k, j in study.jobs.items()}, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
