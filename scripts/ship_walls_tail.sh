#!/usr/bin/env bash
# After scripts/walls_tail_cpu.sh: when its rule (results/defaults/choice-walls-tail.json) says
# "ship_tail", export the tail pair as the shipped `hitts` (with its fp16 variant) and `mtl`, and measure
# them through the app's runtime into their manifests (10 real frames; 100 fresh scenes of the plain
# generator and of `wide`, seed 2024), as scripts/ship_defaults_cpu.sh does for the 6-epoch pair.
#
#   bash scripts/ship_walls_tail.sh [RUNS=runs/defaults]
set -euo pipefail
RUNS=${1:-runs/defaults}
PY=${PY:-python}
CHOICE=results/defaults/choice-walls-tail.json
ship=$($PY -c 'import json, sys; c = json.load(open(sys.argv[1])); print(c.get("decided") and c.get("ship_tail"))' "$CHOICE")
if [ "$ship" != True ]; then
  echo "rule: the shipped pair stays ($CHOICE)"
  cat "$CHOICE"
  exit 0
fi
$PY -m trainer export --run "$RUNS/walls-tail/hitts" --out exports/hitts --name hitts --fp16
$PY -m trainer export --run "$RUNS/walls-tail/mtl" --out exports/mtl --name mtl
$PY scripts/evaluate_shipped.py --seed 2024 --num 100 --profile nyu --update-manifest \
  --out results/defaults/eval-tail-nyu.json
$PY scripts/evaluate_shipped.py --seed 2024 --num 100 --profile wide --out results/defaults/eval-tail-wide.json
$PY scripts/space_files.py
