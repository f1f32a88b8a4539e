#!/usr/bin/env bash
# Trains (or evaluates) on the GPUs of one host with a placement mesh from
# gin/meshes/gpu_*.gin, through the primer-mtf command; `check` only checks that
# TensorFlow sees this host's GPUs.
#
#   launch/gpu.sh train|eval --mesh gpu_a100_8_mp4 --model_dir DIR [--model primer]
#       [--size tiny] [--corpus c4] [--tfds_data_dir DIR] [--train_steps N]
#       [--vocabulary SPM.model] [--gin_param BINDING] [--dry_run]
#   launch/gpu.sh check [--mesh gpu_a100_8_mp4]
#   launch/gpu.sh --help
#
# e.g. launch/gpu.sh train --mesh gpu_a100_8_mp4 --size large --model_dir runs/large
#
# TensorFlow 2.15 runs on CUDA 12.2 and cuDNN 8.9 (its build_info: cuda_version
# 12.2, cudnn_version 8; tensorflow[and-cuda]==2.15.1 pins nvidia-cudnn-cu12
# 8.9.4.25) with an NVIDIA driver of 525.60 or newer; `launch/install.sh --stack gpu`
# installs those libraries as pip wheels into the venv, so only the driver is the
# host's.
# Before anything runs (dry runs aside), train and eval check that nvidia-smi
# lists the mesh's device count and that TensorFlow sees that many GPUs; `check`
# does only that, and each failure is one line and exit status 2.
# The (model, size, mesh) plan is checked before anything runs.
# One host only. mesh-tensorflow runs GPUs through its placement mesh: one TF1 graph
# whose devices utils.run hands to one Estimator in this process. Spanning hosts
# would need TensorFlow servers started on the others and a session on the cluster,
# which neither mesh-tensorflow's utils.run nor T5's binary sets up (their one
# multi-host path is the TPU), so multi-host GPU training is not supported.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=launch/common.sh
source launch/common.sh

usage() {  # the header comment, as text
  sed -n '2,/^set -euo/s/^# \{0,1\}//p' "$0"
}

check_gpus() {  # N: one line and exit 2 unless nvidia-smi and TensorFlow see N GPUs
  local have seen
  have=$(nvidia-smi --list-gpus 2>/dev/null | grep -c '^GPU' || true)
  [ "$have" -gt 0 ] || die "no GPU on this host: nvidia-smi is missing or lists none"
  [ "$have" -ge "$1" ] || die "the mesh needs $1 GPUs, nvidia-smi lists $have"
  seen=$(TF_CPP_MIN_LOG_LEVEL=3 "$(python_bin)" -c \
    'import tensorflow as tf; print(len(tf.config.list_physical_devices("GPU")))' \
    2>/dev/null | tail -n 1 || true)
  [ "${seen:-0}" -ge "$1" ] || die "TensorFlow sees ${seen:-no} GPUs of the $have that nvidia-smi lists; it needs CUDA 12.2 and cuDNN 8.9: run launch/install.sh --stack gpu"
  echo "TensorFlow sees $seen GPUs"
}

[ $# -ge 1 ] || die "give a command: train, eval or check (launch/gpu.sh --help)"
command="$1"; shift
case "$command" in
  -h|--help|help) usage; exit 0 ;;
  train|eval|check) ;;
  *) die "unknown command '$command'; use train, eval or check (launch/gpu.sh --help)" ;;
esac
model=primer size=tiny mesh="" model_dir="" corpus=c4 tfds_data_dir="" train_steps="" vocabulary=""
parse_flags model size mesh model_dir corpus tfds_data_dir train_steps vocabulary -- "$@"
if [ "$command" = check ]; then
  needed=1
  if [ -n "$mesh" ]; then
    read_plan "$model" "$size" "$mesh"
    needed=$plan_cores
  fi
  check_gpus "$needed"
  exit 0
fi
[ -n "$mesh" ] || die "--mesh MESH is required; see gin/meshes/"
[ -n "$model_dir" ] || die "--model_dir DIR is required"
read_plan "$model" "$size" "$mesh"
case "$plan_accelerator" in gpu*) ;; *) die "mesh '$mesh' is not a GPU mesh; see gin/meshes/gpu_*.gin" ;; esac
[ "$dry_run" = 1 ] || check_gpus "$plan_cores" >/dev/null
check_plan

args=(--model_dir "$model_dir")
if [ "$command" = train ]; then
  args+=(--model "$model" --size "$size" --mesh "$mesh" --corpus "$corpus")
  [ -z "$tfds_data_dir" ] || args+=(--tfds_data_dir "$tfds_data_dir")
  [ -z "$vocabulary" ] || args+=(--vocabulary "$vocabulary")
  [ -z "$train_steps" ] || args+=(--train_steps "$train_steps")
else
  args+=(--mesh "$mesh")
fi
for p in "${gin_params[@]+"${gin_params[@]}"}"; do args+=(--gin_param "$p"); done
run_cmd "$(python_bin)" -m primer_mtf "$command" "${args[@]}"
