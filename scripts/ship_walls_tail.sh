#!/usr/bin/env bash
# After scripts/walls_tail_cpu.sh (RULE=tail), scripts/walls_stage2_cpu.sh (RULE=stage2) or
# scripts/walls_longer_cpu.sh (RULE=longer): when that rule (results/defaults/choice-walls-RULE.json)
# ships its pair, export it as the shipped `hitts` (the tail HiTTs, its stage 2 or that trained longer,
# with the fp16 variant) and `mtl` (the tail MTL or that trained longer), and measure them through
# the app's runtime into their manifests (10 real frames; 100 fresh scenes of the plain generator,
# `wide` and `wide_walls`, seed 2024), as scripts/ship_defaults_cpu.sh does for the 6-epoch pair.
#
#   bash scripts/ship_walls_tail.sh [RUNS=runs/defaults] [RULE=tail|stage2|longer]
set -euo pipefail
RUNS=${1:-runs/defaults}
RULE=${2:-tail}
PY=${PY:-python}
case $RULE in
  tail) HITTS=walls-tail/hitts MTL=walls-tail/mtl ;;
  stage2) HITTS=walls-tail/hitts_pseudo MTL=walls-tail/mtl ;;
  longer) HITTS=walls-longer/hitts MTL=walls-longer/mtl ;;
  *) echo "RULE: tail, stage2 or longer, not '$RULE'" >&2; exit 2 ;;
esac
CHOICE=results/defaults/choice-walls-$RULE.json
ship=$($PY -c 'import json, sys; c = json.load(open(sys.argv[1]))
print(bool(c.get("decided") and c.get("ship", c.get("ship_tail"))))' "$CHOICE")
if [ "$ship" != True ]; then
  echo "rule: the shipped pair stays ($CHOICE)"
  cat "$CHOICE"
  exit 0
fi
$PY -m trainer export --run "$RUNS/$HITTS" --out exports/hitts --name hitts --fp16
$PY -m trainer export --run "$RUNS/$MTL" --out exports/mtl --name mtl
$PY scripts/evaluate_shipped.py --seed 2024 --num 100 --profile nyu --update-manifest \
  --out results/defaults/eval-$RULE-nyu.json
for profile in wide wide_walls; do
  $PY scripts/evaluate_shipped.py --seed 2024 --num 100 --profile $profile --out results/defaults/eval-$RULE-$profile.json
done
$PY scripts/space_files.py
