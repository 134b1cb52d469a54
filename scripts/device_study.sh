#!/usr/bin/env bash
# One call on a lent GPU (the `device` tool; 10 minutes at most): the study of issue 10, then the
# prepared GPU check of issue 13. Everything that matters is written under $OUT.
#   STUDY_BUDGET_S (default 330), CHECK_BUDGET_S (default 150), PARALLEL (default 16)
set -uo pipefail
source "$(dirname "$0")/device_env.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
start=$(date +%s)
python3 scripts/study.py --out runs/study --data /tmp/syn --python python3 --parallel "${PARALLEL:-16}" \
  --workers 16 --budget-s "${STUDY_BUDGET_S:-330}" 2>&1 | tee "$OUT/study.log" | grep -v " start " | tail -60
echo "study: $(( $(date +%s) - start )) s"
python3 scripts/collect_study.py runs/study --results "$OUT/results" --exports "$OUT/exports" 2>&1 | tail -3
find runs/study -name '*.json' -o -name '*.jsonl' -o -name 'log-*.txt' | tar czf "$OUT/study-runs.tgz" -T -
tar czf "$OUT/results.tgz" -C "$OUT" results exports
timeout $(( ${CHECK_BUDGET_S:-150} + 30 )) python3 benchmarks/gpu_check.py --out "$OUT/gpu_check.json" \
  --budget-s "${CHECK_BUDGET_S:-150}" 2>&1 | tail -30
echo "total: $(( $(date +%s) - start )) s"
