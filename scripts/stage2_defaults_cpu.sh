#!/usr/bin/env bash
# Stage 2 of the shipped HiTTs on a CPU (no GPU lent): discovery with the shipped stage-1 checkpoint as
# teacher, then HiTTs + L_p + L_f from scratch on the same split and recipe as the teacher and the MTL
# (scripts/train_defaults.py's), with their 6-epoch poly schedule stopped after STOP_AFTER epochs, the
# point the GPU call's deadline stopped them at; the test split is evaluated once by
# scripts/finish_stopped_run.py. About 23 minutes an epoch at 288x384 on 2 cores (discovery: 10 minutes).
#
#   bash scripts/stage2_defaults_cpu.sh [RUNS=runs/defaults] [DATA=/tmp/defaults/data-wide]
#   RESUME=--resume bash scripts/stage2_defaults_cpu.sh   # continue a killed run from its checkpoint
#   FROM=wide-full STOP_AFTER=6 bash scripts/stage2_defaults_cpu.sh   # from the teacher trained to
#       the end of its schedule (scripts/finish_schedule_cpu.sh), the whole schedule (about 3 hours)
#   FROM=walls-tail EPOCHS=8 STOP_AFTER=8 bash scripts/stage2_defaults_cpu.sh runs/defaults /tmp/defaults/data-walls
#       # the teacher of the walls tail (scripts/walls_tail_cpu.sh, 8 epochs) on its wide_walls scenes
#
# DATA: the teacher's scenes, rendered again where they are missing (the generator is deterministic):
#   python -m trainer prepare --out DATA --num-train 2400 --num-test 654 --seed 0 --height 288 --width 384 --profile wide
set -euo pipefail
RUNS=${1:-runs/defaults}
DATA=${2:-/tmp/defaults/data-wide}
EPOCHS=${EPOCHS:-6}  # the poly schedule's length: the teacher's
STOP_AFTER=${STOP_AFTER:-3}
PY=${PY:-python}
W=$RUNS/wide  # the split, quantisers and recipe of the shipped runs
F=$RUNS/${FROM:-wide}  # the teacher's folder: FROM/hitts -> FROM/discovery -> FROM/hitts_pseudo
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=30
mkdir -p "$F/hitts_pseudo"
cp "$W/quantisers.json" "$F/hitts_pseudo/"  # pseudo labels index the teacher's bins
[ -f "$F/discovery/manifest.json" ] || $PY -m trainer discover --run "$F/hitts" --data "$DATA" --out "$F/discovery"
# the teacher's overrides and its schedule (6 epochs: the one the teacher's GPU call chose)
source "$(dirname "$0")/cpu_recipe.sh"
recipe_sets hitts train.epochs="$EPOCHS"
$PY -m trainer train --arch hitts --discovery "$F/discovery" --data "$DATA" --dataset synthetic \
  --preset cpu --setting one-label --seed 0 --split "$W/split.json" --out "$F/hitts_pseudo" \
  "${SETS[@]}" ${RESUME:-} &
pid=$!
if [ "$STOP_AFTER" -ge "$EPOCHS" ]; then  # the whole schedule: the run evaluates its test split itself
  wait $pid
  exit
fi
# the log line of an epoch is written just before its checkpoint: stop once both are on disk
while kill -0 $pid 2>/dev/null; do
  if [ -f "$F/hitts_pseudo/log.jsonl" ] && [ "$(wc -l <"$F/hitts_pseudo/log.jsonl")" -ge "$STOP_AFTER" ]; then
    sleep 90 && kill $pid && echo "stopped after $STOP_AFTER epochs"
    break
  fi
  sleep 20
done
wait $pid || true
$PY scripts/finish_stopped_run.py "$F/hitts_pseudo" --data "$DATA" --reason \
  "stopped after $STOP_AFTER of $EPOCHS epochs on CPU, where its stage-1 teacher and the MTL were stopped by the GPU call's deadline; weights of the last finished epoch"
