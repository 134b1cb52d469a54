#!/usr/bin/env bash
# results/defaults/defaults.md and curves.png from the committed records (the README's figures);
# extra arguments go to collect_defaults.py (e.g. --choice FILE: the shipping rule's decision).
set -euo pipefail
prev="previous (96x128, 8 epochs, nyu)" new="new (288x384, 3 epochs, wide)"
full=()  # the pair the 6-epoch rule ships (scripts/ship_defaults_cpu.sh), once measured
for profile in nyu wide; do
  f=results/defaults/eval-full-$profile.json
  if [ -f "$f" ]; then full+=(--eval "after the 6-epoch rule (288x384, wide)=$f"); fi
done
${PY:-python} scripts/collect_defaults.py results/runs/defaults --out results/defaults --ablation results/defaults/ablation-cpu \
  --eval "$prev=results/defaults/eval-previous-nyu.json" --eval "$prev=results/defaults/eval-previous-wide.json" \
  --eval "$new=results/defaults/eval-new-nyu.json" --eval "$new=results/defaults/eval-new-wide.json" "${full[@]}" "$@"
