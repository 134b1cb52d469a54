#!/usr/bin/env bash
# results/defaults/defaults.md and curves.png from the committed records (the README's figures);
# extra arguments go to collect_defaults.py (e.g. --choice FILE: the shipping rule's decision).
set -euo pipefail
prev="previous (96x128, 8 epochs, nyu)" new="new (288x384, 3 epochs, wide)"
reports=()
# add_reports LABEL NAME PROFILE...: --eval LABEL=results/defaults/eval-NAME-PROFILE.json for each that exists
add_reports() {
  local label=$1 name=$2 profile f
  shift 2
  for profile in "$@"; do
    f=results/defaults/eval-$name-$profile.json
    if [ -f "$f" ]; then reports+=(--eval "$label=$f"); fi
  done
}
# the pairs later rules shipped, once measured: the 6-epoch rule (scripts/ship_defaults_cpu.sh), the
# walls stage-2 rule and the longer rule (scripts/ship_walls_tail.sh RUNS stage2|longer)
add_reports "after the 6-epoch rule (288x384, wide)" full nyu wide
add_reports "after the walls stage-2 rule (288x384, wide_walls)" stage2 nyu wide wide_walls
add_reports "after the longer rule (288x384, wide_walls, 10 epochs)" longer nyu wide wide_walls
# the candidates' reports (each against the HiTTs shipped when it ran, marked ref)
add_reports "walls tail: the 6-epoch pair and the tail pair" walls-tail wide_walls wide
add_reports "control tail: the 6-epoch pair and the control pair" wide-tail wide_walls wide
add_reports "walls stage 2, beside the 6-epoch and the tail pairs" walls-stage2 wide_walls wide
add_reports "trained longer: the shipped pair and the longer pair" walls-longer wide_walls wide
${PY:-python} scripts/collect_defaults.py results/runs/defaults --out results/defaults --ablation results/defaults/ablation-cpu \
  --eval "$prev=results/defaults/eval-previous-nyu.json" --eval "$prev=results/defaults/eval-previous-wide.json" \
  --eval "$new=results/defaults/eval-new-nyu.json" --eval "$new=results/defaults/eval-new-wide.json" "${reports[@]}" "$@"
