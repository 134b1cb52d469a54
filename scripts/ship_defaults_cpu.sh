#!/usr/bin/env bash
# After scripts/finish_schedule_cpu.sh: apply the committed rule (collect_defaults.choose_shipped) and,
# where it picks another run than the one shipped, export it and measure it through the app's runtime
# (10 real frames; 100 fresh scenes of each generator profile, seed 2024), once.
#
#   bash scripts/ship_defaults_cpu.sh [RUNS=runs/defaults]
set -euo pipefail
RUNS=${1:-runs/defaults}
PY=${PY:-python}
CHOICE=results/defaults/choice-6-epochs.json
mkdir -p results/runs/defaults
(cd "$RUNS" && find wide-full -name '*.json' -o -name '*.jsonl' | tar cf - -T -) | tar xf - -C results/runs/defaults
PY=$PY bash scripts/collect_defaults.sh --choice "$CHOICE"
read -r decided hitts mtl < <($PY -c 'import json, sys; c = json.load(open(sys.argv[1]))
print(c["decided"], c.get("hitts", "-"), c.get("mtl", "-"))' "$CHOICE")
[ "$decided" = True ] || { cat "$CHOICE"; exit 1; }
echo "rule: HiTTs = $hitts, MTL = $mtl"
shipped_hitts=wide-full/hitts shipped_mtl=wide-full/mtl  # what exports/ holds (2026-11-30); update on a change
changed=0
if [ "$hitts" != "$shipped_hitts" ]; then
  $PY -m trainer export --run "$RUNS/$hitts" --out exports/hitts --name hitts --fp16; changed=1
fi
if [ "$mtl" != "$shipped_mtl" ]; then
  $PY -m trainer export --run "$RUNS/$mtl" --out exports/mtl --name mtl; changed=1
fi
if [ $changed = 1 ]; then
  $PY scripts/evaluate_shipped.py --seed 2024 --num 100 --profile nyu --update-manifest \
    --out results/defaults/eval-full-nyu.json
  $PY scripts/evaluate_shipped.py --seed 2024 --num 100 --profile wide --out results/defaults/eval-full-wide.json
  PY=$PY bash scripts/collect_defaults.sh  # the new figures' rows
fi
