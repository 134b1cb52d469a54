#!/usr/bin/env bash
# Stage 2 on the walls scenes, on a CPU: discovery with the walls tail's HiTTs (scripts/walls_tail_cpu.sh)
# as teacher on the 2400 `wide_walls` training scenes, then HiTTs + L_p + L_f from scratch on them for 8
# epochs (the teacher's and the tail MTL's count; same split, recipe and seed), exported and measured
# through the app's runtime beside the shipped and the tail pairs (10 real frames; 100 fresh
# `wide_walls` and `wide` scenes, seed 2024), and its rule applied (collect_defaults.choose_walls_stage2;
# README, "Stage 2 on the walls scenes"). It does not change exports/: when the rule says so,
# `scripts/ship_walls_tail.sh RUNS stage2` does. About 10 minutes of discovery and 23 an epoch on 2
# cores; run it again to continue a killed run (it resumes from the last finished epoch).
#
#   bash scripts/walls_stage2_cpu.sh [RUNS=runs/defaults] [DATA=/tmp/defaults/data-walls]
set -euo pipefail
RUNS=${1:-runs/defaults}
DATA=${2:-/tmp/defaults/data-walls}
PY=${PY:-python}
OUT=$RUNS/walls-tail
RUN=$OUT/hitts_pseudo
if [ ! -f "$RUN/metrics.json" ]; then
  resume=""
  [ -f "$RUN/checkpoint.pt" ] && resume=--resume
  FROM=walls-tail EPOCHS=8 STOP_AFTER=8 RESUME=$resume PY=$PY bash "$(dirname "$0")/stage2_defaults_cpu.sh" "$RUNS" "$DATA"
fi
source "$(dirname "$0")/cpu_recipe.sh"
stamp_history "HiTTs + L_p + L_f, 8 epochs from scratch on the 'wide_walls' scenes on a 2-core CPU (fp32); \
pseudo labels and feature targets from the walls tail's HiTTs (6 epochs on 'wide' + 2 on 'wide_walls') \
(scripts/walls_stage2_cpu.sh)" "$RUN/metrics.json"
EXP=$OUT/exports  # hitts, mtl (the shipped pair), hitts_walls, mtl_walls (the tail pair): walls_tail_cpu.sh
$PY -m trainer export --run "$RUN" --out "$EXP/hitts_walls_pseudo" --name hitts_walls_pseudo
measure_candidates "$RUNS" walls-tail "$EXP" walls-stage2 --walls-stage2-choice walls-stage2
