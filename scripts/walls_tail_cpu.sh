#!/usr/bin/env bash
# A sim-to-real tail for the shipped pair: the 6-epoch HiTTs (stage 1) and MTL trained 2 more epochs on
# the `wide_walls` generator profile (trainer/data/synthetic_profile.py: papers, notice boards and
# whiteboards on the walls, doors, off-white paint, views nearer level), on a CPU, then exported and
# measured through the app's runtime, and the committed rule (collect_defaults.choose_walls_tail;
# README, "A tail on the walls of real rooms") applied. It does not change exports/: when the rule
# says so, scripts/ship_walls_tail.sh does. PROFILE=wide runs the control instead: the same 2 epochs
# on the `wide` scenes the pair was trained on (OUT wide-tail, exports *_tail, no rule: it separates
# what the walls scenes did from what two more epochs do).
#
# Each run is a copy of its 6-epoch run folder resumed with train.epochs=8: the same split (scene i of
# the wide_walls set takes the labels scene i of the wide set had), recipe, seed and quantisers; the
# poly schedule continues from epoch 6 of 8 (learning rate 0.29x, then 0.15x the base), Adam's moments
# carried on. (Before trainer/engine.py's rate_of_schedule, epoch 7 trained at the rate the 6-epoch
# schedule ended on, 0: README, "Erratum".) Epochs 7-8 are validated on the scenes the split holds out. The two runs train side by
# side, one thread each; run the script again to continue (--resume).
#
#   bash scripts/walls_tail_cpu.sh [RUNS=runs/defaults] [DATA=/tmp/defaults/data-walls]
#   PROFILE=wide bash scripts/walls_tail_cpu.sh runs/defaults /tmp/defaults/data-wide   # the control
#   (data: python -m trainer prepare --out /tmp/defaults/data-walls --num-train 2400 --num-test 654
#          --seed 0 --height 288 --width 384 --profile wide_walls)
set -euo pipefail
RUNS=${1:-runs/defaults}
DATA=${2:-/tmp/defaults/data-walls}
PROFILE=${PROFILE:-wide_walls}
PY=${PY:-python}
W=$RUNS/wide
SRC=$RUNS/wide-full
case $PROFILE in
  wide_walls) NAME=walls-tail SUFFIX=_walls ;;
  wide) NAME=wide-tail SUFFIX=_tail ;;
  *) echo "PROFILE: wide_walls or wide, not '$PROFILE'" >&2; exit 2 ;;
esac
OUT=$RUNS/$NAME
TAIL_EPOCHS=8
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=60 OMP_NUM_THREADS=${THREADS:-1}
source "$(dirname "$0")/cpu_recipe.sh"
continue_pair "$OUT" "$DATA" $TAIL_EPOCHS "$W" "$SRC/hitts" "$SRC/mtl"
stamp_history "epochs 1-3 on an H200 (bf16) and 4-6 on a 2-core CPU (fp32, Adam restarted at epoch 4) \
on the 'wide' scenes; epochs 7-8 on a 2-core CPU (fp32) on the '$PROFILE' scenes, the poly schedule \
extended from 6 to 8 epochs (scripts/walls_tail_cpu.sh)" "$OUT"/{hitts,mtl}/metrics.json
# the four exports side by side: the 6-epoch pair the tail started from (exported from its runs, as
# scripts/ship_defaults_cpu.sh shipped it: exports/ may hold a later pair by now) and the tail pair
EXP=$OUT/exports
mkdir -p "$EXP"
for arch in hitts mtl; do
  [ -f "$EXP/$arch/manifest.json" ] || $PY -m trainer export --run "$SRC/$arch" --out "$EXP/$arch" --name "$arch"
  $PY -m trainer export --run "$OUT/$arch" --out "$EXP/$arch$SUFFIX" --name "$arch$SUFFIX"
done
if [ "$PROFILE" = wide_walls ]; then
  measure_candidates "$RUNS" "$NAME" "$EXP" "$NAME" --tail-choice walls-tail
else
  measure_candidates "$RUNS" "$NAME" "$EXP" "$NAME"
fi
