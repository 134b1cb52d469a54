#!/usr/bin/env bash
# Reproduction study (issue: STL vs MTL vs HiTTs vs HiTTs + pseudo supervision) on the synthetic set
# with the `cpu` preset, as two parallel single-threaded streams on a 2-core machine.
# Every method of a setting shares one split file; the main rows run with 2 training seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/synthetic}
OUT=${OUT:-runs/repro}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
[ -f "$DATA/synthetic.json" ] || $PY -m trainer prepare --dataset synthetic --out "$DATA" --seed 0 --workers 2
run() {  # setting seed methods...
  local setting=$1 seed=$2; shift 2
  OMP_NUM_THREADS=1 $PY -m trainer pipeline --data "$DATA" --dataset synthetic --setting "$setting" \
    --preset cpu --seed "$seed" --split "$OUT/split-$setting.json" --out "$OUT/$setting-seed$seed" \
    --methods "$@" --resume > "$OUT/$setting-seed$seed.log" 2>&1
}
# the split files first, so that the parallel streams share them
$PY - "$DATA" "$OUT" <<'PYEOF'
import sys
from pathlib import Path
from trainer.config import preset_config
from trainer.pipeline import ensure_split, task_specs
for setting in ("one-label", "random-labels"):
    cfg = preset_config("cpu", "synthetic", setting)
    ensure_split(cfg, sys.argv[1], task_specs(cfg), Path(sys.argv[2]) / f"split-{setting}.json")
PYEOF
( run one-label 0 stl mtl hitts hitts_pseudo hitts_lf hitts_lp hitts_no_oe ) &
( run one-label 1 stl mtl hitts hitts_pseudo && run random-labels 0 stl mtl hitts hitts_pseudo ) &
wait
$PY scripts/collect_results.py "$OUT"
