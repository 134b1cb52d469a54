#!/usr/bin/env bash
# The shipped stage-1 HiTTs and MTL, trained on to the end of their 6-epoch schedule on a CPU (no GPU
# lent): each is a copy of its run folder resumed from the checkpoint the GPU call's deadline left
# (epoch 3 of 6), with the same split, recipe and schedule (scripts/train_defaults.py's; config.json
# equals the GPU run's but for num_workers and cache_in_memory). The two runs train side by side, one
# thread each, so they stay at the same epoch if a session stops them; run it again to continue
# (--resume). Images are read from disk each step: one run's in-memory cache of the 2400 scenes takes
# 13 GB, two do not fit in 24 GB, and decoding costs ~1 % of a CPU step.
# The originals (the shipped models' runs) are not touched.
#
#   bash scripts/finish_schedule_cpu.sh [RUNS=runs/defaults] [DATA=/tmp/defaults/data-wide]
set -euo pipefail
RUNS=${1:-runs/defaults}
DATA=${2:-/tmp/defaults/data-wide}
PY=${PY:-python}
W=$RUNS/wide
OUT=$RUNS/wide-full
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=60 OMP_NUM_THREADS=${THREADS:-1}
source "$(dirname "$0")/cpu_recipe.sh"
continue_pair "$OUT" "$DATA" 6 "$W" "$W/hitts" "$W/mtl-pipeline/mtl"
stamp_history "epochs 1-3 on an H200 (bf16); epochs 4-6 on a 2-core CPU (fp32), resumed from a weights-only \
checkpoint: Adam's moment estimates restarted at epoch 4 (scripts/finish_schedule_cpu.sh)" "$OUT"/{hitts,mtl}/metrics.json
