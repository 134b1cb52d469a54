#!/usr/bin/env bash
# Put what scripts/train_defaults.py brought back from the GPU (SRC: its --out folder) into run
# folders (DEST, default runs/defaults: slim checkpoints as checkpoint.pt) and copy the small run
# records into results/runs/defaults (committed: the figures in README are recomputed from them).
set -euo pipefail
SRC=$1
DEST=${2:-runs/defaults}
mkdir -p "$DEST"
tar xzf "$SRC/runs.tgz" -C "$DEST"
for pair in wide-hitts:wide/hitts wide-hitts_pseudo:wide/hitts_pseudo wide-mtl:wide/mtl-pipeline/mtl \
  nyu-hitts:nyu/hitts; do
  name=${pair%%:*} run=${pair#*:}
  if [ -f "$SRC/$name.pt" ]; then cp "$SRC/$name.pt" "$DEST/$run/checkpoint.pt"; else echo "missing: $name.pt"; fi
done
mkdir -p results/runs/defaults
(cd "$DEST" && find . -name '*.json' -o -name '*.jsonl' -o -name '*.txt' | grep -v '/probe/' | tar cf - -T -) |
  tar xf - -C results/runs/defaults
echo "runs in $DEST; records in results/runs/defaults"
