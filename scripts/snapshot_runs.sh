#!/usr/bin/env bash
# Copy a study's run records (JSON only: no checkpoints, no discovery arrays) into results/runs/NAME.
#   bash scripts/snapshot_runs.sh runs/study-cpu study-cpu
set -euo pipefail
src=$1 dst=results/runs/$2
mkdir -p "$dst"
(cd "$src" && find . \( -name '*.json' -o -name '*.jsonl' \) -not -path '*/discovery/*' -print0) \
  | (cd "$src" && xargs -0 cp --parents -t "$OLDPWD/$dst")
