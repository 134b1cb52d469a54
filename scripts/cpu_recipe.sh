# Sourced by stage2_defaults_cpu.sh and finish_schedule_cpu.sh: the --set overrides of the shipped
# runs (scripts/train_defaults.py's recipe for the `wide` profile with one data worker for 2 cores;
# HiTTs adds train_defaults.HITTS_SWITCHES), so the CPU runs train exactly as the GPU ones did.
#
#   recipe_sets ARCH [KEY=VALUE ...]   # fills the array SETS with (--set OVERRIDE) pairs, extras last
recipe_sets() {
  local o
  SETS=()
  while IFS= read -r o; do SETS+=(--set "$o"); done < <(${PY:-python} -c '
import sys
sys.path.insert(0, "scripts")
import train_defaults as t
switches = list(t.HITTS_SWITCHES) if sys.argv[1] == "hitts" else []
print("\n".join(t.recipe("wide", t.VALIDATION_IMAGES, t.SIZE, 1) + switches))' "$1")
  shift
  for o in "$@"; do SETS+=(--set "$o"); done
}
