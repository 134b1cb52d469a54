#!/usr/bin/env bash
# results/defaults/defaults.md and curves.png from the committed records (the README's figures);
# extra arguments go to collect_defaults.py (e.g. --choice FILE: the shipping rule's decision).
set -euo pipefail
prev="previous (96x128, 8 epochs, nyu)" new="new (288x384, 3 epochs, wide)"
shipped=()  # the pairs later rules shipped, once measured: the 6-epoch rule (scripts/ship_defaults_cpu.sh),
# the walls stage-2 rule (scripts/ship_walls_tail.sh RUNS stage2), the longer rule
for profile in nyu wide; do
  f=results/defaults/eval-full-$profile.json
  if [ -f "$f" ]; then shipped+=(--eval "after the 6-epoch rule (288x384, wide)=$f"); fi
done
for profile in nyu wide wide_walls; do
  f=results/defaults/eval-stage2-$profile.json
  if [ -f "$f" ]; then shipped+=(--eval "after the walls stage-2 rule (288x384, wide_walls)=$f"); fi
done
for profile in nyu wide wide_walls; do  # the longer rule (scripts/ship_walls_tail.sh RUNS longer)
  f=results/defaults/eval-longer-$profile.json
  if [ -f "$f" ]; then shipped+=(--eval "after the longer rule (288x384, wide_walls, 10 epochs)=$f"); fi
done
# the candidates' reports (each against the HiTTs shipped when it ran, marked ref): the walls tail, its
# control, the walls stage 2, the longer pair
for pair in "walls-tail=walls tail: the 6-epoch pair and the tail pair" \
  "wide-tail=control tail: the 6-epoch pair and the control pair" \
  "walls-stage2=walls stage 2, beside the 6-epoch and the tail pairs" \
  "walls-longer=trained longer: the shipped pair and the longer pair"; do
  for profile in wide_walls wide; do
    f=results/defaults/eval-${pair%%=*}-$profile.json
    if [ -f "$f" ]; then shipped+=(--eval "${pair#*=}=$f"); fi
  done
done
${PY:-python} scripts/collect_defaults.py results/runs/defaults --out results/defaults --ablation results/defaults/ablation-cpu \
  --eval "$prev=results/defaults/eval-previous-nyu.json" --eval "$prev=results/defaults/eval-previous-wide.json" \
  --eval "$new=results/defaults/eval-new-nyu.json" --eval "$new=results/defaults/eval-new-wide.json" "${shipped[@]}" "$@"
