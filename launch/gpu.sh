#!/usr/bin/env bash
# Trains (or evaluates) on the GPUs of one host with a placement mesh from
# gin/meshes/gpu_*.gin, through the primer-mtf command.
#
#   launch/gpu.sh train|eval --mesh gpu_a100_8_mp4 --model_dir DIR [--model primer]
#       [--size large] [--corpus c4] [--tfds_data_dir DIR] [--train_steps N]
#       [--vocabulary SPM.model] [--gin_param BINDING] [--dry_run]
#
# The mesh's device count must not exceed the GPUs that nvidia-smi lists; the
# (model, size, mesh) plan is checked before anything runs.
# One host only. mesh-tensorflow runs GPUs through its placement mesh: one TF1 graph
# whose devices utils.run hands to one Estimator in this process. Spanning hosts
# would need TensorFlow servers started on the others and a session on the cluster,
# which neither mesh-tensorflow's utils.run nor T5's binary sets up (their one
# multi-host path is the TPU), so multi-host GPU training is not supported.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=launch/common.sh
source launch/common.sh

[ $# -ge 1 ] || die "give a command: train or eval"
command="$1"; shift
case "$command" in train|eval) ;; *) die "unknown command '$command'; use train or eval" ;; esac
model=primer size=tiny mesh="" model_dir="" corpus=c4 tfds_data_dir="" train_steps="" vocabulary=""
parse_flags model size mesh model_dir corpus tfds_data_dir train_steps vocabulary -- "$@"
[ -n "$mesh" ] || die "--mesh MESH is required; see gin/meshes/"
[ -n "$model_dir" ] || die "--model_dir DIR is required"
read_plan "$model" "$size" "$mesh"
case "$plan_accelerator" in gpu*) ;; *) die "mesh '$mesh' is not a GPU mesh; see gin/meshes/gpu_*.gin" ;; esac
if [ "$dry_run" = 0 ]; then
  have=$(nvidia-smi --list-gpus 2>/dev/null | wc -l || true)
  [ "$have" -ge "$plan_cores" ] || die "mesh '$mesh' needs $plan_cores GPUs, this host has $have"
fi
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
