# Shared by the launch scripts: flags, dry runs, gin look-ups and the plan check.
# shellcheck shell=bash
# The flag variables are read by the scripts that source this file:
# shellcheck disable=SC2034

die() {  # one clear line, exit status 2
  echo "$(basename "$0"): error: $*" >&2
  exit 2
}

dry_run=0
run_cmd() {  # prints the command under --dry_run, runs it otherwise
  if [ "$dry_run" = 1 ]; then
    printf '%q ' "$@"; echo
  else
    "$@"
  fi
}

gin_value() {  # FILE KEY: the quoted value bound to KEY in FILE, or nothing
  sed -n "s/^$2 = \"\\(.*\\)\"\$/\\1/p" "$1" | tail -n 1
}

python_bin() {
  if [ -n "${PRIMER_MTF_PYTHON:-}" ]; then echo "$PRIMER_MTF_PYTHON"
  elif [ -x .venv/bin/python ]; then echo .venv/bin/python
  else echo python3
  fi
}

model=primer size=tiny mesh="" bucket="" run="" corpus=c4 tfds_data_dir="" model_dir=""
train_steps="" vocabulary="" accelerator=""
gin_params=()
rest=()
parse_common_flags() {  # sets the variables above; other flags go to "rest"
  while [ $# -gt 0 ]; do
    case "$1" in
      --model) model="$2"; shift 2 ;;
      --size) size="$2"; shift 2 ;;
      --mesh) mesh="$2"; shift 2 ;;
      --model_dir) model_dir="$2"; shift 2 ;;
      --bucket) bucket="$2"; shift 2 ;;
      --run) run="$2"; shift 2 ;;
      --corpus) corpus="$2"; shift 2 ;;
      --tfds_data_dir) tfds_data_dir="$2"; shift 2 ;;
      --train_steps) train_steps="$2"; shift 2 ;;
      --vocabulary) vocabulary="$2"; shift 2 ;;
      --accelerator) accelerator="$2"; shift 2 ;;
      --gin_param) gin_params+=("$2"); shift 2 ;;
      --dry_run) dry_run=1; shift ;;
      *) rest+=("$1"); shift ;;
    esac
  done
  [ -n "$mesh" ] || die "--mesh MESH is required; see gin/meshes/"
}

no_other_flags() {  # for scripts that take only the common flags
  [ ${#rest[@]} -eq 0 ] || die "unknown flag ${rest[0]}"
}

check_plan() {  # the planner's verdict on (model, size, mesh), before anything runs
  local out params=()
  for p in "${gin_params[@]+"${gin_params[@]}"}"; do params+=(--gin_param "$p"); done
  if ! out=$("$(python_bin)" -m primer_mtf plan --model "$model" --size "$size" \
      --mesh "$mesh" "${params[@]+"${params[@]}"}" 2>&1 >/dev/null); then
    die "plan check failed: $(printf '%s\n' "$out" | grep 'primer-mtf: error:' | tail -n 1 | sed 's/^primer-mtf: error: //')"
  fi
}
