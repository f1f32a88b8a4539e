# Shared by the launch scripts: one flag parser, dry runs and the plan check.
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

python_bin() {
  if [ -n "${PRIMER_MTF_PYTHON:-}" ]; then echo "$PRIMER_MTF_PYTHON"
  elif [ -x .venv/bin/python ]; then echo .venv/bin/python
  else echo python3
  fi
}

gin_params=()
parse_flags() {  # NAME... -- ARG...: each --NAME VALUE sets the variable NAME
  # Every script also takes --gin_param BINDING (repeatable) and --dry_run. A
  # script sets its defaults before the call; any other flag stops it with one line.
  # The locals are prefixed so that no flag variable is shadowed by one of them.
  local _pf_names=() _pf_flag _pf_name _pf_known
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do _pf_names+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  while [ $# -gt 0 ]; do
    case "$1" in
      --dry_run) dry_run=1; shift; continue ;;
      --gin_param) [ $# -ge 2 ] || die "--gin_param needs a value"
        gin_params+=("$2"); shift 2; continue ;;
    esac
    _pf_flag="${1#--}" _pf_known=0
    for _pf_name in "${_pf_names[@]}"; do [ "$_pf_flag" != "$_pf_name" ] || _pf_known=1; done
    if [ "$_pf_flag" = "$1" ] || [ "$_pf_known" = 0 ]; then
      die "unknown flag $1; it takes ${_pf_names[*]/#/--} --gin_param --dry_run"
    fi
    [ $# -ge 2 ] || die "$1 needs a value"
    printf -v "$_pf_flag" '%s' "$2"
    shift 2
  done
}

# The plan of (model, size, mesh) from `primer-mtf plan --json`: the facts the
# scripts need about a mesh, and whether the layout divides and fits.
plan_json="" plan_error="" plan_topology="" plan_cores="" plan_accelerator=""
read_plan() {  # MODEL SIZE MESH: runs the planner once; stops only if it gave no plan
  local err p params=()
  for p in "${gin_params[@]+"${gin_params[@]}"}"; do params+=(--gin_param "$p"); done
  err=$(mktemp)
  plan_json=$("$(python_bin)" -m primer_mtf plan --json --model "$1" \
    --size "$2" --mesh "$3" "${params[@]+"${params[@]}"}" 2>"$err") || true
  plan_error=$(sed -n 's/^primer-mtf: error: //p' "$err" | tail -n 1)
  rm -f "$err"
  [ -n "$plan_json" ] || die "plan check failed: ${plan_error:-primer-mtf plan gave no plan}"
  plan_topology=$(plan_field tpu_topology)
  plan_cores=$(plan_field cores)
  plan_accelerator=$(plan_field accelerator)
}

plan_field() {  # KEY: a field of the plan's JSON ("" for null)
  printf '%s' "$plan_json" | "$(python_bin)" -c \
    'import json, sys; v = json.load(sys.stdin)[sys.argv[1]]; print("" if v is None else v)' "$1"
}

check_plan() {  # the planner's verdict: one line and exit 2 where it does not divide or fit
  [ -z "$plan_error" ] || die "plan check failed: $plan_error"
}
