#!/usr/bin/env bash
# Second, short device call: scripts/study_followup.py, run files back under $OUT.
set -uo pipefail
source "$(dirname "$0")/device_env.sh"
mkdir -p runs/study && cp carry-splits/split-*.json runs/study/
python3 scripts/study_followup.py --out runs/study --data /tmp/syn --python python3 --parallel 16 --workers 16 \
  --budget-s "${BUDGET_S:-140}" 2>&1 | grep -v " start " | tail -20
find runs/study -name 'metrics.json' -o -name 'log.jsonl' -o -name 'overrides.json' -o -name 'config.json' \
  | tar czf "$OUT/followup-runs.tgz" -T -
