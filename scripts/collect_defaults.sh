#!/usr/bin/env bash
# results/defaults/defaults.md and curves.png from the committed records (the README's figures).
set -euo pipefail
prev="previous (96x128, 8 epochs, nyu)" new="new (288x384, 3 epochs, wide)"
python scripts/collect_defaults.py results/runs/defaults --out results/defaults --ablation results/defaults/ablation-cpu \
  --eval "$prev=results/defaults/eval-previous-nyu.json" --eval "$prev=results/defaults/eval-previous-wide.json" \
  --eval "$new=results/defaults/eval-new-nyu.json" --eval "$new=results/defaults/eval-new-wide.json"
