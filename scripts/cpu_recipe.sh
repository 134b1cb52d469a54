# Sourced by the CPU scripts (stage2_defaults_cpu.sh, finish_schedule_cpu.sh, walls_tail_cpu.sh, walls_stage2_cpu.sh): the --set overrides of the shipped
# runs (scripts/train_defaults.py's recipe for the `wide` profile with one data worker for 2 cores;
# HiTTs adds train_defaults.HITTS_SWITCHES), so the CPU runs train exactly as the GPU ones did; plus
# channels-last memory on the CPU, which changes the kernels, not the maths.
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
  SETS+=(--set train.channels_last_on_cpu=true)  # 1.15x a step here (benchmarks/bench_cpu_stage2_step.py)
  shift
  for o in "$@"; do SETS+=(--set "$o"); done
}

# continue_pair OUT DATA EPOCHS SHARED HITTS_RUN MTL_RUN [HITTS_ARG...]: a copy of each source run
# folder (checkpoint, config, log), made once in OUT/hitts and OUT/mtl, resumed there on DATA with the
# recipe, train.epochs=EPOCHS and SHARED's split.json and quantisers.json (the pipeline folder the
# runs came from), the two side by side at one thread each; a finished copy (metrics.json: its test
# split evaluated once) is left alone. HITTS_ARG: more `trainer train` arguments of the HiTTs run
# (a stage-2 run's --discovery). Non-zero if one fails. The sources are never written.
continue_pair() {
  local out=$1 data=$2 epochs=$3 shared=$4 arch run p status=0
  local -A src=([hitts]=$5 [mtl]=$6)
  shift 6
  local -A extra=([hitts]="$*" [mtl]="")
  local pids=()
  for arch in hitts mtl; do
    run=$out/$arch
    [ -f "$run/metrics.json" ] && continue
    if [ ! -f "$run/checkpoint.pt" ]; then
      mkdir -p "$run"
      cp "${src[$arch]}"/{checkpoint.pt,config.json,log.jsonl} "$run/"
      chmod u+w "$run/checkpoint.pt"
    fi
    cp "$shared/quantisers.json" "$run/"
    recipe_sets "$arch" train.epochs="$epochs" data.cache_in_memory=false
    OMP_NUM_THREADS=${THREADS:-1} ${PY:-python} -m trainer train --arch "$arch" --data "$data" \
      --dataset synthetic --preset cpu --setting one-label --seed 0 --split "$shared/split.json" \
      --out "$run" "${SETS[@]}" ${extra[$arch]} --resume >"$out/$arch.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || status=1; done
  return $status
}

# stamp_history TEXT METRICS_JSON...: how a run was trained when not in one go, written as "history"
# into its metrics.json (trainer/export.py copies it into the manifest's trained_on).
stamp_history() {
  local text=$1
  shift
  ${PY:-python} -c 'import json, sys
for path in sys.argv[2:]:
    result = json.load(open(path))
    result["history"] = sys.argv[1]
    json.dump(result, open(path, "w"), indent=2)' "$text" "$@"
}

# save_records RUNS FOLDER: the small files of RUNS/FOLDER's run folders (config, log, metrics,
# quantisers: *.json and *.jsonl, two levels deep) copied into results/runs/defaults/FOLDER.
save_records() {
  mkdir -p "results/runs/defaults/$2"
  (cd "$1" && find "$2" -maxdepth 2 \( -name '*.json' -o -name '*.jsonl' \) | tar cf - -T -) |
    tar xf - -C results/runs/defaults
}

# measure_candidates RUNS FOLDER EXPORTS NAME [RULE_OPTION CHOICE]: the records of RUNS/FOLDER saved
# (save_records), every model in EXPORTS measured through the app's runtime against its `hitts` (10
# real frames; 100 fresh `wide_walls` and `wide` scenes, seed 2024) into
# results/defaults/eval-NAME-PROFILE.json, results/defaults/defaults.md rebuilt and, with RULE_OPTION
# (a collect_defaults.py rule, e.g. --walls-longer-choice), that rule applied to the `wide_walls`
# report and its decision written to results/defaults/choice-CHOICE.json and printed.
measure_candidates() {
  local runs=$1 folder=$2 exp=$3 name=$4 option=${5:-} choice=${6:-} profile
  save_records "$runs" "$folder"
  for profile in wide_walls wide; do
    ${PY:-python} scripts/evaluate_shipped.py --exports "$exp" --seed 2024 --num 100 --profile $profile \
      --reference hitts --out "results/defaults/eval-$name-$profile.json"
  done
  if [ -z "$option" ]; then
    PY=${PY:-python} bash scripts/collect_defaults.sh
    return
  fi
  PY=${PY:-python} bash scripts/collect_defaults.sh "$option" \
    "results/defaults/eval-$name-wide_walls.json" "results/defaults/choice-$choice.json"
  cat "results/defaults/choice-$choice.json"
}
