#!/usr/bin/env bash
# Issue 13 item 7 on a lent GPU (about 2 minutes; carry .whl): the training step under
# torch.cuda.set_sync_debug_mode("error"), then the train-step section of the GPU check, which times
# the authors' network, scale_ffn=false and the paper's token stage against MTL. Report: $OUT.
#   run: bash scripts/device_gpu_check.sh   (timeout_s 240, carry [".whl"])
set -uo pipefail
source "$(dirname "$0")/device_env.sh"
python3 -m pytest tests/test_engine_cuda.py -q -p no:cacheprovider 2>&1 | tail -5
python3 benchmarks/gpu_check.py --only environment channels_last train_step_eager --budget-s 75 \
  --out "${OUT:-/tmp}/gpu_check-item7.json"
