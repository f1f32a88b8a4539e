# Shared by the launch scripts: one flag parser, dry runs and the plan check.
# shellcheck shell=bash
# The flag variables are read by the scripts that source this file:
# shellcheck disable=SC2034

die() {  # one clear line, exit status 2
  echo "$(basename "$0"): error: $*" >&2
  exit 2
}

shell_quote() {  # ARG: ARG as one shell word, quoted only where it must be
  local q='"' s="'" b=\\ d='$' t='`'
  case "$1" in
    "") echo "''" ;;
    *[!A-Za-z0-9_@%+=:,./-]*)
      if [ "${1#*"$s"}" = "$1" ]; then echo "$s$1$s"
      else
        local word="${1//"$b"/"$b$b"}"; word="${word//"$q"/"$b$q"}"
        word="${word//"$d"/"$b$d"}"; echo "$q${word//"$t"/"$b$t"}$q"
      fi ;;
    *) echo "$1" ;;
  esac
}

dry_run=0
run_cmd() {  # prints the command under --dry_run, runs it otherwise
  if [ "$dry_run" = 1 ]; then
    local arg line=""
    for arg; do line+="${line:+ }$(shell_quote "$arg")"; done
    echo "$line"
  else
    "$@"
  fi
}

run_to() {  # FILE COMMAND...: run_cmd with the command's output written to FILE
  if [ "$dry_run" = 1 ]; then
    echo "$(run_cmd "${@:2}") > $(shell_quote "$1")"
  else
    "${@:2}" > "$1"
  fi
}

python_bin() {
  if [ -n "${PRIMER_MTF_PYTHON:-}" ]; then echo "$PRIMER_MTF_PYTHON"
  elif [ -x .venv/bin/python ]; then echo .venv/bin/python
  else echo python3
  fi
}

gin_params=() takes_gin_param=1
parse_flags() {  # NAME... -- ARG...: each --NAME VALUE sets the variable NAME
  # Every script also takes --dry_run and, unless it sets takes_gin_param=0,
  # --gin_param BINDING (repeatable). A script sets its defaults before the call;
  # any other flag stops it with one line.
  # The locals are prefixed so that no flag variable is shadowed by one of them.
  local _pf_names=() _pf_flag _pf_name _pf_known _pf_common=--dry_run
  [ "$takes_gin_param" = 0 ] || _pf_common="--gin_param --dry_run"
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do _pf_names+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  while [ $# -gt 0 ]; do
    case "$takes_gin_param $1" in
      *" --dry_run") dry_run=1; shift; continue ;;
      "1 --gin_param") [ $# -ge 2 ] || die "--gin_param needs a value"
        gin_params+=("$2"); shift 2; continue ;;
    esac
    _pf_flag="${1#--}" _pf_known=0
    for _pf_name in "${_pf_names[@]}"; do [ "$_pf_flag" != "$_pf_name" ] || _pf_known=1; done
    if [ "$_pf_flag" = "$1" ] || [ "$_pf_known" = 0 ]; then
      die "unknown flag $1; it takes ${_pf_names[*]/#/--} $_pf_common"
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

# Cloud TPU VM slices (used by tpu.sh; here so that tests can check them alone).
# An accelerator type is FAMILY-N: v2/v3/v4/v5p count TensorCores, 8 to a host;
# v5litepod counts chips, up to 8 to a host. So a slice with N <= 8 is one host and
# anything larger is a multi-host Pod slice.
# https://cloud.google.com/tpu/docs/types-topologies
slice_is_multi_host() {  # TOPOLOGY: exit status 0 for a multi-host slice
  [ "${1##*-}" -gt 8 ]
}

slice_runtime() {  # TOPOLOGY: the TPU VM image with TensorFlow 2.15 for that slice
  # https://cloud.google.com/tpu/docs/runtimes names TensorFlow images
  # tpu-vm-tf-x.y.z[-pod][-{device_api}]: -pod for a multi-host slice; from 2.15 on
  # the device API is -se (stream executor) or -pjrt, and the TPU software versions
  # list (https://cloud.google.com/tpu/docs/supported-tpu-versions) gives
  # tpu-vm-tf-2.15.0-se and tpu-vm-tf-2.15.0-pjrt. The -pod forms of both are in
  # Google's own TensorFlow-on-TPU test config (GoogleCloudPlatform/ml-auto-solutions,
  # dags/vm_resource.py: tpu-vm-tf-2.15.0-pod-se, tpu-vm-tf-2.15.0-pod-pjrt).
  # v2-v4: stream executor, the runtime TPUEstimator (mesh-tensorflow's TPU path) was
  # written for and the only one before 2.15. v5e and v5p: the docs support them
  # from TensorFlow 2.15 with -pjrt images only. That mesh-tensorflow's TPUEstimator
  # runs under PJRT is not verified here.
  local api pod=""
  case "$1" in
    v2-*|v3-*|v4-*) api=se ;;
    v5litepod-*|v5p-*) api=pjrt ;;
    *) die "no TensorFlow 2.15 TPU VM image is known for a $1 slice; give --runtime" ;;
  esac
  if slice_is_multi_host "$1"; then pod=-pod; fi
  echo "tpu-vm-tf-2.15.0$pod-$api"
}

check_runtime() {  # TOPOLOGY IMAGE: one line and exit 2 where the image does not fit the slice
  case "$2" in tpu-vm-tf-2.15.*) ;;
    *) die "--runtime must be a TensorFlow 2.15 TPU VM image (tpu-vm-tf-2.15.*), not '$2'" ;;
  esac
  if slice_is_multi_host "$1"; then
    case "$2" in *-pod-*) ;; *) die "a $1 slice has several hosts: its --runtime needs -pod, not '$2'" ;; esac
  else
    case "$2" in *-pod-*) die "a $1 slice is one host: its --runtime has no -pod, not '$2'" ;; esac
  fi
}
