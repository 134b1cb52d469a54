#!/usr/bin/env bash
# Issue 11 on a lent GPU (one 10-minute call; carry .whl): the default models' full recipe on the
# `wide` set, sized so that rendering, HiTTs stage 1 -> discovery -> stage 2 and MTL fit the call.
# Afterwards, here: bash scripts/import_defaults.sh OUT, the exports and scripts/evaluate_shipped.py
# (README, "Shipped default models").
#   run: bash scripts/device_defaults.sh   (timeout_s 600, carry [".whl"])
set -uo pipefail
source "$(dirname "$0")/device_env.sh"
python3 scripts/train_defaults.py --work /tmp/defaults --out "${OUT:-/tmp/defaults-out}" --budget-s "${BUDGET_S:-540}" \
  --no-ablation --num-train 1200 --num-test 100 --validation 120
